// T5LayerNorm (RMS norm): y = x * rsqrt(mean(x^2) + eps) * weight. No mean subtraction, no bias; fp32 throughout.
using ILGPU;

namespace ManagedT5.Kernels.Ilgpu.Kernels;

/// <summary>RMS norm, one thread group per row.</summary>
internal static class NormKernels
{
    /// <summary>x (rows, d_model), weight (d_model,) -> y (rows, d_model). The group's threads stride along the row,
    /// a shared-memory reduction adds their sums of squares, then each thread scales its own elements.</summary>
    public static void RmsNorm<TWeight>(ArrayView<float> input, TWeight weight, ArrayView<float> output, int dModel, float epsilon)
        where TWeight : struct, IWeightView
    {
        var scratch = SharedMemory.Allocate<float>(GroupReduce.MaxGroupSize);
        long row = (long)Grid.IdxX * dModel;
        float sumSquares = 0f;
        for (int c = Group.IdxX; c < dModel; c += Group.DimX) sumSquares += input[row + c] * input[row + c];
        sumSquares = GroupReduce.Sum(sumSquares, scratch);
        float inverseRms = 1f / MathF.Sqrt(sumSquares / dModel + epsilon);
        float scale = weight.RowScale(0);
        for (int c = Group.IdxX; c < dModel; c += Group.DimX)
            output[row + c] = weight.Load(c) * scale * (input[row + c] * inverseRms);
    }
}
