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
// VPMADDUBSW + VPMADDWD (Int8Isa.Avx2, the Int8Avx2Dot step): VPMADDUBSW adds two u8 x s8 products into a saturating
// int16, and with the zero point (u up to 255) two products can reach 2 * 255 * 127 = 64770 > 32767. So that path does
// not use the zero point: the activations are stored as signed q, and each step multiplies |q| (u8) by w * sign(q)
// (VPSIGNB; s8), whose products are q * w exactly and whose pairs stay within 2 * 127 * 127 = 32258. VPMADDWD by ones
// then widens the pairs to int32. The integer sums are the same exact sum q * w as VPDPBUSD's minus the correction,
// so both paths equal the scalar twin bit for bit; the weight row sums are simply not needed there.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ManagedT5.Kernels.Cpu;

/// <summary>Linear for many rows with int8 weights, multiplied in int8 x uint8 -> int32 (VPDPBUSD).</summary>
internal static unsafe class Int8Gemm
{
    /// <summary>Rows of A per micro-tile.</summary>
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
    /// present, else AVX2 (VPMADDUBSW), else the scalar twin.</summary>
    public static Int8Isa Isa(SimdLevel level) =>
        level < SimdLevel.Vector256 ? Int8Isa.Scalar
        : AvxVnni.IsSupported ? Int8Isa.AvxVnni
        : Avx2.IsSupported ? Int8Isa.Avx2
        : Int8Isa.Scalar;

    /// <summary>Whether this machine can run <paramref name="isa"/> (the scalar twin runs anywhere).</summary>
    public static bool IsSupported(Int8Isa isa) => isa switch
    {
        Int8Isa.AvxVnni => AvxVnni.IsSupported,
        Int8Isa.Avx2 => Avx2.IsSupported,
        _ => true,
    };

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
        byte zeroPoint = (byte)(isa == Int8Isa.AvxVnni ? ZeroPoint : 0);

        // Scratch: the row scales (padded to whole tiles and 64 bytes, pads 0), then the quantized rows.
        int stride = (w.Cols + 3) & ~3;
        int scaleFloats = ((rows + MR - 1) / MR * MR + 15) & ~15;
        float* rowScales = Scratch.Get(ScratchSlot.PreparedInput, scaleFloats + (long)rows * stride / 4);
        byte* quantized = (byte*)(rowScales + scaleFloats);
        new Span<float>(rowScales + rows, scaleFloats - rows).Clear();

        int rowsPerItem = (rows + pool.Threads - 1) / pool.Threads;
        var quantize = new QuantizeJob
        {
            Input = x, Output = quantized, Scales = rowScales, InDim = w.Cols, Stride = stride, Rows = rows, PerItem = rowsPerItem,
            ZeroPoint = zeroPoint,
        };
        pool.Run(ref quantize, (rows + rowsPerItem - 1) / rowsPerItem);

        if (isa == Int8Isa.AvxVnni) Multiply<Int8VnniDot>(pool, weights, quantized, rowScales, y, stride, rows, accumulate, steal);
        else Multiply<Int8Avx2Dot>(pool, weights, quantized, rowScales, y, stride, rows, accumulate, steal);
    }

    private static void Multiply<TDot>(WorkerPool pool, ReadOnlySpan<WeightView> weights, byte* quantized, float* rowScales,
        ReadOnlySpan<nint> y, int stride, int rows, bool accumulate, bool steal) where TDot : struct, IInt8Dot
    {
        MultiplyJob<TDot>* jobs = stackalloc MultiplyJob<TDot>[weights.Length];
        for (int i = 0; i < weights.Length; i++)
            jobs[i] = new MultiplyJob<TDot>
            {
                Weight = weights[i], Quantized = quantized, RowScales = rowScales, Output = (float*)y[i], Stride = stride, Rows = rows,
                Accumulate = accumulate,
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
            RunGemvJobs<Int8Avx2Dot>(pool, weights, quantized, rowScales, y, stride, rows, accumulate, steal);
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
                Vector128<int> acc = SumEach(a0 + b0, a1 + b1, a2 + b2, a3 + b3);
                if (whole < inDim)
                    acc += Vector128.Create(Tail<TDot>(u, w0, whole, inDim), Tail<TDot>(u, w1, whole, inDim),
                        Tail<TDot>(u, w2, whole, inDim), Tail<TDot>(u, w3, whole, inDim));
                Vector128<float> value = Vector128.ConvertToSingle(acc - correction) * Vector128.Create(rowScales[r]) * scales;
                float* output = y + (long)r * outDim + o;
                if (accumulate) value = Vector128.Load(output) + value;
                value.Store(output);
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
        if (!IsSupported(isa))
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
    /// the AVX2 path (signed q). 32 elements at a time: multiply, convert with round half to even (the default MXCSR
    /// mode, as MathF.Round), two saturating packs to signed bytes (exact, |q| &lt;= 127), undo the packs' lane
    /// interleave, add the zero point (an XOR with 128 or 0).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void QuantizeRows(float* x, int inDim, int stride, byte* output, float* scales, int first, int end, byte zeroPoint)
    {
        // After two in-lane packs of a, b, c, d (8 int32 each), the int32 lanes hold the groups of 4 k in the order
        // 0 2 4 6 1 3 5 7; this permutation puts them back in order.
        var order = Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7);
        var zeroPointLanes = Vector256.Create(zeroPoint);
        for (int r = first; r < end; r++)
        {
            float* row = x + (long)r * inDim;
            byte* destination = output + (long)r * stride;
            (float scale, float inverse) = RowScale(MaxAbs(row, inDim));
            scales[r] = scale;
            var multiplier = Vector256.Create(inverse);
            int k = 0;
            for (; k <= inDim - 32; k += 32)
            {
                Vector256<int> a = Avx.ConvertToVector256Int32(Vector256.Load(row + k) * multiplier);
                Vector256<int> b = Avx.ConvertToVector256Int32(Vector256.Load(row + k + 8) * multiplier);
                Vector256<int> c = Avx.ConvertToVector256Int32(Vector256.Load(row + k + 16) * multiplier);
                Vector256<int> d = Avx.ConvertToVector256Int32(Vector256.Load(row + k + 24) * multiplier);
                Vector256<sbyte> q = Avx2.PackSignedSaturate(Avx2.PackSignedSaturate(a, b), Avx2.PackSignedSaturate(c, d));
                (Avx2.PermuteVar8x32(q.AsInt32(), order).AsByte() ^ zeroPointLanes).Store(destination + k);
            }
            for (; k < inDim; k++) destination[k] = (byte)(Quantize(row[k], inverse) + zeroPoint);
            for (; k < stride; k++) destination[k] = zeroPoint;
        }
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
    /// 128 * sum_k w and their scales, then run the micro-kernel over all rows of A, MR at a time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Multiply<TDot>(in WeightView w, byte* quantized, int stride, float* rowScales, float* c, int rows,
        int first, int end, bool accumulate) where TDot : struct, IInt8Dot
    {
        int outDim = w.Rows;
        int k4 = stride / 4;
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
            for (int r0 = 0; r0 < rows; r0 += MR)
            {
                int rowsHere = Math.Min(MR, rows - r0);
                byte* a = quantized + (long)r0 * stride;
                float* cTile = c + (long)r0 * outDim + column;
                if (rowsHere == MR && columns == NR)
                {
                    MicroKernel<SixRows, TDot>(a, stride, MR, panel, k4, correction, rowScales + r0, columnScales, cTile, outDim, accumulate);
                    continue;
                }
                // Edge tile: compute the whole tile aside, keep the part that exists (the same float ops). The last
                // 1 to 3 rows take the half-height kernel.
                if (rowsHere <= 3)
                    MicroKernel<ThreeRows, TDot>(a, stride, rowsHere, panel, k4, correction, rowScales + r0, columnScales, tile, NR, false);
                else
                    MicroKernel<SixRows, TDot>(a, stride, rowsHere, panel, k4, correction, rowScales + r0, columnScales, tile, NR, false);
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
    /// acc[i, j] = sum over k groups of VPDPBUSD(row i of A, panel column j), then
    /// c[i * ldc + j] (+)= float(acc - correction[j]) * rowScales[i] * columnScales[j]. Rows of A are
    /// <paramref name="stride"/> bytes apart; past <paramref name="rows"/> the last row is read again (an edge tile).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MicroKernel<THeight, TDot>(byte* a, int stride, int rows, sbyte* b, int k4, int* correction, float* rowScales,
        float* columnScales, float* c, int ldc, bool add) where THeight : struct, ITileHeight where TDot : struct, IInt8Dot
    {
        bool six = THeight.Rows == 6; // a JIT-time constant: each instantiation keeps one of the loops below
        byte* a0 = a, a1 = a + Math.Min(1, rows - 1) * stride, a2 = a + Math.Min(2, rows - 1) * stride;
        byte* a3 = a + Math.Min(3, rows - 1) * stride, a4 = a + Math.Min(4, rows - 1) * stride, a5 = a + Math.Min(5, rows - 1) * stride;
        Vector256<int> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        nint end = 4 * (nint)k4;
        if (six)
        {
            for (nint k = 0; k < end; k += 4, b += 4 * NR)
            {
                Vector256<sbyte> b0 = Vector256.Load(b), b1 = Vector256.Load(b + 32);
                Vector256<byte> ak = Vector256.Create(*(uint*)(a0 + k)).AsByte(); Vector256<byte> pk = TDot.Prepare(ak);
                c00 = TDot.Add(c00, pk, ak, b0); c01 = TDot.Add(c01, pk, ak, b1);
                ak = Vector256.Create(*(uint*)(a1 + k)).AsByte(); pk = TDot.Prepare(ak);
                c10 = TDot.Add(c10, pk, ak, b0); c11 = TDot.Add(c11, pk, ak, b1);
                ak = Vector256.Create(*(uint*)(a2 + k)).AsByte(); pk = TDot.Prepare(ak);
                c20 = TDot.Add(c20, pk, ak, b0); c21 = TDot.Add(c21, pk, ak, b1);
                ak = Vector256.Create(*(uint*)(a3 + k)).AsByte(); pk = TDot.Prepare(ak);
                c30 = TDot.Add(c30, pk, ak, b0); c31 = TDot.Add(c31, pk, ak, b1);
                ak = Vector256.Create(*(uint*)(a4 + k)).AsByte(); pk = TDot.Prepare(ak);
                c40 = TDot.Add(c40, pk, ak, b0); c41 = TDot.Add(c41, pk, ak, b1);
                ak = Vector256.Create(*(uint*)(a5 + k)).AsByte(); pk = TDot.Prepare(ak);
                c50 = TDot.Add(c50, pk, ak, b0); c51 = TDot.Add(c51, pk, ak, b1);
            }
        }
        else
        {
            // Three rows: six accumulators would wait on VPDPBUSD's latency, so even and odd k groups go to separate
            // accumulators (c0x..c2x and c3x..c5x) and are added at the end (integer sums: the order does not matter).
            nint k = 0;
            for (; k + 8 <= end; k += 8, b += 8 * NR)
            {
                Vector256<sbyte> b0 = Vector256.Load(b), b1 = Vector256.Load(b + 32), b2 = Vector256.Load(b + 64), b3 = Vector256.Load(b + 96);
                Vector256<byte> ak = Vector256.Create(*(uint*)(a0 + k)).AsByte(); Vector256<byte> pk = TDot.Prepare(ak);
                c00 = TDot.Add(c00, pk, ak, b0); c01 = TDot.Add(c01, pk, ak, b1);
                ak = Vector256.Create(*(uint*)(a1 + k)).AsByte(); pk = TDot.Prepare(ak);
                c10 = TDot.Add(c10, pk, ak, b0); c11 = TDot.Add(c11, pk, ak, b1);
                ak = Vector256.Create(*(uint*)(a2 + k)).AsByte(); pk = TDot.Prepare(ak);
                c20 = TDot.Add(c20, pk, ak, b0); c21 = TDot.Add(c21, pk, ak, b1);
                ak = Vector256.Create(*(uint*)(a0 + k + 4)).AsByte(); pk = TDot.Prepare(ak);
                c30 = TDot.Add(c30, pk, ak, b2); c31 = TDot.Add(c31, pk, ak, b3);
                ak = Vector256.Create(*(uint*)(a1 + k + 4)).AsByte(); pk = TDot.Prepare(ak);
                c40 = TDot.Add(c40, pk, ak, b2); c41 = TDot.Add(c41, pk, ak, b3);
                ak = Vector256.Create(*(uint*)(a2 + k + 4)).AsByte(); pk = TDot.Prepare(ak);
                c50 = TDot.Add(c50, pk, ak, b2); c51 = TDot.Add(c51, pk, ak, b3);
            }
            if (k < end)
            {
                Vector256<sbyte> b0 = Vector256.Load(b), b1 = Vector256.Load(b + 32);
                Vector256<byte> ak = Vector256.Create(*(uint*)(a0 + k)).AsByte(); Vector256<byte> pk = TDot.Prepare(ak);
                c00 = TDot.Add(c00, pk, ak, b0); c01 = TDot.Add(c01, pk, ak, b1);
                ak = Vector256.Create(*(uint*)(a1 + k)).AsByte(); pk = TDot.Prepare(ak);
                c10 = TDot.Add(c10, pk, ak, b0); c11 = TDot.Add(c11, pk, ak, b1);
                ak = Vector256.Create(*(uint*)(a2 + k)).AsByte(); pk = TDot.Prepare(ak);
                c20 = TDot.Add(c20, pk, ak, b0); c21 = TDot.Add(c21, pk, ak, b1);
            }
            c00 += c30; c01 += c31; c10 += c40; c11 += c41; c20 += c50; c21 += c51;
        }

        Vector256<int> z0 = Vector256.Load(correction), z1 = Vector256.Load(correction + 8);
        Vector256<float> s0 = Vector256.Load(columnScales), s1 = Vector256.Load(columnScales + 8);
        Store(c, c00 - z0, c01 - z1, rowScales[0], s0, s1, add);
        Store(c + ldc, c10 - z0, c11 - z1, rowScales[1], s0, s1, add);
        Store(c + 2 * ldc, c20 - z0, c21 - z1, rowScales[2], s0, s1, add);
        if (!six) return;
        Store(c + 3 * ldc, c30 - z0, c31 - z1, rowScales[3], s0, s1, add);
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

    /// <summary>Output rows [first, end) of <see cref="RunGemv(WorkerPool, Int8Isa, float*, in WeightView, float*, int, bool, bool)"/>.</summary>
    private struct GemvJob<TDot> : IRangeJob where TDot : struct, IInt8Dot
    {
        public WeightView Weight;
        public byte* Quantized;
        public float* RowScales, Output;
        public int Stride, Rows;
        public bool Accumulate;

        public void Execute(int first, int end) => Gemv<TDot>(Weight, Quantized, RowScales, Output, Stride, Rows, first, end, Accumulate);
    }

    private struct QuantizeJob : IParallelJob
    {
        public float* Input, Scales;
        public byte* Output;
        public int InDim, Stride, Rows, PerItem;
        public byte ZeroPoint;

        public void Execute(int index)
        {
            int first = index * PerItem;
            QuantizeRows(Input, InDim, Stride, Output, Scales, first, Math.Min(first + PerItem, Rows), ZeroPoint);
        }
    }

    /// <summary>Output columns [first, end) (whole panels) of every row.</summary>
    private struct MultiplyJob<TDot> : IRangeJob where TDot : struct, IInt8Dot
    {
        public WeightView Weight;
        public byte* Quantized;
        public float* RowScales, Output;
        public int Stride, Rows;
        public bool Accumulate;

        public void Execute(int first, int end) => Multiply<TDot>(Weight, Quantized, Stride, RowScales, Output, Rows, first, end, Accumulate);
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
    /// <summary>AVX2 without VNNI: VPMADDUBSW + VPMADDWD on |q| and w * sign(q).</summary>
    Avx2,
    /// <summary>AVX-VNNI: VPDPBUSD on q + 128 and w.</summary>
    AvxVnni,
}

/// <summary>One step of an <see cref="Int8Gemm"/> dot product: 32 activation bytes against 32 weight bytes into eight
/// int32 lanes, each lane the sum of four adjacent products. A type, so each path compiles separately.</summary>
internal interface IInt8Dot
{
    /// <summary>The activations' zero point on this path: the bytes hold q + ZeroPoint.</summary>
    static abstract byte ZeroPoint { get; }

    /// <summary>What <see cref="Add"/> needs of the activation bytes, computed once per load and shared by every
    /// weight row they meet.</summary>
    static abstract Vector256<byte> Prepare(Vector256<byte> x);

    /// <summary>acc + the four-product sums of x (prepared as <paramref name="prepared"/>) and w.</summary>
    static abstract Vector256<int> Add(Vector256<int> acc, Vector256<byte> prepared, Vector256<byte> x, Vector256<sbyte> w);
}

/// <summary>VPDPBUSD on u = q + 128 (the weight row sums take the 128 back out).</summary>
internal readonly struct Int8VnniDot : IInt8Dot
{
    public static byte ZeroPoint => 128;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Prepare(Vector256<byte> x) => x;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Add(Vector256<int> acc, Vector256<byte> prepared, Vector256<byte> x, Vector256<sbyte> w) =>
        AvxVnni.MultiplyWideningAndAdd(acc, x, w);
}

/// <summary>AVX2 on signed q: VPMADDUBSW(|q|, w * sign(q)) gives pairs q0 w0 + q1 w1 exactly (at most 2 * 127 * 127 =
/// 32258, inside int16), and VPMADDWD by ones adds the pairs into int32.</summary>
internal readonly struct Int8Avx2Dot : IInt8Dot
{
    public static byte ZeroPoint => 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<byte> Prepare(Vector256<byte> x) => Avx2.Abs(x.AsSByte());

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Add(Vector256<int> acc, Vector256<byte> prepared, Vector256<byte> x, Vector256<sbyte> w) =>
        acc + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(prepared, Avx2.Sign(w, x.AsSByte())), Vector256<short>.One);
}
