// Int8 GEMM for many rows (the encoder) with int8 weights: C (rows, out) (+)= A (rows, in) W^T, multiplied in
// integers with VPDPBUSD (AVX-VNNI) instead of widening the weight to fp32.
//
// Scheme (dynamic per-row activation quantization, as in CTranslate2 / oneDNN):
// 1. Each row of A is quantized on its own: sx = max|x| / 127, q = round_half_even(x * (127 / max|x|)) in
//    [-127, 127]. VPDPBUSD multiplies unsigned bytes by signed bytes, so A is stored as u = q + 128 (1..255).
// 2. acc[r, o] = sum_k u[r, k] * W[o, k] in int32 (exact: |u * w| <= 255 * 127, so K up to 65536 cannot overflow).
//    The zero point comes back out with the weight row's sum: sum_k q * w = acc - 128 * sum_k w (sum_k w is taken once,
//    when the weight is quantized: CpuWeight.RowSums).
// 3. C[r, o] (+)= float(acc - 128 * sum_k w) * sx[r] * sw[o], multiplied in that order.
// The only approximation is step 1 (|x - q * sx| <= sx / 2 = max|x| / 254 per element); steps 2 and 3 are exact
// integer arithmetic plus three fp32 roundings done in the same order everywhere, so the vector path and the scalar
// twin RunScalar agree bit for bit.
//
// Layout (BLIS style, like Gemm): A is quantized once per call into rows of bytes (in_features rounded up to 4), so a
// row's 4 consecutive k are one int32 lane that VPDPBUSD broadcasts. The threads split the output columns in whole
// panels of NR = 16 columns; a panel of W is packed per call into [k/4][column][4] (two ymm per k/4 step) with 8 x 8
// transposes of 4-byte groups, so a panel of K = 1024 is 16 KB and stays in L1 while the rows of A stream past it
// from L2, MR = 6 at a time. The micro-kernel keeps 6 x 16 int32 in 12 ymm accumulators (the JIT keeps VPDPBUSD
// destinations in ymm0-15), the loads and broadcasts in ymm16-31; the last 1 to 3 rows use a 3-row variant that
// splits even and odd k groups over the same 12 accumulators, so it is not held up by VPDPBUSD's latency.
//
// .NET 10 exposes VPDPBUSD at 128 and 256 bits only (AvxVnni). There is no Avx512Vnni class, Avx10v1 has no dot
// product, and AvxVnniInt8.V512 (AVX10.2's signed x signed VPDPBSSD, which would need no zero point) is not reported
// by AVX-512 Zen parts. So there is one vector width.
//
// Without AVX-VNNI (Zen 2/3/4, Skylake-X to Ice Lake, every AVX2-only CPU) the same kernels run on AVX2 with
// VPMADDUBSW + VPMADDWD (Int8Isa.Avx2), or on AVX-512BW with 512-bit vectors (Int8Isa.Avx512BW, at Vector512):
// VPMADDUBSW adds two u8 x s8 products into a saturating int16, and with the zero point (u up to 255) two products can
// reach 2 * 255 * 127 = 64770 > 32767. So these paths do not use the zero point; the activations are signed q:
// - GEMM: each row is quantized as |q| and sign bytes s (0xFF where q < 0) per k group (QuantizeSplitRows), both
//   broadcast from memory, and each step is VPMADDUBSW(|q|, w ^ s): where q < 0, w ^ s = -w - 1, so the sum is
//   sum q w - sum_{q<0} |q|, the second sum a per-row integer the epilogue adds back (pairs stay within 2 * 127 * 128
//   = 32512, exact). Per 32 products: one XOR, VPMADDUBSW, VPMADDWD by ones, VPADDD, and no per-row work but the two
//   broadcast loads. On AVX2 the tile is 4 x 16 (8 accumulators + 2 weights + |q|, s, ones and a temporary fit the 16
//   ymm; a 6-row tile spilled two accumulators and was 5-15% slower). On AVX-512BW a k group of a panel (16 columns x
//   4 k = 64 bytes) is one zmm and one accumulator per row; the XOR stands in for VPSIGNB, which AVX-512BW lacks.
// - GEMV: VPMADDUBSW(|q|, w * sign(q)) on 32 (AVX2: VPSIGNB) or 64 (AVX-512BW: (w ^ s) - s) contiguous bytes, whose
//   pairs stay within 2 * 127 * 127 = 32258.
// VPMADDWD by ones then widens the pairs to int32. The integer sums are the same exact sum q * w as VPDPBUSD's minus
// the correction, so every path equals the scalar twin bit for bit; the weight row sums are not needed there. Tests
// force each path by name; the AVX-VNNI and AVX-512BW kernels also run on any AVX2 machine there, emulated (CanRun:
// VPDPBUSD as two VPMADDWD; VPMADDUBSW and VPMADDWD as AVX2 on the two 256-bit halves, the rest software Vector512),
// while Isa selects only hardware paths.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ManagedT5.Kernels.Cpu;

/// <summary>Linear for many rows with int8 weights, multiplied in int8 x uint8 -> int32 (VPDPBUSD, or VPMADDUBSW +
/// VPMADDWD without VNNI).</summary>
internal static unsafe class Int8Gemm
{
    /// <summary>Rows of A per micro-tile at most (VNNI and AVX-512BW; AVX2 takes 4: IInt8Dot.TileRows).</summary>
    public const int MR = 6;

    /// <summary>Output columns per packed panel (and per micro-tile): two ymm of int32.</summary>
    public const int NR = 16;

    /// <summary>Largest in_features the int32 accumulator holds without overflow (255 * 127 * 65536 &lt; 2^31).</summary>
    public const int MaxInDim = 65536;

    /// <summary>The activations' zero point: u8 = q + 128.</summary>
    private const int ZeroPoint = 128;

    /// <summary>Whether <c>Run</c> takes an integer vector path at <paramref name="level"/> on this machine
    /// (otherwise it runs the much slower scalar twin, and the widening fp32 GEMM is the better choice).</summary>
    public static bool IsSupported(SimdLevel level) => Isa(level) != Int8Isa.Scalar;

    /// <summary>The integer path <c>Run</c> takes at <paramref name="level"/> on this machine: AVX-VNNI where
    /// present (its VPDPBUSD is the fastest), else AVX-512BW at Vector512, else AVX2 (VPMADDUBSW), else the scalar
    /// twin.</summary>
    public static Int8Isa Isa(SimdLevel level) =>
        level < SimdLevel.Vector256 ? Int8Isa.Scalar
        : AvxVnni.IsSupported ? Int8Isa.AvxVnni
        : level >= SimdLevel.Vector512 && Avx512BW.IsSupported ? Int8Isa.Avx512BW
        : Avx2.IsSupported ? Int8Isa.Avx2
        : Int8Isa.Scalar;

    /// <summary>Whether this machine has the instructions of <paramref name="isa"/> (the scalar twin runs anywhere).
    /// Only these are ever selected by <see cref="Isa"/>.</summary>
    public static bool IsSupported(Int8Isa isa) => isa switch
    {
        Int8Isa.AvxVnni => AvxVnni.IsSupported,
        Int8Isa.Avx2 => Avx2.IsSupported,
        Int8Isa.Avx512BW => Avx512BW.IsSupported,
        _ => true,
    };

    /// <summary>Whether the forced-path entry points (<c>Run(pool, Int8Isa, ...)</c>, which tests use) can run
    /// <paramref name="isa"/> here: where <see cref="IsSupported(Int8Isa)"/> is, and AVX-VNNI and AVX-512BW on any AVX2
    /// machine too, emulated (VPDPBUSD as two VPMADDWD; AVX-512BW's two missing instructions as AVX2 halves, the rest as
    /// software Vector512), so every kernel's logic is tested everywhere. <see cref="Isa"/> never picks an emulation.</summary>
    public static bool CanRun(Int8Isa isa) => IsSupported(isa) || (isa is (Int8Isa.AvxVnni or Int8Isa.Avx512BW) && Avx2.IsSupported);

    /// <summary>Whether <paramref name="isa"/> runs emulated here (see <see cref="CanRun"/>).</summary>
    public static bool IsEmulated(Int8Isa isa) => CanRun(isa) && !IsSupported(isa);

    /// <summary>y (rows, out) (+)= x (rows, in) W^T for an int8 weight, the activations quantized per row (see the
    /// file header for the arithmetic). Same contract as <c>LinearKernel.RunGemm</c>: every y element is computed by
    /// one thread, so the result does not depend on the thread count. x must be finite.</summary>
    public static void Run(WorkerPool pool, SimdLevel level, float* x, in WeightView w, float* y, int rows, bool accumulate,
        bool steal = true) => Run(pool, Isa(level), x, w, y, rows, accumulate, steal);

    /// <summary><c>Run</c> on the given integer path (tests force each one; it must be supported here).</summary>
    public static void Run(WorkerPool pool, Int8Isa isa, float* x, in WeightView w, float* y, int rows, bool accumulate,
        bool steal = true)
    {
        nint output = (nint)y;
        RunShared(pool, isa, x, new ReadOnlySpan<WeightView>(in w), new ReadOnlySpan<nint>(in output), rows, accumulate, steal);
    }

    /// <summary><c>Run</c> for several weights of one in_features (y[i] for weights[i]): x is quantized once and
    /// one pool job covers every weight.</summary>
    public static void RunShared(WorkerPool pool, SimdLevel level, float* x, ReadOnlySpan<WeightView> weights, ReadOnlySpan<nint> y, int rows,
        bool accumulate, bool steal = true) => RunShared(pool, Isa(level), x, weights, y, rows, accumulate, steal);

    /// <summary><see cref="RunShared(WorkerPool, SimdLevel, float*, ReadOnlySpan{WeightView}, ReadOnlySpan{nint}, int, bool, bool)"/>
    /// on the given integer path.</summary>
    public static void RunShared(WorkerPool pool, Int8Isa isa, float* x, ReadOnlySpan<WeightView> weights, ReadOnlySpan<nint> y, int rows,
        bool accumulate, bool steal = true)
    {
        if (HandledWithoutVectors(isa, x, weights, y, rows, accumulate)) return;
        WeightView w = weights[0];
        bool split = isa != Int8Isa.AvxVnni;   // the signed paths' rows: |q| and sign bytes per k group (SplitRows)

        // Scratch: the row scales and the row corrections (each padded to whole tiles and 64 bytes, pads 0), then
        // the quantized rows, pitch bytes apart.
        int stride = (w.Cols + 3) & ~3, pitch = split ? 2 * stride : stride;
        int scaleFloats = ((rows + MR - 1) / MR * MR + 15) & ~15;
        float* rowScales = Scratch.Get(ScratchSlot.PreparedInput, 2L * scaleFloats + (long)rows * pitch / 4);
        var rowFixes = (int*)(rowScales + scaleFloats);
        byte* quantized = (byte*)(rowScales + 2 * scaleFloats);
        new Span<float>(rowScales + rows, scaleFloats - rows).Clear();
        new Span<int>(rowFixes + rows, scaleFloats - rows).Clear();

        int rowsPerItem = (rows + pool.Threads - 1) / pool.Threads;
        var quantize = new QuantizeJob
        {
            Input = x, Output = quantized, Scales = rowScales, Fixes = rowFixes, InDim = w.Cols, Stride = stride, Rows = rows,
            PerItem = rowsPerItem, Split = split,
        };
        pool.Run(ref quantize, (rows + rowsPerItem - 1) / rowsPerItem);

        if (isa == Int8Isa.AvxVnni) Multiply<Int8VnniDot>(pool, weights, quantized, rowScales, rowFixes, y, stride, rows, accumulate, steal);
        else if (isa == Int8Isa.Avx512BW) Multiply<Int8Avx512BWDot>(pool, weights, quantized, rowScales, rowFixes, y, stride, rows, accumulate, steal);
        else Multiply<Int8Avx2Dot>(pool, weights, quantized, rowScales, rowFixes, y, stride, rows, accumulate, steal);
    }

    private static void Multiply<TDot>(WorkerPool pool, ReadOnlySpan<WeightView> weights, byte* quantized, float* rowScales, int* rowFixes,
        ReadOnlySpan<nint> y, int stride, int rows, bool accumulate, bool steal) where TDot : struct, IInt8Dot
    {
        MultiplyJob<TDot>* jobs = stackalloc MultiplyJob<TDot>[weights.Length];
        for (int i = 0; i < weights.Length; i++)
            jobs[i] = new MultiplyJob<TDot>
            {
                Weight = weights[i], Quantized = quantized, RowScales = rowScales, RowFixes = rowFixes, Output = (float*)y[i],
                Stride = stride, Rows = rows, Accumulate = accumulate,
            };
        LinearKernel.RunJobs(pool, jobs, weights, Gemm.GrainPanels * NR, steal, parallel: true);
    }

    /// <summary>
    /// The decode form of <c>Run</c> for a few rows: the same quantized activations and epilogue, but no packing.
    /// Each weight row is streamed once, front to back (four rows side by side), and dotted with every quantized x row
    /// by VPDPBUSD, 32 bytes at a time. The integer sums are exact, so the result equals <see cref="RunScalar"/> bit for
    /// bit.
    /// </summary>
    public static void RunGemv(WorkerPool pool, SimdLevel level, float* x, in WeightView w, float* y, int rows, bool accumulate,
        bool steal = true) => RunGemv(pool, Isa(level), x, w, y, rows, accumulate, steal);

    /// <summary><see cref="RunGemv(WorkerPool, SimdLevel, float*, in WeightView, float*, int, bool, bool)"/> on the
    /// given integer path (tests force each one; it must be supported here).</summary>
    public static void RunGemv(WorkerPool pool, Int8Isa isa, float* x, in WeightView w, float* y, int rows, bool accumulate,
        bool steal = true)
    {
        nint output = (nint)y;
        RunGemvShared(pool, isa, x, new ReadOnlySpan<WeightView>(in w), new ReadOnlySpan<nint>(in output), rows, accumulate, steal);
    }

    /// <summary><c>RunGemv</c> for several weights of one in_features (y[i] for weights[i]): x is quantized once
    /// and one pool job streams every weight.</summary>
    public static void RunGemvShared(WorkerPool pool, SimdLevel level, float* x, ReadOnlySpan<WeightView> weights, ReadOnlySpan<nint> y,
        int rows, bool accumulate, bool steal = true) => RunGemvShared(pool, Isa(level), x, weights, y, rows, accumulate, steal);

    /// <summary><see cref="RunGemvShared(WorkerPool, SimdLevel, float*, ReadOnlySpan{WeightView}, ReadOnlySpan{nint}, int, bool, bool)"/>
    /// on the given integer path.</summary>
    public static void RunGemvShared(WorkerPool pool, Int8Isa isa, float* x, ReadOnlySpan<WeightView> weights, ReadOnlySpan<nint> y,
        int rows, bool accumulate, bool steal = true)
    {
        if (HandledWithoutVectors(isa, x, weights, y, rows, accumulate)) return;
        int cols = weights[0].Cols;
        int stride = (cols + 63) & ~63, scaleFloats = (rows + 15) & ~15;
        float* rowScales = Scratch.Get(ScratchSlot.PreparedInput, scaleFloats + (long)rows * stride / 4);
        byte* quantized = (byte*)(rowScales + scaleFloats);
        if (isa == Int8Isa.AvxVnni)
        {
            QuantizeRows(x, cols, stride, quantized, rowScales, 0, rows, ZeroPoint);
            RunGemvJobs<Int8VnniDot>(pool, weights, quantized, rowScales, y, stride, rows, accumulate, steal);
        }
        else
        {
            QuantizeRows(x, cols, stride, quantized, rowScales, 0, rows, 0);
            if (isa == Int8Isa.Avx512BW) RunGemvJobs<Int8Avx512BWDot>(pool, weights, quantized, rowScales, y, stride, rows, accumulate, steal);
            else RunGemvJobs<Int8Avx2Dot>(pool, weights, quantized, rowScales, y, stride, rows, accumulate, steal);
        }
    }

    private static void RunGemvJobs<TDot>(WorkerPool pool, ReadOnlySpan<WeightView> weights, byte* quantized, float* rowScales,
        ReadOnlySpan<nint> y, int stride, int rows, bool accumulate, bool steal) where TDot : struct, IInt8Dot
    {
        int cols = weights[0].Cols;
        GemvJob<TDot>* jobs = stackalloc GemvJob<TDot>[weights.Length];
        for (int i = 0; i < weights.Length; i++)
            jobs[i] = new GemvJob<TDot>
            {
                Weight = weights[i], Quantized = quantized, RowScales = rowScales, Output = (float*)y[i], Stride = stride, Rows = rows,
                Accumulate = accumulate,
            };
        LinearKernel.RunJobs(pool, jobs, weights, LinearKernel.GemvGrain(cols), steal, LinearKernel.GemvParallel(LinearKernel.Bytes(weights)));
    }

    /// <summary>Output rows [first, end) of <c>RunGemv</c>, four at a time: the four weight rows are streamed
    /// together against each quantized x row (one x load feeds four VPDPBUSD), two accumulators per weight row for
    /// even and odd 32-byte chunks, and one horizontal reduction gives the four sums at once. The zero point comes back
    /// out with the rows' precomputed sums (<see cref="CpuWeight.RowSums"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Gemv<TDot>(in WeightView w, byte* quantized, float* rowScales, float* y, int stride, int rows, int first, int end,
        bool accumulate) where TDot : struct, IInt8Dot
    {
        int inDim = w.Cols, outDim = w.Rows, whole = inDim & ~31;
        int o = first;
        for (; o + 4 <= end; o += 4)
        {
            sbyte* w0 = (sbyte*)w.Data + (long)o * inDim, w1 = w0 + inDim, w2 = w1 + inDim, w3 = w2 + inDim;
            Vector128<int> correction = TDot.ZeroPoint == 0 ? default : Vector128.Load(w.RowSums + o) * TDot.ZeroPoint;
            Vector128<float> scales = Vector128.Load(w.Scales + o);
            for (int r = 0; r < rows; r++)
            {
                byte* u = quantized + (long)r * stride;
                Vector256<int> a0 = default, a1 = default, a2 = default, a3 = default;
                Vector256<int> b0 = default, b1 = default, b2 = default, b3 = default;
                int k = 0;
                for (; k <= whole - 64; k += 64)
                {
                    if (r == 0)
                    {
                        // Four interleaved row streams train the hardware prefetcher less well than one: fetch the
                        // next block of four rows (the 4 x in_features bytes that follow) front to back meanwhile.
                        // (Past the weight's end this is a harmless hint: prefetches do not fault.)
                        sbyte* ahead = w3 + inDim + 4 * k;
                        Sse.Prefetch0(ahead); Sse.Prefetch0(ahead + 64); Sse.Prefetch0(ahead + 128); Sse.Prefetch0(ahead + 192);
                    }
                    Vector256<byte> x0 = Vector256.Load(u + k), x1 = Vector256.Load(u + k + 32);
                    Vector256<byte> p0 = TDot.Prepare(x0), p1 = TDot.Prepare(x1);
                    a0 = TDot.Add(a0, p0, x0, Vector256.Load(w0 + k));
                    a1 = TDot.Add(a1, p0, x0, Vector256.Load(w1 + k));
                    a2 = TDot.Add(a2, p0, x0, Vector256.Load(w2 + k));
                    a3 = TDot.Add(a3, p0, x0, Vector256.Load(w3 + k));
                    b0 = TDot.Add(b0, p1, x1, Vector256.Load(w0 + k + 32));
                    b1 = TDot.Add(b1, p1, x1, Vector256.Load(w1 + k + 32));
                    b2 = TDot.Add(b2, p1, x1, Vector256.Load(w2 + k + 32));
                    b3 = TDot.Add(b3, p1, x1, Vector256.Load(w3 + k + 32));
                }
                if (k < whole)
                {
                    Vector256<byte> x0 = Vector256.Load(u + k), p0 = TDot.Prepare(x0);
                    a0 = TDot.Add(a0, p0, x0, Vector256.Load(w0 + k));
                    a1 = TDot.Add(a1, p0, x0, Vector256.Load(w1 + k));
                    a2 = TDot.Add(a2, p0, x0, Vector256.Load(w2 + k));
                    a3 = TDot.Add(a3, p0, x0, Vector256.Load(w3 + k));
                }
                StoreFour<TDot>(SumEach(a0 + b0, a1 + b1, a2 + b2, a3 + b3), u, w0, whole, inDim, correction, rowScales[r], scales,
                    y + (long)r * outDim + o, accumulate);
            }
        }
        for (; o < end; o++)
        {
            sbyte* weights = (sbyte*)w.Data + (long)o * inDim;
            for (int r = 0; r < rows; r++)
            {
                byte* u = quantized + (long)r * stride;
                Vector256<int> a0 = default;
                for (int k = 0; k < whole; k += 32)
                {
                    Vector256<byte> x0 = Vector256.Load(u + k);
                    a0 = TDot.Add(a0, TDot.Prepare(x0), x0, Vector256.Load(weights + k));
                }
                int acc = Vector256.Sum(a0) + Tail<TDot>(u, weights, whole, inDim) - TDot.ZeroPoint * w.RowSums[o];
                float value = (float)acc * rowScales[r] * w.Scales[o];
                float* output = y + (long)r * outDim + o;
                *output = accumulate ? *output + value : value;
            }
        }
    }

    /// <summary>The epilogue of four GEMV outputs for one x row: adds the bytes past the last whole vector (four weight
    /// rows inDim apart from <paramref name="w0"/>), takes the zero point's correction out, scales by sx * sw and stores
    /// (or adds) the four floats at <paramref name="output"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreFour<TDot>(Vector128<int> acc, byte* u, sbyte* w0, int whole, int inDim, Vector128<int> correction, float rowScale,
        Vector128<float> scales, float* output, bool accumulate) where TDot : struct, IInt8Dot
    {
        if (whole < inDim)
            acc += Vector128.Create(Tail<TDot>(u, w0, whole, inDim), Tail<TDot>(u, w0 + inDim, whole, inDim),
                Tail<TDot>(u, w0 + 2 * inDim, whole, inDim), Tail<TDot>(u, w0 + 3 * inDim, whole, inDim));
        Vector128<float> value = Vector128.ConvertToSingle(acc - correction) * Vector128.Create(rowScale) * scales;
        if (accumulate) value = Vector128.Load(output) + value;
        value.Store(output);
    }

    /// <summary>The four int32 sums of a, b, c and d's lanes, in that order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<int> SumEach(Vector256<int> a, Vector256<int> b, Vector256<int> c, Vector256<int> d)
    {
        // Within each 128-bit half: (a b) pairs, then (a b c d) quads; the two halves add to the totals.
        Vector256<int> quads = Avx2.HorizontalAdd(Avx2.HorizontalAdd(a, b), Avx2.HorizontalAdd(c, d));
        return quads.GetLower() + quads.GetUpper();
    }

    /// <summary>sum of u[k] * w[k] for k in [from, to): the bytes past the last whole 32-byte chunk (u read as
    /// unsigned with a zero point, as signed q without).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Tail<TDot>(byte* u, sbyte* w, int from, int to) where TDot : struct, IInt8Dot
    {
        int sum = 0;
        if (TDot.ZeroPoint == 0)
            for (int k = from; k < to; k++) sum += (sbyte)u[k] * w[k];
        else
            for (int k = from; k < to; k++) sum += u[k] * w[k];
        return sum;
    }

    /// <summary>The scalar twin of <c>Run</c>, on the calling thread: the same quantization and the same
    /// epilogue, with the integer dot product written directly as sum q * w (no zero point), so comparing the two also
    /// checks the vector path's zero-point correction. Its output equals Run's bit for bit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RunScalar(float* x, in WeightView w, float* y, int rows, bool accumulate)
    {
        Validate(w, rows);
        int inDim = w.Cols, outDim = w.Rows;
        var q = (int*)Scratch.Get(ScratchSlot.PreparedInput, inDim);
        var weight = (sbyte*)w.Data;
        for (int r = 0; r < rows; r++)
        {
            float* row = x + (long)r * inDim;
            float max = 0;
            for (int k = 0; k < inDim; k++) max = MathF.Max(max, MathF.Abs(row[k]));
            (float scale, float inverse) = RowScale(max);
            for (int k = 0; k < inDim; k++) q[k] = Quantize(row[k], inverse);

            float* output = y + (long)r * outDim;
            for (int o = 0; o < outDim; o++)
            {
                sbyte* column = weight + (long)o * inDim;
                int acc = 0;
                for (int k = 0; k < inDim; k++) acc += q[k] * column[k];
                float value = (float)acc * scale * w.Scales[o];
                output[o] = accumulate ? output[o] + value : value;
            }
        }
    }

    /// <summary>Checks the weights, then does the calls that need no vector path: nothing to compute, or the scalar
    /// path asked for (the twin runs). True when the call is done.</summary>
    private static bool HandledWithoutVectors(Int8Isa isa, float* x, ReadOnlySpan<WeightView> weights, ReadOnlySpan<nint> y, int rows,
        bool accumulate)
    {
        if (weights.Length == 0 || weights.Length != y.Length)
            throw new ArgumentException($"{weights.Length} weights for {y.Length} outputs.", nameof(y));
        foreach (WeightView w in weights)
        {
            Validate(w, rows);
            if (w.Cols != weights[0].Cols)
                throw new ArgumentException($"Weights sharing an input must share in_features: {w.Cols} vs {weights[0].Cols}.", nameof(weights));
        }
        if (rows == 0) return true;
        if (!CanRun(isa))
            throw new PlatformNotSupportedException($"This CPU cannot run the {isa} int8 kernels.");
        if (isa != Int8Isa.Scalar) return false;
        for (int i = 0; i < weights.Length; i++)
            if (weights[i].Rows > 0) RunScalar(x, weights[i], (float*)y[i], rows, accumulate);
        return true;
    }

    private static void Validate(in WeightView w, int rows)
    {
        if (w.Format != WeightFormat.Int8 || w.Scales == null || w.RowSums == null)
            throw new ArgumentException($"Int8Gemm needs an int8 weight with scales and row sums, not {w.Format}.", nameof(w));
        if (w.Cols > MaxInDim)
            throw new ArgumentException($"in_features {w.Cols} exceeds {MaxInDim}, where the int32 accumulator could overflow.", nameof(w));
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
    }

    /// <summary>A row's scale sx = max|x| / 127 and the multiplier 127 / max|x| that quantizes it (0 for a zero row).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (float Scale, float Inverse) RowScale(float max) => max > 0 ? (max / 127f, 127f / max) : (0f, 0f);

    /// <summary>One element: round half to even of x * inverse. No clamp is needed: |x| &lt;= max|x| and inverse is
    /// 127 / max|x| rounded, so |x * inverse| &lt;= 127 (1 + 2^-23)^2 &lt; 127.5 rounds to at most 127.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Quantize(float x, float inverse) => (int)MathF.Round(x * inverse);

    /// <summary>
    /// Quantizes rows [first, end) of x: output[r * stride + k] = q + zeroPoint for k &lt; in_features, zeroPoint
    /// (q = 0) in the padding up to stride; scales[r] = sx. zeroPoint is 128 for VPDPBUSD (unsigned bytes) and 0 for
    /// the signed GEMV paths (signed q). 32 elements at a time (<see cref="Quantize32"/>), then the zero point added
    /// (an XOR with 128 or 0).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void QuantizeRows(float* x, int inDim, int stride, byte* output, float* scales, int first, int end, byte zeroPoint)
    {
        var zeroPointLanes = Vector256.Create(zeroPoint);
        for (int r = first; r < end; r++)
        {
            float* row = x + (long)r * inDim;
            byte* destination = output + (long)r * stride;
            (float scale, float inverse) = RowScale(MaxAbs(row, inDim));
            scales[r] = scale;
            var multiplier = Vector256.Create(inverse);
            int k = 0;
            for (; k <= inDim - 32; k += 32) (Quantize32(row + k, multiplier).AsByte() ^ zeroPointLanes).Store(destination + k);
            for (; k < inDim; k++) destination[k] = (byte)(Quantize(row[k], inverse) + zeroPoint);
            for (; k < stride; k++) destination[k] = zeroPoint;
        }
    }

    /// <summary>
    /// Quantizes rows [first, end) of x for the signed GEMM paths (AVX2 and AVX-512BW), 2 * stride bytes a row: each
    /// group of 4 k is 8 bytes, |q| of the 4 then s of the 4 (s = 0xFF where q &lt; 0, else 0; zeros past
    /// in_features). fixes[r] = sum of |q| over the row's negative q, scales[r] = sx.
    /// The micro-kernels multiply |q| (u8) by w ^ s (s8) with VPMADDUBSW. Where q &lt; 0, w ^ s = ~w = -w - 1, so the
    /// product is |q| (-w - 1) = q w + q, and a row's integer sum is sum q w - fixes[r]: the epilogue adds fixes[r]
    /// back. Exact in int16: |w ^ s| &lt;= 128 for w in [-127, 127], so a VPMADDUBSW pair is within 2 * 127 * 128 =
    /// 32512. This replaces VPSIGNB (which AVX-512BW lacks) by an XOR of the weights with a broadcast from memory, and
    /// the per-row VPABSB by a second broadcast.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void QuantizeSplitRows(float* x, int inDim, int stride, byte* output, float* scales, int* fixes, int first, int end)
    {
        for (int r = first; r < end; r++)
        {
            float* row = x + (long)r * inDim;
            byte* destination = output + 2L * r * stride;
            (float scale, float inverse) = RowScale(MaxAbs(row, inDim));
            scales[r] = scale;
            var multiplier = Vector256.Create(inverse);
            Vector256<ulong> negatives = default;
            int k = 0;
            for (; k <= inDim - 32; k += 32)
            {
                Vector256<sbyte> q = Quantize32(row + k, multiplier);
                Vector256<byte> magnitude = Avx2.Abs(q), sign = Vector256.LessThan(q, Vector256<sbyte>.Zero).AsByte();
                negatives += Avx2.SumAbsoluteDifferences(magnitude & sign, Vector256<byte>.Zero).AsUInt64();
                // Interleave 4-byte groups: (|q| g0, s g0, |q| g1, s g1 | g4, g5) and (g2, g3 | g6, g7), then whole halves.
                Vector256<uint> low = Avx2.UnpackLow(magnitude.AsUInt32(), sign.AsUInt32());
                Vector256<uint> high = Avx2.UnpackHigh(magnitude.AsUInt32(), sign.AsUInt32());
                Avx2.Permute2x128(low, high, 0x20).Store((uint*)(destination + 2 * k));
                Avx2.Permute2x128(low, high, 0x31).Store((uint*)(destination + 2 * k + 32));
            }
            int fix = (int)Vector256.Sum(negatives);
            new Span<byte>(destination + 2 * k, 2 * (stride - k)).Clear();
            for (; k < inDim; k++)
            {
                int q = Quantize(row[k], inverse);
                byte* group = destination + 2 * (k & ~3) + (k & 3);
                group[0] = (byte)Math.Abs(q);
                group[4] = q < 0 ? (byte)0xFF : (byte)0;
                if (q < 0) fix -= q;
            }
            fixes[r] = fix;
        }
    }

    /// <summary>q of 32 elements in order: multiply, convert with round half to even (the default MXCSR mode, as
    /// MathF.Round), two saturating packs to signed bytes (exact, |q| &lt;= 127), undo the packs' lane interleave.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Quantize32(float* x, Vector256<float> multiplier)
    {
        Vector256<int> a = Avx.ConvertToVector256Int32(Vector256.Load(x) * multiplier);
        Vector256<int> b = Avx.ConvertToVector256Int32(Vector256.Load(x + 8) * multiplier);
        Vector256<int> c = Avx.ConvertToVector256Int32(Vector256.Load(x + 16) * multiplier);
        Vector256<int> d = Avx.ConvertToVector256Int32(Vector256.Load(x + 24) * multiplier);
        Vector256<sbyte> q = Avx2.PackSignedSaturate(Avx2.PackSignedSaturate(a, b), Avx2.PackSignedSaturate(c, d));
        // After the two in-lane packs the int32 lanes hold the groups of 4 k in the order 0 2 4 6 1 3 5 7.
        return Avx2.PermuteVar8x32(q.AsInt32(), Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7)).AsSByte();
    }

    /// <summary>max |x[k]| over a row (exact in any order for finite x).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float MaxAbs(float* x, int count)
    {
        var max = Vector256<float>.Zero;
        int k = 0;
        for (; k <= count - 8; k += 8) max = Vector256.MaxNative(max, Vector256.Abs(Vector256.Load(x + k)));
        Vector128<float> m = Vector128.MaxNative(max.GetLower(), max.GetUpper());
        float result = MathF.Max(MathF.Max(m[0], m[1]), MathF.Max(m[2], m[3]));
        for (; k < count; k++) result = MathF.Max(result, MathF.Abs(x[k]));
        return result;
    }

    /// <summary>
    /// Output columns [first, end) of every row. Panel by panel: pack NR columns of W, their correction
    /// 128 * sum_k w (VNNI) and their scales, then run the micro-kernel over all rows of A, MR at a time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Multiply<TDot>(in WeightView w, byte* quantized, int stride, float* rowScales, int* rowFixes, float* c, int rows,
        int first, int end, bool accumulate) where TDot : struct, IInt8Dot
    {
        int outDim = w.Rows;
        int k4 = stride / 4;
        nint pitch = (nint)stride * TDot.GroupBytes / 4;   // bytes from one quantized row to the next
        // One panel: k4 * 64 bytes of weights, then NR int32 corrections and NR float scales.
        float* scratch = Scratch.Get(ScratchSlot.WeightPanels, (long)k4 * NR + 2 * NR);
        var panel = (sbyte*)scratch;
        var correction = (int*)(scratch + (long)k4 * NR);
        float* columnScales = scratch + (long)k4 * NR + NR;
        float* tile = Scratch.Get(ScratchSlot.EdgeTile, MR * NR);

        for (int column = first; column < end; column += NR)
        {
            int columns = Math.Min(NR, end - column);
            PackPanel(w, column, columns, panel, correction, columnScales, TDot.ZeroPoint);
            for (int r0 = 0; r0 < rows; r0 += TDot.TileRows)
            {
                int rowsHere = Math.Min(TDot.TileRows, rows - r0);
                byte* a = quantized + r0 * pitch;
                float* cTile = c + (long)r0 * outDim + column;
                if (rowsHere == TDot.TileRows && columns == NR)
                {
                    if (TDot.TileRows == 4)
                        Tile<FourRows, TDot>(a, pitch, 4, panel, k4, correction, rowScales + r0, rowFixes + r0, columnScales, cTile, outDim, accumulate);
                    else
                        Tile<SixRows, TDot>(a, pitch, MR, panel, k4, correction, rowScales + r0, rowFixes + r0, columnScales, cTile, outDim, accumulate);
                    continue;
                }
                // Edge tile: compute the whole tile aside, keep the part that exists (the same float ops). The last
                // 1 to 3 rows take the half-height kernel.
                if (rowsHere <= 3)
                    Tile<ThreeRows, TDot>(a, pitch, rowsHere, panel, k4, correction, rowScales + r0, rowFixes + r0, columnScales, tile, NR, false);
                else if (TDot.TileRows == 4)
                    Tile<FourRows, TDot>(a, pitch, rowsHere, panel, k4, correction, rowScales + r0, rowFixes + r0, columnScales, tile, NR, false);
                else
                    Tile<SixRows, TDot>(a, pitch, rowsHere, panel, k4, correction, rowScales + r0, rowFixes + r0, columnScales, tile, NR, false);
                for (int r = 0; r < rowsHere; r++)
                    for (int j = 0; j < columns; j++)
                    {
                        float value = tile[r * NR + j];
                        float* target = cTile + (long)r * outDim + j;
                        *target = accumulate ? *target + value : value;
                    }
            }
        }
    }

    /// <summary>The micro-kernel of <typeparamref name="TDot"/>'s width (the JIT keeps one branch).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Tile<THeight, TDot>(byte* a, nint pitch, int rows, sbyte* b, int k4, int* correction, float* rowScales, int* rowFixes,
        float* columnScales, float* c, int ldc, bool add) where THeight : struct, ITileHeight where TDot : struct, IInt8Dot
    {
        if (typeof(TDot) == typeof(Int8Avx512BWDot))
            MicroKernel512<THeight>(a, pitch, rows, b, k4, rowScales, rowFixes, columnScales, c, ldc, add);
        else
            MicroKernel<THeight, TDot>(a, pitch, rows, b, k4, correction, rowScales, rowFixes, columnScales, c, ldc, add);
    }

    /// <summary>
    /// Packs W rows [first, first + columns) as one panel: panel[(g * NR + j) * 4 + t] = W[first + j, 4g + t] (zero
    /// past in_features and for j &gt;= columns); correction[j] = 128 * sum_k W[first + j, k]; scales[j] = sw (0 for
    /// missing columns; zeroPoint is 0 on the AVX2 path, which needs no correction). Full groups of 8 columns go through 8 x 8 transposes of 4-byte groups, 32 k at a time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackPanel(in WeightView w, int first, int columns, sbyte* panel, int* correction, float* scales, int zeroPoint)
    {
        int inDim = w.Cols;
        int k4 = (inDim + 3) / 4;
        var weight = (sbyte*)w.Data + (long)first * inDim;
        uint* packed = (uint*)panel;
        for (int group = 0; group < NR; group += 8)
        {
            int g = 0;
            if (group + 8 <= columns)
            {
                sbyte* r0 = weight + (long)group * inDim;
                for (; g + 8 <= inDim / 4; g += 8)
                {
                    sbyte* source = r0 + g * 4;
                    Transpose8x8(
                        Vector256.Load((uint*)source), Vector256.Load((uint*)(source + inDim)),
                        Vector256.Load((uint*)(source + 2L * inDim)), Vector256.Load((uint*)(source + 3L * inDim)),
                        Vector256.Load((uint*)(source + 4L * inDim)), Vector256.Load((uint*)(source + 5L * inDim)),
                        Vector256.Load((uint*)(source + 6L * inDim)), Vector256.Load((uint*)(source + 7L * inDim)),
                        packed + (long)g * NR + group);
                }
            }
            // Tails: k groups past the last full 8, partial k groups, and missing columns (zero).
            for (; g < k4; g++)
                for (int j = group; j < group + 8; j++)
                {
                    uint bytes = 0;
                    if (j < columns)
                        for (int t = 0; t < 4 && 4 * g + t < inDim; t++)
                            bytes |= (uint)(byte)weight[(long)j * inDim + 4 * g + t] << (8 * t);
                    packed[(long)g * NR + j] = bytes;
                }
        }

        for (int j = 0; j < NR; j++)
        {
            correction[j] = j < columns ? zeroPoint * w.RowSums[first + j] : 0;
            scales[j] = j < columns ? w.Scales[first + j] : 0;
        }
    }

    /// <summary>Transposes 8 rows of 8 uint32 (rows = columns of W, lanes = groups of 4 k) and stores lane t of every
    /// row as the 8 consecutive uint32 at destination + t * NR.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8(Vector256<uint> r0, Vector256<uint> r1, Vector256<uint> r2, Vector256<uint> r3,
        Vector256<uint> r4, Vector256<uint> r5, Vector256<uint> r6, Vector256<uint> r7, uint* destination)
    {
        // Pairs within 128-bit lanes: t0 = r0[0] r1[0] r0[1] r1[1] | r0[4] r1[4] r0[5] r1[5].
        Vector256<uint> t0 = Avx2.UnpackLow(r0, r1), t1 = Avx2.UnpackHigh(r0, r1);
        Vector256<uint> t2 = Avx2.UnpackLow(r2, r3), t3 = Avx2.UnpackHigh(r2, r3);
        Vector256<uint> t4 = Avx2.UnpackLow(r4, r5), t5 = Avx2.UnpackHigh(r4, r5);
        Vector256<uint> t6 = Avx2.UnpackLow(r6, r7), t7 = Avx2.UnpackHigh(r6, r7);
        // Quads: q0 = r0..r3 of lane 0 | r0..r3 of lane 4; q1 lanes 1 | 5; q2 lanes 2 | 6; q3 lanes 3 | 7.
        Vector256<uint> q0 = Avx2.UnpackLow(t0.AsUInt64(), t2.AsUInt64()).AsUInt32();
        Vector256<uint> q1 = Avx2.UnpackHigh(t0.AsUInt64(), t2.AsUInt64()).AsUInt32();
        Vector256<uint> q2 = Avx2.UnpackLow(t1.AsUInt64(), t3.AsUInt64()).AsUInt32();
        Vector256<uint> q3 = Avx2.UnpackHigh(t1.AsUInt64(), t3.AsUInt64()).AsUInt32();
        Vector256<uint> q4 = Avx2.UnpackLow(t4.AsUInt64(), t6.AsUInt64()).AsUInt32();
        Vector256<uint> q5 = Avx2.UnpackHigh(t4.AsUInt64(), t6.AsUInt64()).AsUInt32();
        Vector256<uint> q6 = Avx2.UnpackLow(t5.AsUInt64(), t7.AsUInt64()).AsUInt32();
        Vector256<uint> q7 = Avx2.UnpackHigh(t5.AsUInt64(), t7.AsUInt64()).AsUInt32();
        // Whole lanes: join the r0..r3 and r4..r7 halves.
        Avx2.Permute2x128(q0, q4, 0x20).Store(destination);
        Avx2.Permute2x128(q1, q5, 0x20).Store(destination + NR);
        Avx2.Permute2x128(q2, q6, 0x20).Store(destination + 2 * NR);
        Avx2.Permute2x128(q3, q7, 0x20).Store(destination + 3 * NR);
        Avx2.Permute2x128(q0, q4, 0x31).Store(destination + 4 * NR);
        Avx2.Permute2x128(q1, q5, 0x31).Store(destination + 5 * NR);
        Avx2.Permute2x128(q2, q6, 0x31).Store(destination + 6 * NR);
        Avx2.Permute2x128(q3, q7, 0x31).Store(destination + 7 * NR);
    }

    /// <summary>
    /// The MR x 16 tile (or 3 x 16 when <typeparamref name="THeight"/> says so, for the last 1 to 3 rows):
    /// acc[i, j] = sum over k groups of TDot's step (row i of A, panel column j), then
    /// c[i * ldc + j] (+)= float(acc - correction[j] + rowFixes[i]) * rowScales[i] * columnScales[j] (VNNI corrects
    /// per column, the signed paths per row; see <see cref="QuantizeSplitRows"/>). Rows of A are
    /// <paramref name="pitch"/> bytes apart, TDot.GroupBytes a k group; past <paramref name="rows"/> the last row is
    /// read again (an edge tile).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MicroKernel<THeight, TDot>(byte* a, nint pitch, int rows, sbyte* b, int k4, int* correction, float* rowScales,
        int* rowFixes, float* columnScales, float* c, int ldc, bool add) where THeight : struct, ITileHeight where TDot : struct, IInt8Dot
    {
        bool six = THeight.Rows == 6, four = THeight.Rows >= 4; // JIT-time constants: each instantiation keeps its loop
        byte* a0 = a, a1 = a + Math.Min(1, rows - 1) * pitch, a2 = a + Math.Min(2, rows - 1) * pitch;
        byte* a3 = a + Math.Min(3, rows - 1) * pitch, a4 = a + Math.Min(4, rows - 1) * pitch, a5 = a + Math.Min(5, rows - 1) * pitch;
        Vector256<int> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        nint step = TDot.GroupBytes, end = step * k4;
        if (four)
        {
            for (nint k = 0; k < end; k += step, b += 4 * NR)
            {
                Vector256<sbyte> b0 = Vector256.Load(b), b1 = Vector256.Load(b + 32);
                Vector256<byte> ak = TDot.First(a0 + k); Vector256<byte> pk = TDot.Second(a0 + k);
                c00 = TDot.AddGroup(c00, pk, ak, b0); c01 = TDot.AddGroup(c01, pk, ak, b1);
                ak = TDot.First(a1 + k); pk = TDot.Second(a1 + k);
                c10 = TDot.AddGroup(c10, pk, ak, b0); c11 = TDot.AddGroup(c11, pk, ak, b1);
                ak = TDot.First(a2 + k); pk = TDot.Second(a2 + k);
                c20 = TDot.AddGroup(c20, pk, ak, b0); c21 = TDot.AddGroup(c21, pk, ak, b1);
                ak = TDot.First(a3 + k); pk = TDot.Second(a3 + k);
                c30 = TDot.AddGroup(c30, pk, ak, b0); c31 = TDot.AddGroup(c31, pk, ak, b1);
                if (!six) continue;
                ak = TDot.First(a4 + k); pk = TDot.Second(a4 + k);
                c40 = TDot.AddGroup(c40, pk, ak, b0); c41 = TDot.AddGroup(c41, pk, ak, b1);
                ak = TDot.First(a5 + k); pk = TDot.Second(a5 + k);
                c50 = TDot.AddGroup(c50, pk, ak, b0); c51 = TDot.AddGroup(c51, pk, ak, b1);
            }
        }
        else
        {
            // Three rows: six accumulators would wait on VPDPBUSD's latency, so even and odd k groups go to separate
            // accumulators (c0x..c2x and c3x..c5x) and are added at the end (integer sums: the order does not matter).
            nint k = 0;
            for (; k + 2 * step <= end; k += 2 * step, b += 8 * NR)
            {
                Vector256<sbyte> b0 = Vector256.Load(b), b1 = Vector256.Load(b + 32), b2 = Vector256.Load(b + 64), b3 = Vector256.Load(b + 96);
                Vector256<byte> ak = TDot.First(a0 + k); Vector256<byte> pk = TDot.Second(a0 + k);
                c00 = TDot.AddGroup(c00, pk, ak, b0); c01 = TDot.AddGroup(c01, pk, ak, b1);
                ak = TDot.First(a1 + k); pk = TDot.Second(a1 + k);
                c10 = TDot.AddGroup(c10, pk, ak, b0); c11 = TDot.AddGroup(c11, pk, ak, b1);
                ak = TDot.First(a2 + k); pk = TDot.Second(a2 + k);
                c20 = TDot.AddGroup(c20, pk, ak, b0); c21 = TDot.AddGroup(c21, pk, ak, b1);
                ak = TDot.First(a0 + k + step); pk = TDot.Second(a0 + k + step);
                c30 = TDot.AddGroup(c30, pk, ak, b2); c31 = TDot.AddGroup(c31, pk, ak, b3);
                ak = TDot.First(a1 + k + step); pk = TDot.Second(a1 + k + step);
                c40 = TDot.AddGroup(c40, pk, ak, b2); c41 = TDot.AddGroup(c41, pk, ak, b3);
                ak = TDot.First(a2 + k + step); pk = TDot.Second(a2 + k + step);
                c50 = TDot.AddGroup(c50, pk, ak, b2); c51 = TDot.AddGroup(c51, pk, ak, b3);
            }
            if (k < end)
            {
                Vector256<sbyte> b0 = Vector256.Load(b), b1 = Vector256.Load(b + 32);
                Vector256<byte> ak = TDot.First(a0 + k); Vector256<byte> pk = TDot.Second(a0 + k);
                c00 = TDot.AddGroup(c00, pk, ak, b0); c01 = TDot.AddGroup(c01, pk, ak, b1);
                ak = TDot.First(a1 + k); pk = TDot.Second(a1 + k);
                c10 = TDot.AddGroup(c10, pk, ak, b0); c11 = TDot.AddGroup(c11, pk, ak, b1);
                ak = TDot.First(a2 + k); pk = TDot.Second(a2 + k);
                c20 = TDot.AddGroup(c20, pk, ak, b0); c21 = TDot.AddGroup(c21, pk, ak, b1);
            }
            c00 += c30; c01 += c31; c10 += c40; c11 += c41; c20 += c50; c21 += c51;
        }

        Vector256<int> z0 = Vector256.Load(correction), z1 = Vector256.Load(correction + 8);
        if (TDot.ZeroPoint == 0)
        {
            // The signed paths: no column correction (z = 0), a row correction instead.
            c00 += Vector256.Create(rowFixes[0]); c01 += Vector256.Create(rowFixes[0]);
            c10 += Vector256.Create(rowFixes[1]); c11 += Vector256.Create(rowFixes[1]);
            c20 += Vector256.Create(rowFixes[2]); c21 += Vector256.Create(rowFixes[2]);
            if (four) { c30 += Vector256.Create(rowFixes[3]); c31 += Vector256.Create(rowFixes[3]); }
            if (six)
            {
                c40 += Vector256.Create(rowFixes[4]); c41 += Vector256.Create(rowFixes[4]);
                c50 += Vector256.Create(rowFixes[5]); c51 += Vector256.Create(rowFixes[5]);
            }
        }
        Vector256<float> s0 = Vector256.Load(columnScales), s1 = Vector256.Load(columnScales + 8);
        Store(c, c00 - z0, c01 - z1, rowScales[0], s0, s1, add);
        Store(c + ldc, c10 - z0, c11 - z1, rowScales[1], s0, s1, add);
        Store(c + 2 * ldc, c20 - z0, c21 - z1, rowScales[2], s0, s1, add);
        if (!four) return;
        Store(c + 3 * ldc, c30 - z0, c31 - z1, rowScales[3], s0, s1, add);
        if (!six) return;
        Store(c + 4 * ldc, c40 - z0, c41 - z1, rowScales[4], s0, s1, add);
        Store(c + 5 * ldc, c50 - z0, c51 - z1, rowScales[5], s0, s1, add);
    }

    /// <summary>One tile row: float(acc) * sx * sw, added to c or stored.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* c, Vector256<int> low, Vector256<int> high, float rowScale,
        Vector256<float> scales0, Vector256<float> scales1, bool add)
    {
        var sx = Vector256.Create(rowScale);
        Vector256<float> v0 = Vector256.ConvertToSingle(low) * sx * scales0;
        Vector256<float> v1 = Vector256.ConvertToSingle(high) * sx * scales1;
        if (add) { v0 = Vector256.Load(c) + v0; v1 = Vector256.Load(c + 8) + v1; }
        v0.Store(c);
        v1.Store(c + 8);
    }

    /// <summary>
    /// The AVX-512BW form of <see cref="MicroKernel{THeight, TDot}"/>: a k group of the 16-column panel is 64 bytes,
    /// one zmm, and its 16 int32 lanes are the 16 columns, so a row needs one accumulator. Each step adds VPMADDWD(
    /// VPMADDUBSW(|q|, w ^ s), 1) (the split rows; the epilogue adds rowFixes), whose accumulation is a 1-cycle VPADDD:
    /// six independent rows cover the multiplies' latency without splitting k.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MicroKernel512<THeight>(byte* a, nint pitch, int rows, sbyte* b, int k4, float* rowScales, int* rowFixes,
        float* columnScales, float* c, int ldc, bool add) where THeight : struct, ITileHeight
    {
        bool six = THeight.Rows == 6;
        byte* a0 = a, a1 = a + Math.Min(1, rows - 1) * pitch, a2 = a + Math.Min(2, rows - 1) * pitch;
        byte* a3 = a + Math.Min(3, rows - 1) * pitch, a4 = a + Math.Min(4, rows - 1) * pitch, a5 = a + Math.Min(5, rows - 1) * pitch;
        Vector512<int> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default;
        nint end = 8 * (nint)k4;
        for (nint k = 0; k < end; k += 8, b += 4 * NR)
        {
            Vector512<sbyte> w = Vector512.Load(b);
            c0 = Int8Avx512BWDot.AddGroup(c0, Vector512.Create(*(uint*)(a0 + k)).AsByte(), Vector512.Create(*(uint*)(a0 + k + 4)).AsSByte(), w);
            c1 = Int8Avx512BWDot.AddGroup(c1, Vector512.Create(*(uint*)(a1 + k)).AsByte(), Vector512.Create(*(uint*)(a1 + k + 4)).AsSByte(), w);
            c2 = Int8Avx512BWDot.AddGroup(c2, Vector512.Create(*(uint*)(a2 + k)).AsByte(), Vector512.Create(*(uint*)(a2 + k + 4)).AsSByte(), w);
            if (!six) continue;
            c3 = Int8Avx512BWDot.AddGroup(c3, Vector512.Create(*(uint*)(a3 + k)).AsByte(), Vector512.Create(*(uint*)(a3 + k + 4)).AsSByte(), w);
            c4 = Int8Avx512BWDot.AddGroup(c4, Vector512.Create(*(uint*)(a4 + k)).AsByte(), Vector512.Create(*(uint*)(a4 + k + 4)).AsSByte(), w);
            c5 = Int8Avx512BWDot.AddGroup(c5, Vector512.Create(*(uint*)(a5 + k)).AsByte(), Vector512.Create(*(uint*)(a5 + k + 4)).AsSByte(), w);
        }

        Vector512<float> scales = Vector512.Load(columnScales);
        Store512(c, c0, rowFixes[0], rowScales[0], scales, add);
        Store512(c + ldc, c1, rowFixes[1], rowScales[1], scales, add);
        Store512(c + 2 * ldc, c2, rowFixes[2], rowScales[2], scales, add);
        if (!six) return;
        Store512(c + 3 * ldc, c3, rowFixes[3], rowScales[3], scales, add);
        Store512(c + 4 * ldc, c4, rowFixes[4], rowScales[4], scales, add);
        Store512(c + 5 * ldc, c5, rowFixes[5], rowScales[5], scales, add);
    }

    /// <summary>One 16-column tile row: float(acc + fix) * sx * sw, added to c or stored.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store512(float* c, Vector512<int> acc, int fix, float rowScale, Vector512<float> scales, bool add)
    {
        Vector512<float> v = Vector512.ConvertToSingle(acc + Vector512.Create(fix)) * Vector512.Create(rowScale) * scales;
        if (add) v = Vector512.Load(c) + v;
        v.Store(c);
    }

    /// <summary>The AVX-512BW form of <see cref="Gemv{TDot}"/>: four weight rows side by side against each signed
    /// quantized x row, 64 bytes a step; w * sign(q) is (w ^ s) - s with s = (q &lt; 0 ? -1 : 0), computed once per x
    /// chunk, then VPMADDUBSW(|q|, .) and VPMADDWD by ones (exact as on AVX2).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Gemv512(in WeightView w, byte* quantized, float* rowScales, float* y, int stride, int rows, int first, int end,
        bool accumulate)
    {
        int inDim = w.Cols, outDim = w.Rows, whole = inDim & ~63;
        int o = first;
        for (; o + 4 <= end; o += 4)
        {
            sbyte* w0 = (sbyte*)w.Data + (long)o * inDim, w1 = w0 + inDim, w2 = w1 + inDim, w3 = w2 + inDim;
            Vector128<float> scales = Vector128.Load(w.Scales + o);
            for (int r = 0; r < rows; r++)
            {
                byte* u = quantized + (long)r * stride;
                Vector512<int> a0 = default, a1 = default, a2 = default, a3 = default;
                for (int k = 0; k < whole; k += 64)
                {
                    if (r == 0)
                    {
                        // As in Gemv: fetch the next block of four rows front to back meanwhile.
                        sbyte* ahead = w3 + inDim + 4 * k;
                        Sse.Prefetch0(ahead); Sse.Prefetch0(ahead + 64); Sse.Prefetch0(ahead + 128); Sse.Prefetch0(ahead + 192);
                    }
                    Vector512<sbyte> q = Vector512.Load((sbyte*)u + k);
                    Vector512<byte> magnitude = Vector512.Abs(q).AsByte();
                    Vector512<sbyte> s = Vector512.LessThan(q, Vector512<sbyte>.Zero);
                    a0 = Gemv512Add(a0, magnitude, s, Vector512.Load(w0 + k));
                    a1 = Gemv512Add(a1, magnitude, s, Vector512.Load(w1 + k));
                    a2 = Gemv512Add(a2, magnitude, s, Vector512.Load(w2 + k));
                    a3 = Gemv512Add(a3, magnitude, s, Vector512.Load(w3 + k));
                }
                StoreFour<Int8Avx2Dot>(Vector128.Create(Vector512.Sum(a0), Vector512.Sum(a1), Vector512.Sum(a2), Vector512.Sum(a3)),
                    u, w0, whole, inDim, default, rowScales[r], scales, y + (long)r * outDim + o, accumulate);
            }
        }
        // The last 1 to 3 outputs: the AVX2 GEMV's one-row loop on the same signed rows (every AVX-512BW CPU has AVX2,
        // and the integer sums are exact, so the floats are the same).
        if (o < end) Gemv<Int8Avx2Dot>(w, quantized, rowScales, y, stride, rows, o, end, accumulate);
    }

    /// <summary>acc + the four-product sums of |q| and w * sign(q) = (w ^ s) - s.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Gemv512Add(Vector512<int> acc, Vector512<byte> magnitude, Vector512<sbyte> s, Vector512<sbyte> w) =>
        acc + Int8Avx512BWDot.MultiplyAddAdjacent(Int8Avx512BWDot.MultiplyAddAdjacent(magnitude, (w ^ s) - s), Vector512<short>.One);

    /// <summary>Output rows [first, end) of <see cref="RunGemv(WorkerPool, Int8Isa, float*, in WeightView, float*, int, bool, bool)"/>.</summary>
    private struct GemvJob<TDot> : IRangeJob where TDot : struct, IInt8Dot
    {
        public WeightView Weight;
        public byte* Quantized;
        public float* RowScales, Output;
        public int Stride, Rows;
        public bool Accumulate;

        public void Execute(int first, int end)
        {
            if (typeof(TDot) == typeof(Int8Avx512BWDot)) Gemv512(Weight, Quantized, RowScales, Output, Stride, Rows, first, end, Accumulate);
            else Gemv<TDot>(Weight, Quantized, RowScales, Output, Stride, Rows, first, end, Accumulate);
        }
    }

    private struct QuantizeJob : IParallelJob
    {
        public float* Input, Scales;
        public int* Fixes;
        public byte* Output;
        public int InDim, Stride, Rows, PerItem;
        public bool Split;

        public void Execute(int index)
        {
            int first = index * PerItem, end = Math.Min(first + PerItem, Rows);
            if (Split) QuantizeSplitRows(Input, InDim, Stride, Output, Scales, Fixes, first, end);
            else QuantizeRows(Input, InDim, Stride, Output, Scales, first, end, ZeroPoint);
        }
    }

    /// <summary>Output columns [first, end) (whole panels) of every row.</summary>
    private struct MultiplyJob<TDot> : IRangeJob where TDot : struct, IInt8Dot
    {
        public WeightView Weight;
        public byte* Quantized;
        public float* RowScales, Output;
        public int* RowFixes;
        public int Stride, Rows;
        public bool Accumulate;

        public void Execute(int first, int end) =>
            Multiply<TDot>(Weight, Quantized, Stride, RowScales, RowFixes, Output, Rows, first, end, Accumulate);
    }
}

/// <summary>The height of an <see cref="Int8Gemm"/> micro-tile, as a type so that each height compiles separately.</summary>
internal interface ITileHeight
{
    /// <summary>Rows of the tile.</summary>
    static abstract int Rows { get; }
}

/// <summary>The full 6-row tile.</summary>
internal readonly struct SixRows : ITileHeight
{
    public static int Rows => 6;
}

/// <summary>The AVX2 tile.</summary>
internal readonly struct FourRows : ITileHeight
{
    public static int Rows => 4;
}

/// <summary>The half tile for the last 1 to 3 rows.</summary>
internal readonly struct ThreeRows : ITileHeight
{
    public static int Rows => 3;
}

/// <summary>The integer paths of <see cref="Int8Gemm"/>.</summary>
internal enum Int8Isa
{
    /// <summary>The scalar twin (<see cref="Int8Gemm.RunScalar"/>).</summary>
    Scalar,
    /// <summary>AVX2 without VNNI: VPMADDUBSW + VPMADDWD on |q| and w ^ sign(q) (GEMM) or w * sign(q) (GEMV).</summary>
    Avx2,
    /// <summary>AVX-VNNI: VPDPBUSD on q + 128 and w.</summary>
    AvxVnni,
    /// <summary>AVX-512BW without VNNI: the AVX2 arithmetic on 512-bit vectors (a k group of a panel is one zmm).</summary>
    Avx512BW,
}

/// <summary>One step of an <see cref="Int8Gemm"/> dot product: 32 activation bytes against 32 weight bytes into eight
/// int32 lanes, each lane the sum of four adjacent products. A type, so each path compiles separately.</summary>
internal unsafe interface IInt8Dot
{
    /// <summary>The activations' zero point on this path: the bytes hold q + ZeroPoint.</summary>
    static abstract byte ZeroPoint { get; }

    /// <summary>GEMV: what <see cref="Add"/> needs of the activation bytes, computed once per load and shared by every
    /// weight row they meet.</summary>
    static abstract Vector256<byte> Prepare(Vector256<byte> x);

    /// <summary>GEMV: acc + the four-product sums of x (prepared as <paramref name="prepared"/>) and w.</summary>
    static abstract Vector256<int> Add(Vector256<int> acc, Vector256<byte> prepared, Vector256<byte> x, Vector256<sbyte> w);

    /// <summary>GEMM: rows of a full micro-tile (at most <see cref="Int8Gemm.MR"/>).</summary>
    static abstract int TileRows { get; }

    /// <summary>GEMM: bytes of a quantized row per k group (4: q + 128; 8: |q| then the sign bytes).</summary>
    static abstract int GroupBytes { get; }

    /// <summary>GEMM: the k group at <paramref name="group"/> broadcast to every int32 lane (its first 4 bytes).</summary>
    static abstract Vector256<byte> First(byte* group);

    /// <summary>GEMM: the group's second broadcast (the sign bytes), where the path has one.</summary>
    static abstract Vector256<byte> Second(byte* group);

    /// <summary>GEMM: acc + the four-product sums of a broadcast group and 8 panel columns of weights.</summary>
    static abstract Vector256<int> AddGroup(Vector256<int> acc, Vector256<byte> second, Vector256<byte> first, Vector256<sbyte> w);
}

/// <summary>VPDPBUSD on u = q + 128 (the weight row sums take the 128 back out).</summary>
internal readonly unsafe struct Int8VnniDot : IInt8Dot
{
    public static byte ZeroPoint => 128;

    public static int GroupBytes => 4;

    public static int TileRows => 6;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Prepare(Vector256<byte> x) => x;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Add(Vector256<int> acc, Vector256<byte> prepared, Vector256<byte> x, Vector256<sbyte> w) =>
        MultiplyWideningAndAdd(acc, x, w);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> First(byte* group) => Vector256.Create(*(uint*)group).AsByte();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Second(byte* group) => default;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> AddGroup(Vector256<int> acc, Vector256<byte> second, Vector256<byte> first, Vector256<sbyte> w) =>
        MultiplyWideningAndAdd(acc, first, w);

    /// <summary>VPDPBUSD: acc + the sums of four adjacent u8 x s8 products. Without AVX-VNNI (tests force the path on
    /// any AVX2 machine) the same exact sums come from two VPMADDWD on the even and the odd bytes widened to int16
    /// (u0 w0 + u2 w2 and u1 w1 + u3 w3, each within 2 * 255 * 128); the JIT folds <c>AvxVnni.IsSupported</c>, so
    /// this is dead code where the instruction exists.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> MultiplyWideningAndAdd(Vector256<int> acc, Vector256<byte> u, Vector256<sbyte> w)
    {
        if (AvxVnni.IsSupported) return AvxVnni.MultiplyWideningAndAdd(acc, u, w);
        Vector256<short> uEven = (u.AsInt16() & Vector256.Create((short)0xFF)), uOdd = Avx2.ShiftRightLogical(u.AsInt16(), 8);
        Vector256<short> wEven = Avx2.ShiftRightArithmetic(Avx2.ShiftLeftLogical(w.AsInt16(), 8), 8), wOdd = Avx2.ShiftRightArithmetic(w.AsInt16(), 8);
        return acc + Avx2.MultiplyAddAdjacent(uEven, wEven) + Avx2.MultiplyAddAdjacent(uOdd, wOdd);
    }
}

/// <summary>AVX2 on signed q. GEMV: VPMADDUBSW(|q|, w * sign(q)) (VPSIGNB) gives pairs q0 w0 + q1 w1 exactly (at most
/// 2 * 127 * 127 = 32258, inside int16). GEMM: VPMADDUBSW(|q|, w ^ s) from the split rows, |q| and s both broadcast
/// from memory (<see cref="Int8Gemm"/>.QuantizeSplitRows; the epilogue adds the row's correction). VPMADDWD by ones
/// then adds the pairs into int32.</summary>
internal readonly unsafe struct Int8Avx2Dot : IInt8Dot
{
    public static byte ZeroPoint => 0;

    public static int GroupBytes => 8;

    public static int TileRows => 4;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Prepare(Vector256<byte> x) => Avx2.Abs(x.AsSByte());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Add(Vector256<int> acc, Vector256<byte> prepared, Vector256<byte> x, Vector256<sbyte> w) =>
        acc + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(prepared, Avx2.Sign(w, x.AsSByte())), Vector256<short>.One);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> First(byte* group) => Vector256.Create(*(uint*)group).AsByte();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Second(byte* group) => Vector256.Create(*(uint*)(group + 4)).AsByte();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> AddGroup(Vector256<int> acc, Vector256<byte> second, Vector256<byte> first, Vector256<sbyte> w) =>
        acc + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(first, w ^ second.AsSByte()), Vector256<short>.One);
}

/// <summary>
/// The AVX-512BW path's marker for <see cref="Int8Gemm"/>'s generic plumbing (its GEMM and GEMV are the 512-bit
/// MicroKernel512 and Gemv512; the 256-bit members are the AVX2 ones, which the plumbing never calls for this type),
/// and its two instructions that Vector512 lacks. Without AVX-512BW (tests force the path on any x64 machine) each runs
/// as the same AVX2 instruction on the two 256-bit halves: lane for lane the same result; the JIT folds
/// <c>Avx512BW.IsSupported</c>, so the emulation is dead code where the hardware exists.
/// </summary>
internal readonly unsafe struct Int8Avx512BWDot : IInt8Dot
{
    public static byte ZeroPoint => 0;

    public static int GroupBytes => 8;

    public static int TileRows => 6;

    public static Vector256<byte> Prepare(Vector256<byte> x) => Int8Avx2Dot.Prepare(x);

    public static Vector256<int> Add(Vector256<int> acc, Vector256<byte> prepared, Vector256<byte> x, Vector256<sbyte> w) =>
        Int8Avx2Dot.Add(acc, prepared, x, w);

    public static Vector256<byte> First(byte* group) => Int8Avx2Dot.First(group);

    public static Vector256<byte> Second(byte* group) => Int8Avx2Dot.Second(group);

    public static Vector256<int> AddGroup(Vector256<int> acc, Vector256<byte> second, Vector256<byte> first, Vector256<sbyte> w) =>
        Int8Avx2Dot.AddGroup(acc, second, first, w);

    /// <summary>VPMADDUBSW: u8 x s8 pairs added into saturating int16.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<short> MultiplyAddAdjacent(Vector512<byte> u, Vector512<sbyte> s) =>
        Avx512BW.IsSupported ? Avx512BW.MultiplyAddAdjacent(u, s)
        : Vector512.Create(Avx2.MultiplyAddAdjacent(u.GetLower(), s.GetLower()), Avx2.MultiplyAddAdjacent(u.GetUpper(), s.GetUpper()));

    /// <summary>VPMADDWD: int16 x int16 pairs added into int32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> MultiplyAddAdjacent(Vector512<short> a, Vector512<short> b) =>
        Avx512BW.IsSupported ? Avx512BW.MultiplyAddAdjacent(a, b)
        : Vector512.Create(Avx2.MultiplyAddAdjacent(a.GetLower(), b.GetLower()), Avx2.MultiplyAddAdjacent(a.GetUpper(), b.GetUpper()));

    /// <summary>acc + the four-product sums of |q| and w ^ s (see QuantizeSplitRows), 16 int32 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<int> AddGroup(Vector512<int> acc, Vector512<byte> magnitude, Vector512<sbyte> signs, Vector512<sbyte> w) =>
        acc + MultiplyAddAdjacent(MultiplyAddAdjacent(magnitude, w ^ signs), Vector512<short>.One);
}
