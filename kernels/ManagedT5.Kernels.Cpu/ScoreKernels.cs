// Host-side row kernels of the generation loop: beam search log-softmaxes every beam's whole vocabulary each step
// (4 x 32,128 scores for flan-t5 with 4 beams), which as a scalar double loop cost about as much as the decoder's
// attention. Vector max, vector exp (VectorMath, ~2 ulp) summed in fp32 lanes per 1,024 scores and in double
// across them, then one subtraction pass. Marked AggressiveOptimization: the first tokens must not run tier-0 code.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ManagedT5.Kernels.Cpu;

/// <summary>SIMD row operations on host-side scores (logits downloaded for beam search and sampling).</summary>
public static unsafe class ScoreKernels
{
    private const int Block = 1024;

    /// <summary>In place: scores[i] = scores[i] - log(sum_j exp(scores[j])) + <paramref name="offset"/>, computed
    /// stably around the maximum. A row of only -inf is left as it is.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void LogSoftmax(Span<float> scores, float offset = 0) => LogSoftmax(scores, offset, SimdLevels.Best);

    /// <summary><see cref="LogSoftmax(Span{float}, float)"/> limited to <paramref name="level"/> (tests run each path).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void LogSoftmax(Span<float> scores, float offset, SimdLevel level)
    {
        if (scores.IsEmpty) return;
        fixed (float* p = scores)
        {
            int n = scores.Length;
            float max = ArgMaxKernel.Max(p, n, level);
            if (float.IsNegativeInfinity(max) || float.IsNaN(max)) return;
            double sum = 0;
            for (int i = 0; i < n; i += Block) sum += SumExp(p + i, Math.Min(Block, n - i), max, level);
            Add(p, n, offset - max - (float)Math.Log(sum), level);
        }
    }

    /// <summary>In place: scores[i] += <paramref name="value"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Add(Span<float> scores, float value)
    {
        fixed (float* p = scores) Add(p, scores.Length, value, SimdLevels.Best);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float SumExp(float* x, int n, float max, SimdLevel level)
    {
        int i = 0;
        float sum = 0;
        if (level >= SimdLevel.Vector512 && Vector512.IsHardwareAccelerated)
        {
            Vector512<float> m = Vector512.Create(max), a = default;
            for (; i <= n - 16; i += 16) a += VectorMath.Exp(Vector512.Load(x + i) - m);
            sum += Vector512.Sum(a);
        }
        if (level >= SimdLevel.Vector256 && Vector256.IsHardwareAccelerated)
        {
            Vector256<float> m = Vector256.Create(max), a = default;
            for (; i <= n - 8; i += 8) a += VectorMath.Exp(Vector256.Load(x + i) - m);
            sum += Vector256.Sum(a);
        }
        if (level >= SimdLevel.Vector128 && Vector128.IsHardwareAccelerated)
        {
            Vector128<float> m = Vector128.Create(max), a = default;
            for (; i <= n - 4; i += 4) a += VectorMath.Exp(Vector128.Load(x + i) - m);
            sum += Vector128.Sum(a);
        }
        for (; i < n; i++) sum += MathF.Exp(x[i] - max);
        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Add(float* x, int n, float value, SimdLevel level)
    {
        int i = 0;
        if (level >= SimdLevel.Vector512 && Vector512.IsHardwareAccelerated)
            for (Vector512<float> v = Vector512.Create(value); i <= n - 16; i += 16) (Vector512.Load(x + i) + v).Store(x + i);
        if (level >= SimdLevel.Vector256 && Vector256.IsHardwareAccelerated)
            for (Vector256<float> v = Vector256.Create(value); i <= n - 8; i += 8) (Vector256.Load(x + i) + v).Store(x + i);
        if (level >= SimdLevel.Vector128 && Vector128.IsHardwareAccelerated)
            for (Vector128<float> v = Vector128.Create(value); i <= n - 4; i += 4) (Vector128.Load(x + i) + v).Store(x + i);
        for (; i < n; i++) x[i] += value;
    }
}
