// The kernels that read a weight, compiled once per weight format (TWeight) on first use and then cached.
using ILGPU;
using ILGPU.Runtime;

namespace ManagedT5.Kernels.Ilgpu.Kernels;

/// <summary>Loaded launchers of every weight-reading kernel, specialised for one <see cref="IWeightView"/>.</summary>
internal sealed class WeightKernels<TWeight> where TWeight : struct, IWeightView
{
    public readonly Action<AcceleratorStream, Index1D, TWeight, ArrayView<int>, ArrayView<float>, int> Embedding;
    public readonly Action<AcceleratorStream, Index2D, ArrayView<float>, TWeight, ArrayView<float>, int, int, int> LinearNaive;
    public readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, TWeight, ArrayView<float>, int, int, int, int> LinearTiled;
    public readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, TWeight, ArrayView<float>, int, int, int, int>? LinearGemv;
    public readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, TWeight, ArrayView<float>, int, float> RmsNorm;
    public readonly Action<AcceleratorStream, Index2D, TWeight, ArrayView<float>, PositionBiasParams> PositionBias;

    public WeightKernels(Accelerator accelerator, bool warpShuffles)
    {
        Embedding = accelerator.LoadAutoGroupedKernel<Index1D, TWeight, ArrayView<int>, ArrayView<float>, int>(
            ElementwiseKernels.Embedding);
        LinearNaive = accelerator.LoadAutoGroupedKernel<Index2D, ArrayView<float>, TWeight, ArrayView<float>, int, int, int>(
            LinearKernels.Naive);
        LinearTiled = accelerator.LoadKernel<ArrayView<float>, TWeight, ArrayView<float>, int, int, int, int>(
            LinearKernels.Tiled);
        // Devices without warp shuffles (OpenCL without sub-groups) cannot compile the GEMV; Linear never picks it there.
        LinearGemv = warpShuffles
            ? accelerator.LoadKernel<ArrayView<float>, TWeight, ArrayView<float>, int, int, int, int>(LinearKernels.Gemv)
            : null;
        RmsNorm = accelerator.LoadKernel<ArrayView<float>, TWeight, ArrayView<float>, int, float>(NormKernels.RmsNorm);
        PositionBias = accelerator.LoadAutoGroupedKernel<Index2D, TWeight, ArrayView<float>, PositionBiasParams>(
            AttentionKernels.PositionBias);
    }
}
