// GEMV: y (rows, out) (+)= x (rows, in) W^T for a handful of rows (batch-1 and small-batch decode). It is
// bandwidth-bound: the weight is streamed once, front to back (one row at a time keeps the access sequential,
// which the hardware prefetchers reward; kernels reading two or four weight rows in lockstep were slower without
// software prefetch; the one that is kept, two rows against eight x rows, prefetches both),
// each chunk widened in registers (BF16/F16/int8 lanes) and dotted with every input row while it is in L1. With
// three to eight input rows (beam search, batched decode) each widened chunk meets four or eight x rows at once, so a
// weight load feeds that many FMAs instead of one (faster at four rows than four separate dots); those
// kernels keep two accumulator sets (the FMA chains overlap), reduce four accumulators at once (VectorMath.Sum4) and
// prefetch the weight stream ahead (1 KB; a row or a pair of rows for the F32 chunk kernels), which brought four rows
// to about the one-row time per step. The figures behind these choices: docs/BENCHMARKS.md, "Measurements behind
// kernel choices".
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ManagedT5.Kernels.Cpu;

/// <summary>Matrix-vector products against a stored weight, one weight format per instantiation.</summary>
internal static unsafe class Gemv
{
    /// <summary>
    /// y[r, o] (+)= scale[o] * sum_i W[o, i] x[r, i] for o in [<paramref name="first"/>, <paramref name="end"/>) and
    /// r &lt; <paramref name="rows"/>. W (out, in) at <paramref name="weights"/>; <paramref name="laidInput"/> holds the
    /// rows of x in <see cref="LaneLayout"/> order for <paramref name="level"/>; <paramref name="scales"/> is null
    /// except for int8. <paramref name="multiRow"/>: 3-8 rows take the four- and eight-row kernels.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run<TFormat>(byte* weights, int inDim, int outDim, float* scales, float* laidInput, int rows,
        float* output, int first, int end, bool accumulate, SimdLevel level, bool multiRow) where TFormat : IWeightFormat
    {
        long rowBytes = (long)inDim * TFormat.ElementSize;
        if (rows > 2 && multiRow && level >= SimdLevel.Vector256 && Vector256.IsHardwareAccelerated)
        {
            float* dots = stackalloc float[8];
            bool wide = level == SimdLevel.Vector512 && Vector512.IsHardwareAccelerated;
            for (int o = first; o < end; o++)
            {
                byte* w = weights + o * rowBytes;
                float scale = scales != null ? scales[o] : 1f;
                for (int r0 = 0; r0 < rows; r0 += 8)
                {
                    int n = Math.Min(8, rows - r0);
                    float* x = laidInput + (long)r0 * inDim;
                    if (n > 4 && wide) Dot8Rows512<TFormat>(w, x, inDim, n, dots);
                    else if (n > 4) Dot8Rows256<TFormat>(w, x, inDim, n, dots);
                    else if (wide) Dot4Rows512<TFormat>(w, x, inDim, n, dots);
                    else Dot4Rows256<TFormat>(w, x, inDim, n, dots);
                    for (int r = 0; r < n; r++)
                    {
                        float value = scales != null ? dots[r] * scale : dots[r];
                        float* y = output + (long)(r0 + r) * outDim + o;
                        *y = accumulate ? *y + value : value;
                    }
                }
            }
            return;
        }
        for (int o = first; o < end; o++)
        {
            byte* w = weights + o * rowBytes;
            for (int r = 0; r < rows; r++)
            {
                float value = Dot<TFormat>(w, laidInput + (long)r * inDim, inDim, level);
                if (scales != null) value *= scales[o];
                float* y = output + (long)r * outDim + o;
                *y = accumulate ? *y + value : value;
            }
        }
    }

    /// <summary>How far ahead (1 KB) the multi-row widening kernels prefetch the weight stream: their extra FMAs per
    /// weight byte leave the hardware prefetchers behind.</summary>
    private const int PrefetchAhead = 256;

    /// <summary>Zero floats before and after each row of the padded input of <see cref="RunF32Chunks"/>.</summary>
    public const int Pad = 16;

    /// <summary>
    /// The AVX-512 F32 GEMV on aligned chunks, for weights that start mid cache line (in place from a safetensors
    /// file, whose tensors are 8-byte aligned at best) and for every F32 weight at 3-8 rows: each row is read as whole
    /// aligned 64-byte chunks, the first and last masked to the row, so no weight load splits a cache line (split
    /// loads are slower end to end; see docs/BENCHMARKS.md). One or two x rows are dotted one at a time, 3-4 four at a time, 5-8 as
    /// eight rows against two weight rows. x rows sit at
    /// padded + r * stride + <see cref="Pad"/> with at least <see cref="Pad"/> zeros on each side, so the shifted x
    /// loads stay in the buffer. Weights must be 4-byte aligned.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RunF32Chunks(float* weights, int inDim, int outDim, float* padded, int stride, int rows,
        float* output, int first, int end, bool accumulate)
    {
        float* dots = stackalloc float[16];
        for (int o = first; o < end; o++)
        {
            float* w = weights + (long)o * inDim;
            int head = (int)(((nint)w & 63) >> 2);
            float* x = padded + Pad - head;
            if (rows <= 2)
            {
                for (int r = 0; r < rows; r++)
                {
                    float value = DotAlignedChunks(w - head, x + (long)r * stride, head, head + inDim);
                    float* y = output + (long)r * outDim + o;
                    *y = accumulate ? *y + value : value;
                }
                continue;
            }
            // Five to eight rows with every weight row at the same offset: two weight rows at a time, so each x chunk
            // loaded feeds two FMAs (eight x loads per weight chunk would otherwise outnumber the FMAs' use of them).
            // (A last, unpaired row is paired with itself.)
            if (rows > 4 && rows <= 8 && inDim % 16 == 0)
            {
                bool pair = o + 1 < end;
                Dot8x2AlignedChunks(w - head, pair ? w - head + inDim : w - head, x, stride, rows, head, head + inDim, dots);
                for (int r = 0; r < rows; r++)
                {
                    float* y = output + (long)r * outDim + o;
                    y[0] = accumulate ? y[0] + dots[r] : dots[r];
                    if (pair) y[1] = accumulate ? y[1] + dots[8 + r] : dots[8 + r];
                }
                if (pair) o++;
                continue;
            }
            // Otherwise (beam search; rows of other offsets) each aligned weight chunk meets four x rows at once.
            for (int r0 = 0; r0 < rows; r0 += 4)
            {
                int n = Math.Min(4, rows - r0);
                Dot4AlignedChunks(w - head, x + (long)r0 * stride, stride, n, head, head + inDim, dots);
                for (int r = 0; r < n; r++)
                {
                    float* y = output + (long)(r0 + r) * outDim + o;
                    *y = accumulate ? *y + dots[r] : dots[r];
                }
            }
        }
    }

    /// <summary>Eight x rows (n 5..8; missing rows repeat row 0) against two weight rows at once (same offset in their cache lines): dots[r]
    /// for the row at <paramref name="w0"/>, dots[8 + r] for the row at <paramref name="w1"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void Dot8x2AlignedChunks(float* w0, float* w1, float* x, long stride, int n, int first, int span, float* dots)
    {
        float* x0 = x, x1 = x + stride, x2 = x + 2 * stride, x3 = x + 3 * stride, x4 = x + 4 * stride;
        float* x5 = x + (n > 5 ? 5 * stride : 0), x6 = x + (n > 6 ? 6 * stride : 0), x7 = x + (n > 7 ? 7 * stride : 0);
        Vector512<int> lane = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        int last = (span - 1) & ~15;
        Vector512<float> keep = Vector512.GreaterThanOrEqual(lane, Vector512.Create(first)).AsSingle();
        if (last == 0) keep &= Vector512.LessThan(lane, Vector512.Create(span)).AsSingle();
        Vector512<float> c0 = Vector512.LoadAligned(w0) & keep, c1 = Vector512.LoadAligned(w1) & keep, v;
        v = Vector512.Load(x0); Vector512<float> a0 = c0 * v, b0 = c1 * v;
        v = Vector512.Load(x1); Vector512<float> a1 = c0 * v, b1 = c1 * v;
        v = Vector512.Load(x2); Vector512<float> a2 = c0 * v, b2 = c1 * v;
        v = Vector512.Load(x3); Vector512<float> a3 = c0 * v, b3 = c1 * v;
        v = Vector512.Load(x4); Vector512<float> a4 = c0 * v, b4 = c1 * v;
        v = Vector512.Load(x5); Vector512<float> a5 = c0 * v, b5 = c1 * v;
        v = Vector512.Load(x6); Vector512<float> a6 = c0 * v, b6 = c1 * v;
        v = Vector512.Load(x7); Vector512<float> a7 = c0 * v, b7 = c1 * v;
        for (int k = 16; k <= last; k += 16)
        {
            // The next pair of rows (contiguous after w1), two lines per step: a whole pair ahead, since this kernel's
            // 16 FMAs per step leave the stream further behind than the 1 KB the other kernels prefetch.
            if (Sse.IsSupported) { Sse.Prefetch0(w1 + span + 2 * k); Sse.Prefetch0(w1 + span + 2 * k + 16); }
            c0 = Vector512.LoadAligned(w0 + k);
            c1 = Vector512.LoadAligned(w1 + k);
            if (k == last)
            {
                Vector512<float> tail = Vector512.LessThan(lane, Vector512.Create(span - last)).AsSingle();
                c0 &= tail;
                c1 &= tail;
            }
            v = Vector512.Load(x0 + k); a0 = Vector512.FusedMultiplyAdd(c0, v, a0); b0 = Vector512.FusedMultiplyAdd(c1, v, b0);
            v = Vector512.Load(x1 + k); a1 = Vector512.FusedMultiplyAdd(c0, v, a1); b1 = Vector512.FusedMultiplyAdd(c1, v, b1);
            v = Vector512.Load(x2 + k); a2 = Vector512.FusedMultiplyAdd(c0, v, a2); b2 = Vector512.FusedMultiplyAdd(c1, v, b2);
            v = Vector512.Load(x3 + k); a3 = Vector512.FusedMultiplyAdd(c0, v, a3); b3 = Vector512.FusedMultiplyAdd(c1, v, b3);
            v = Vector512.Load(x4 + k); a4 = Vector512.FusedMultiplyAdd(c0, v, a4); b4 = Vector512.FusedMultiplyAdd(c1, v, b4);
            v = Vector512.Load(x5 + k); a5 = Vector512.FusedMultiplyAdd(c0, v, a5); b5 = Vector512.FusedMultiplyAdd(c1, v, b5);
            v = Vector512.Load(x6 + k); a6 = Vector512.FusedMultiplyAdd(c0, v, a6); b6 = Vector512.FusedMultiplyAdd(c1, v, b6);
            v = Vector512.Load(x7 + k); a7 = Vector512.FusedMultiplyAdd(c0, v, a7); b7 = Vector512.FusedMultiplyAdd(c1, v, b7);
        }
        VectorMath.Sum4(a0, a1, a2, a3, dots);
        VectorMath.Sum4(a4, a5, a6, a7, dots + 4);
        VectorMath.Sum4(b0, b1, b2, b3, dots + 8);
        VectorMath.Sum4(b4, b5, b6, b7, dots + 12);
    }

    /// <summary><see cref="DotAlignedChunks"/> for <paramref name="n"/> (1..4) x rows at x + r * stride (missing rows
    /// repeat row 0 and are not written): each aligned weight chunk is loaded once and multiplied with every row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void Dot4AlignedChunks(float* w, float* x, long stride, int n, int first, int span, float* dots)
    {
        float* x0 = x, x1 = x + (n > 1 ? stride : 0), x2 = x + (n > 2 ? 2 * stride : 0), x3 = x + (n > 3 ? 3 * stride : 0);
        Vector512<int> lane = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        int last = (span - 1) & ~15;
        Vector512<float> keep = Vector512.GreaterThanOrEqual(lane, Vector512.Create(first)).AsSingle();
        if (last == 0) keep &= Vector512.LessThan(lane, Vector512.Create(span)).AsSingle();
        Vector512<float> chunk = Vector512.LoadAligned(w) & keep;
        Vector512<float> a0 = chunk * Vector512.Load(x0), a1 = chunk * Vector512.Load(x1);
        Vector512<float> a2 = chunk * Vector512.Load(x2), a3 = chunk * Vector512.Load(x3);
        // Two chunks per step into two sets of accumulators, so the FMA chains overlap.
        Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default;
        int k = 16;
        for (; k < last - 16; k += 32)
        {
            // The same place in the next weight row (a row ahead: these kernels do more FMAs per weight byte than
            // the one-row kernel, so the stream needs fetching further ahead than the 1 KB of the others).
            if (Sse.IsSupported) { Sse.Prefetch0(w + span + k); Sse.Prefetch0(w + span + k + 16); }
            chunk = Vector512.LoadAligned(w + k);
            a0 = Vector512.FusedMultiplyAdd(chunk, Vector512.Load(x0 + k), a0);
            a1 = Vector512.FusedMultiplyAdd(chunk, Vector512.Load(x1 + k), a1);
            a2 = Vector512.FusedMultiplyAdd(chunk, Vector512.Load(x2 + k), a2);
            a3 = Vector512.FusedMultiplyAdd(chunk, Vector512.Load(x3 + k), a3);
            chunk = Vector512.LoadAligned(w + k + 16);
            b0 = Vector512.FusedMultiplyAdd(chunk, Vector512.Load(x0 + k + 16), b0);
            b1 = Vector512.FusedMultiplyAdd(chunk, Vector512.Load(x1 + k + 16), b1);
            b2 = Vector512.FusedMultiplyAdd(chunk, Vector512.Load(x2 + k + 16), b2);
            b3 = Vector512.FusedMultiplyAdd(chunk, Vector512.Load(x3 + k + 16), b3);
        }
        for (; k < last; k += 16)
        {
            chunk = Vector512.LoadAligned(w + k);
            a0 = Vector512.FusedMultiplyAdd(chunk, Vector512.Load(x0 + k), a0);
            a1 = Vector512.FusedMultiplyAdd(chunk, Vector512.Load(x1 + k), a1);
            a2 = Vector512.FusedMultiplyAdd(chunk, Vector512.Load(x2 + k), a2);
            a3 = Vector512.FusedMultiplyAdd(chunk, Vector512.Load(x3 + k), a3);
        }
        if (last > 0)
        {
            chunk = Vector512.LoadAligned(w + last) & Vector512.LessThan(lane, Vector512.Create(span - last)).AsSingle();
            b0 = Vector512.FusedMultiplyAdd(chunk, Vector512.Load(x0 + last), b0);
            b1 = Vector512.FusedMultiplyAdd(chunk, Vector512.Load(x1 + last), b1);
            b2 = Vector512.FusedMultiplyAdd(chunk, Vector512.Load(x2 + last), b2);
            b3 = Vector512.FusedMultiplyAdd(chunk, Vector512.Load(x3 + last), b3);
        }
        VectorMath.Sum4(a0 + b0, a1 + b1, a2 + b2, a3 + b3, dots);
    }

    /// <summary>sum of w[i] x[i] for i in [<paramref name="first"/>, <paramref name="span"/>), w 64-byte aligned, read
    /// in whole 16-float chunks (lanes outside the range are zeroed in w, so whatever lies beyond the row cannot leak in).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static float DotAlignedChunks(float* w, float* x, int first, int span)
    {
        Vector512<int> lane = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        int last = (span - 1) & ~15;                       // offset of the last chunk
        Vector512<float> keep = Vector512.GreaterThanOrEqual(lane, Vector512.Create(first)).AsSingle();
        if (last == 0) keep &= Vector512.LessThan(lane, Vector512.Create(span)).AsSingle();
        Vector512<float> a0 = (Vector512.LoadAligned(w) & keep) * Vector512.Load(x), a1 = default, a2 = default, a3 = default;
        int k = 16;
        for (; k <= last - 64; k += 64)
        {
            a0 = Vector512.FusedMultiplyAdd(Vector512.LoadAligned(w + k), Vector512.Load(x + k), a0);
            a1 = Vector512.FusedMultiplyAdd(Vector512.LoadAligned(w + k + 16), Vector512.Load(x + k + 16), a1);
            a2 = Vector512.FusedMultiplyAdd(Vector512.LoadAligned(w + k + 32), Vector512.Load(x + k + 32), a2);
            a3 = Vector512.FusedMultiplyAdd(Vector512.LoadAligned(w + k + 48), Vector512.Load(x + k + 48), a3);
        }
        for (; k < last; k += 16) a0 = Vector512.FusedMultiplyAdd(Vector512.LoadAligned(w + k), Vector512.Load(x + k), a0);
        if (last > 0)
        {
            Vector512<float> tail = Vector512.LessThan(lane, Vector512.Create(span - last)).AsSingle();
            a1 = Vector512.FusedMultiplyAdd(Vector512.LoadAligned(w + last) & tail, Vector512.Load(x + last), a1);
        }
        return Vector512.Sum((a0 + a2) + (a1 + a3));
    }

    /// <summary>dots[r] = W row . x row r for <paramref name="n"/> (1..4) laid-out x rows at x + r * length (missing rows
    /// repeat row 0 and are not written): 64-byte chunks, each widened once and multiplied with all four rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void Dot4Rows512<TFormat>(byte* w, float* x, int length, int n, float* dots) where TFormat : IWeightFormat
    {
        float* x0 = x, x1 = x + (n > 1 ? length : 0), x2 = x + (n > 2 ? 2L * length : 0), x3 = x + (n > 3 ? 3L * length : 0);
        // Two sets of accumulators (a, b) take alternate 16-float parts, so consecutive FMAs on one row do not wait for
        // each other; F32 (one part per chunk) takes two chunks per step for that.
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
        int chunk = 64 / TFormat.ElementSize, k = 0;
        if (TFormat.ElementSize == 4)
        {
            for (; k <= length - 2 * chunk; k += 2 * chunk)
            {
                if (Sse.IsSupported) { Sse.Prefetch0(w + (long)k * 4 + PrefetchAhead * 4); Sse.Prefetch0(w + (long)k * 4 + PrefetchAhead * 4 + 64); }
                Vector512<uint> raw = Vector512.Load((uint*)(w + (long)k * 4));
                Fma4(TFormat.Part(raw, 0), x0 + k, x1 + k, x2 + k, x3 + k, ref a0, ref a1, ref a2, ref a3);
                raw = Vector512.Load((uint*)(w + (long)k * 4 + 64));
                Fma4(TFormat.Part(raw, 0), x0 + k + 16, x1 + k + 16, x2 + k + 16, x3 + k + 16, ref b0, ref b1, ref b2, ref b3);
            }
        }
        for (; k <= length - chunk; k += chunk)
        {
            // Parts written out (not looped) so each Part call sees a constant.
            if (Sse.IsSupported) Sse.Prefetch0(w + (long)k * TFormat.ElementSize + PrefetchAhead * 4);
            Vector512<uint> raw = Vector512.Load((uint*)(w + (long)k * TFormat.ElementSize));
            Fma4(TFormat.Part(raw, 0), x0 + k, x1 + k, x2 + k, x3 + k, ref a0, ref a1, ref a2, ref a3);
            if (TFormat.ElementSize <= 2)
                Fma4(TFormat.Part(raw, 1), x0 + k + 16, x1 + k + 16, x2 + k + 16, x3 + k + 16, ref b0, ref b1, ref b2, ref b3);
            if (TFormat.ElementSize == 1)
            {
                Fma4(TFormat.Part(raw, 2), x0 + k + 2 * 16, x1 + k + 2 * 16, x2 + k + 2 * 16, x3 + k + 2 * 16, ref a0, ref a1, ref a2, ref a3);
                Fma4(TFormat.Part(raw, 3), x0 + k + 3 * 16, x1 + k + 3 * 16, x2 + k + 3 * 16, x3 + k + 3 * 16, ref b0, ref b1, ref b2, ref b3);
            }
        }
        VectorMath.Sum4(a0 + b0, a1 + b1, a2 + b2, a3 + b3, dots);
        for (int r = 0; r < n; r++)
            for (int i = k; i < length; i++) dots[r] += TFormat.Widen(w, i) * x[(long)r * length + i];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Fma4(Vector512<float> v, float* x0, float* x1, float* x2, float* x3,
        ref Vector512<float> a0, ref Vector512<float> a1, ref Vector512<float> a2, ref Vector512<float> a3)
    {
        a0 = Vector512.FusedMultiplyAdd(v, Vector512.Load(x0), a0);
        a1 = Vector512.FusedMultiplyAdd(v, Vector512.Load(x1), a1);
        a2 = Vector512.FusedMultiplyAdd(v, Vector512.Load(x2), a2);
        a3 = Vector512.FusedMultiplyAdd(v, Vector512.Load(x3), a3);
    }

    /// <summary>dots[r] = W row . x row r for <paramref name="n"/> (1..4) laid-out x rows at x + r * length (missing rows
    /// repeat row 0 and are not written): 32-byte chunks, each widened once and multiplied with all four rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void Dot4Rows256<TFormat>(byte* w, float* x, int length, int n, float* dots) where TFormat : IWeightFormat
    {
        float* x0 = x, x1 = x + (n > 1 ? length : 0), x2 = x + (n > 2 ? 2L * length : 0), x3 = x + (n > 3 ? 3L * length : 0);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        int chunk = 32 / TFormat.ElementSize, k = 0;
        for (; k <= length - chunk; k += chunk)
        {
            // Parts written out (not looped) so each Part call sees a constant.
            Vector256<uint> raw = Vector256.Load((uint*)(w + (long)k * TFormat.ElementSize));
            Fma4(TFormat.Part(raw, 0), x0 + k, x1 + k, x2 + k, x3 + k, ref a0, ref a1, ref a2, ref a3);
            if (TFormat.ElementSize <= 2)
                Fma4(TFormat.Part(raw, 1), x0 + k + 8, x1 + k + 8, x2 + k + 8, x3 + k + 8, ref a0, ref a1, ref a2, ref a3);
            if (TFormat.ElementSize == 1)
            {
                Fma4(TFormat.Part(raw, 2), x0 + k + 2 * 8, x1 + k + 2 * 8, x2 + k + 2 * 8, x3 + k + 2 * 8, ref a0, ref a1, ref a2, ref a3);
                Fma4(TFormat.Part(raw, 3), x0 + k + 3 * 8, x1 + k + 3 * 8, x2 + k + 3 * 8, x3 + k + 3 * 8, ref a0, ref a1, ref a2, ref a3);
            }
        }
        dots[0] = Vector256.Sum(a0); dots[1] = Vector256.Sum(a1); dots[2] = Vector256.Sum(a2); dots[3] = Vector256.Sum(a3);
        for (int r = 0; r < n; r++)
            for (int i = k; i < length; i++) dots[r] += TFormat.Widen(w, i) * x[(long)r * length + i];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Fma4(Vector256<float> v, float* x0, float* x1, float* x2, float* x3,
        ref Vector256<float> a0, ref Vector256<float> a1, ref Vector256<float> a2, ref Vector256<float> a3)
    {
        a0 = Vector256.FusedMultiplyAdd(v, Vector256.Load(x0), a0);
        a1 = Vector256.FusedMultiplyAdd(v, Vector256.Load(x1), a1);
        a2 = Vector256.FusedMultiplyAdd(v, Vector256.Load(x2), a2);
        a3 = Vector256.FusedMultiplyAdd(v, Vector256.Load(x3), a3);
    }

    /// <summary>The eight-row form of <see cref="Dot4Rows512{TFormat}"/> (n 5..8).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void Dot8Rows512<TFormat>(byte* w, float* x, int length, int n, float* dots) where TFormat : IWeightFormat
    {
        float* x0 = x, x1 = x + (n > 1 ? 1L * length : 0), x2 = x + (n > 2 ? 2L * length : 0), x3 = x + (n > 3 ? 3L * length : 0), x4 = x + (n > 4 ? 4L * length : 0), x5 = x + (n > 5 ? 5L * length : 0), x6 = x + (n > 6 ? 6L * length : 0), x7 = x + (n > 7 ? 7L * length : 0);
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        int chunk = 64 / TFormat.ElementSize, k = 0;
        for (; k <= length - chunk; k += chunk)
        {
            if (Sse.IsSupported) Sse.Prefetch0(w + (long)k * TFormat.ElementSize + PrefetchAhead * 4);
            Vector512<uint> raw = Vector512.Load((uint*)(w + (long)k * TFormat.ElementSize));
            Fma8(TFormat.Part(raw, 0), x0 + k, x1 + k, x2 + k, x3 + k, x4 + k, x5 + k, x6 + k, x7 + k, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6, ref a7);
            if (TFormat.ElementSize <= 2)
                Fma8(TFormat.Part(raw, 1), x0 + k + 16, x1 + k + 16, x2 + k + 16, x3 + k + 16, x4 + k + 16, x5 + k + 16, x6 + k + 16, x7 + k + 16, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6, ref a7);
            if (TFormat.ElementSize == 1)
            {
                Fma8(TFormat.Part(raw, 2), x0 + k + 2 * 16, x1 + k + 2 * 16, x2 + k + 2 * 16, x3 + k + 2 * 16, x4 + k + 2 * 16, x5 + k + 2 * 16, x6 + k + 2 * 16, x7 + k + 2 * 16, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6, ref a7);
                Fma8(TFormat.Part(raw, 3), x0 + k + 3 * 16, x1 + k + 3 * 16, x2 + k + 3 * 16, x3 + k + 3 * 16, x4 + k + 3 * 16, x5 + k + 3 * 16, x6 + k + 3 * 16, x7 + k + 3 * 16, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6, ref a7);
            }
        }
        VectorMath.Sum4(a0, a1, a2, a3, dots);
        VectorMath.Sum4(a4, a5, a6, a7, dots + 4);
        for (int r = 0; r < n; r++)
            for (int i = k; i < length; i++) dots[r] += TFormat.Widen(w, i) * x[(long)r * length + i];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Fma8(Vector512<float> v, float* x0, float* x1, float* x2, float* x3, float* x4, float* x5, float* x6, float* x7,
        ref Vector512<float> a0, ref Vector512<float> a1, ref Vector512<float> a2, ref Vector512<float> a3,
        ref Vector512<float> a4, ref Vector512<float> a5, ref Vector512<float> a6, ref Vector512<float> a7)
    {
        Fma4(v, x0, x1, x2, x3, ref a0, ref a1, ref a2, ref a3);
        Fma4(v, x4, x5, x6, x7, ref a4, ref a5, ref a6, ref a7);
    }

    /// <summary>The eight-row form of <see cref="Dot4Rows256{TFormat}"/> (n 5..8).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void Dot8Rows256<TFormat>(byte* w, float* x, int length, int n, float* dots) where TFormat : IWeightFormat
    {
        float* x0 = x, x1 = x + (n > 1 ? 1L * length : 0), x2 = x + (n > 2 ? 2L * length : 0), x3 = x + (n > 3 ? 3L * length : 0), x4 = x + (n > 4 ? 4L * length : 0), x5 = x + (n > 5 ? 5L * length : 0), x6 = x + (n > 6 ? 6L * length : 0), x7 = x + (n > 7 ? 7L * length : 0);
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
        int chunk = 32 / TFormat.ElementSize, k = 0;
        for (; k <= length - chunk; k += chunk)
        {
            Vector256<uint> raw = Vector256.Load((uint*)(w + (long)k * TFormat.ElementSize));
            Fma8(TFormat.Part(raw, 0), x0 + k, x1 + k, x2 + k, x3 + k, x4 + k, x5 + k, x6 + k, x7 + k, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6, ref a7);
            if (TFormat.ElementSize <= 2)
                Fma8(TFormat.Part(raw, 1), x0 + k + 8, x1 + k + 8, x2 + k + 8, x3 + k + 8, x4 + k + 8, x5 + k + 8, x6 + k + 8, x7 + k + 8, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6, ref a7);
            if (TFormat.ElementSize == 1)
            {
                Fma8(TFormat.Part(raw, 2), x0 + k + 2 * 8, x1 + k + 2 * 8, x2 + k + 2 * 8, x3 + k + 2 * 8, x4 + k + 2 * 8, x5 + k + 2 * 8, x6 + k + 2 * 8, x7 + k + 2 * 8, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6, ref a7);
                Fma8(TFormat.Part(raw, 3), x0 + k + 3 * 8, x1 + k + 3 * 8, x2 + k + 3 * 8, x3 + k + 3 * 8, x4 + k + 3 * 8, x5 + k + 3 * 8, x6 + k + 3 * 8, x7 + k + 3 * 8, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6, ref a7);
            }
        }
        dots[0] = Vector256.Sum(a0); dots[1] = Vector256.Sum(a1); dots[2] = Vector256.Sum(a2); dots[3] = Vector256.Sum(a3);
        dots[4] = Vector256.Sum(a4); dots[5] = Vector256.Sum(a5); dots[6] = Vector256.Sum(a6); dots[7] = Vector256.Sum(a7);
        for (int r = 0; r < n; r++)
            for (int i = k; i < length; i++) dots[r] += TFormat.Widen(w, i) * x[(long)r * length + i];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Fma8(Vector256<float> v, float* x0, float* x1, float* x2, float* x3, float* x4, float* x5, float* x6, float* x7,
        ref Vector256<float> a0, ref Vector256<float> a1, ref Vector256<float> a2, ref Vector256<float> a3,
        ref Vector256<float> a4, ref Vector256<float> a5, ref Vector256<float> a6, ref Vector256<float> a7)
    {
        Fma4(v, x0, x1, x2, x3, ref a0, ref a1, ref a2, ref a3);
        Fma4(v, x4, x5, x6, x7, ref a4, ref a5, ref a6, ref a7);
    }

    /// <summary>One dot product of a weight row with a laid-out x, two chunks per step into four accumulators.
    /// Not inlined into the row loop: the JIT then has the inlining budget to inline every MultiplyAdd here.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static float Dot<TFormat>(byte* w, float* x, int length, SimdLevel level) where TFormat : IWeightFormat
    {
        int k = 0;
        float sum = 0;
        if (level == SimdLevel.Vector512 && Vector512.IsHardwareAccelerated)
        {
            int chunk = 64 / TFormat.ElementSize;
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; k <= length - 2 * chunk; k += 2 * chunk)
            {
                long offset = (long)k * TFormat.ElementSize;
                // 1 KB ahead (the next row of a flan-t5-small BF16 weight), as the F32 kernels do: with the hardware
                // prefetchers alone BF16 decode streamed well below F32's GB/s in the token loop.
                if (Sse.IsSupported) { Sse.Prefetch0(w + offset + 1024); Sse.Prefetch0(w + offset + 1088); }
                TFormat.MultiplyAdd(w + offset, x + k, ref a0, ref a1);
                TFormat.MultiplyAdd(w + offset + 64, x + k + chunk, ref a2, ref a3);
            }
            if (k <= length - chunk) { TFormat.MultiplyAdd(w + (long)k * TFormat.ElementSize, x + k, ref a0, ref a1); k += chunk; }
            sum = Vector512.Sum((a0 + a2) + (a1 + a3));
        }
        else if (level == SimdLevel.Vector256 && Vector256.IsHardwareAccelerated)
        {
            int chunk = 32 / TFormat.ElementSize;
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; k <= length - 2 * chunk; k += 2 * chunk)
            {
                long offset = (long)k * TFormat.ElementSize;
                TFormat.MultiplyAdd(w + offset, x + k, ref a0, ref a1);
                TFormat.MultiplyAdd(w + offset + 32, x + k + chunk, ref a2, ref a3);
            }
            if (k <= length - chunk) { TFormat.MultiplyAdd(w + (long)k * TFormat.ElementSize, x + k, ref a0, ref a1); k += chunk; }
            sum = Vector256.Sum((a0 + a2) + (a1 + a3));
        }
        else if (level == SimdLevel.Vector128 && Vector128.IsHardwareAccelerated)
        {
            int chunk = 16 / TFormat.ElementSize;
            Vector128<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; k <= length - 2 * chunk; k += 2 * chunk)
            {
                long offset = (long)k * TFormat.ElementSize;
                TFormat.MultiplyAdd(w + offset, x + k, ref a0, ref a1);
                TFormat.MultiplyAdd(w + offset + 16, x + k + chunk, ref a2, ref a3);
            }
            if (k <= length - chunk) { TFormat.MultiplyAdd(w + (long)k * TFormat.ElementSize, x + k, ref a0, ref a1); k += chunk; }
            sum = Vector128.Sum((a0 + a2) + (a1 + a3));
        }
        for (; k < length; k++) sum += TFormat.Widen(w, k) * x[k];
        return sum;
    }
}
