// T5LayerNorm (RMS norm) for the CPU backend: per row, variance = mean(x^2) in fp32, then
// out = weight * (x * rsqrt(variance + eps)). No mean subtraction, no bias.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ManagedT5.Kernels.Cpu;

/// <summary>RMS norm over rows of d_model floats.</summary>
internal static unsafe class RmsNormKernel
{
    /// <summary>output[r] = weight * (input[r] * rsqrt(mean(input[r]^2) + epsilon)) for rows [first, end);
    /// <paramref name="weight"/> is d_model floats (already widened).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(float* input, float* weight, float* output, int dModel, int first, int end, float epsilon, SimdLevel level)
    {
        for (int r = first; r < end; r++)
        {
            float* x = input + (long)r * dModel, y = output + (long)r * dModel;
            float inverseRms = 1f / MathF.Sqrt(SumOfSquares(x, dModel, level) / dModel + epsilon);
            int i = 0;
            if (level >= SimdLevel.Vector512 && Vector512.IsHardwareAccelerated)
                for (; i <= dModel - 16; i += 16) (Vector512.Load(weight + i) * (Vector512.Load(x + i) * inverseRms)).Store(y + i);
            if (level >= SimdLevel.Vector256 && Vector256.IsHardwareAccelerated)
                for (; i <= dModel - 8; i += 8) (Vector256.Load(weight + i) * (Vector256.Load(x + i) * inverseRms)).Store(y + i);
            if (level >= SimdLevel.Vector128 && Vector128.IsHardwareAccelerated)
                for (; i <= dModel - 4; i += 4) (Vector128.Load(weight + i) * (Vector128.Load(x + i) * inverseRms)).Store(y + i);
            for (; i < dModel; i++) y[i] = weight[i] * (x[i] * inverseRms);
        }
    }

    /// <summary>sum of x[i]^2, fp32, vector partial sums folded at the end.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float SumOfSquares(float* x, int length, SimdLevel level)
    {
        int i = 0;
        float sum = 0;
        if (level >= SimdLevel.Vector512 && Vector512.IsHardwareAccelerated && length >= 16)
        {
            Vector512<float> acc = default;
            for (; i <= length - 16; i += 16) { Vector512<float> v = Vector512.Load(x + i); acc = Vector512.FusedMultiplyAdd(v, v, acc); }
            sum += Vector512.Sum(acc);
        }
        if (level >= SimdLevel.Vector256 && Vector256.IsHardwareAccelerated && length - i >= 8)
        {
            Vector256<float> acc = default;
            for (; i <= length - 8; i += 8) { Vector256<float> v = Vector256.Load(x + i); acc = Vector256.FusedMultiplyAdd(v, v, acc); }
            sum += Vector256.Sum(acc);
        }
        if (level >= SimdLevel.Vector128 && Vector128.IsHardwareAccelerated && length - i >= 4)
        {
            Vector128<float> acc = default;
            for (; i <= length - 4; i += 4) { Vector128<float> v = Vector128.Load(x + i); acc = Vector128.FusedMultiplyAdd(v, v, acc); }
            sum += Vector128.Sum(acc);
        }
        for (; i < length; i++) sum += x[i] * x[i];
        return sum;
    }
}
