// Every kernel IlgpuBackend launches (its constructor and WeightKernels load them), each weight-reading one once per
// weight format, with how it is grouped: the list the GpuCompile tests compile for CUDA (PTX) and OpenCL without a
// device. A test checks that every kernel method in this folder is on it.
using System.Reflection;
using ILGPU;

namespace ManagedT5.Kernels.Ilgpu.Kernels;

/// <summary>How a kernel's threads are grouped at launch.</summary>
internal enum KernelGrouping
{
    /// <summary>Implicitly grouped (LoadAutoGroupedKernel): ILGPU picks the group size from the device.</summary>
    Auto,
    /// <summary><see cref="GroupSizes.Reduce"/> threads per group.</summary>
    Reduce,
    /// <summary><see cref="GroupSizes.Attention"/> threads per group.</summary>
    Attention,
    /// <summary><see cref="GroupSizes.Tile"/> x <see cref="GroupSizes.Tile"/> threads per group.</summary>
    Tile,
    /// <summary><see cref="GroupSizes.Gemv"/> threads per group.</summary>
    Gemv,
}

/// <summary>One kernel as the backend launches it.</summary>
/// <param name="Name">The kernel and, for weight-reading kernels, the weight format: "Linear.Gemv&lt;BF16Weights&gt;".</param>
/// <param name="Method">The kernel method, closed over its weight view.</param>
/// <param name="Grouping">How its groups are sized.</param>
/// <param name="Hot">Runs for every token or every layer (everything but PositionBias, which runs once per step and
/// computes its log in double on purpose, see DeviceMath.Log): must not use 64-bit floating point.</param>
/// <param name="WarpShuffles">Uses warp shuffles (OpenCL: sub-groups); loaded only where the device has them.</param>
internal sealed record KernelLaunch(string Name, MethodInfo Method, KernelGrouping Grouping, bool Hot, bool WarpShuffles)
{
    /// <summary>Threads per group at launch with <paramref name="sizes"/>; null for implicitly grouped kernels.</summary>
    public int? ThreadsPerGroup(GroupSizes sizes) => Grouping switch
    {
        KernelGrouping.Reduce => sizes.Reduce,
        KernelGrouping.Attention => sizes.Attention,
        KernelGrouping.Tile => sizes.Tile * sizes.Tile,
        KernelGrouping.Gemv => sizes.Gemv,
        _ => null,
    };
}

/// <summary>The list of every kernel the ILGPU backend launches.</summary>
internal static class KernelCatalog
{
    /// <summary>Every kernel with every weight format the backend uploads (F32, F16, BF16, Int8).</summary>
    public static IReadOnlyList<KernelLaunch> All { get; } =
    [
        Plain("Activate", new Action<Index1D, ArrayView<float>, ArrayView<float>, int, int>(ElementwiseKernels.Activate)),
        Plain("Add", new Action<Index1D, ArrayView<float>, ArrayView<float>>(ElementwiseKernels.Add)),
        Plain("Scale", new Action<Index1D, ArrayView<float>, float>(ElementwiseKernels.Scale)),
        Plain("AppendToCache", new Action<Index1D, ArrayView<float>, ArrayView<float>, int, int, int, int>(ElementwiseKernels.AppendToCache)),
        Plain("GatherRows", new Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int>(ElementwiseKernels.GatherRows)),
        new("Attention", new Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, AttentionParams>(AttentionKernels.Attention).Method, KernelGrouping.Attention, Hot: true, WarpShuffles: false),
        new("ArgMax", new Action<ArrayView<float>, ArrayView<int>, int>(ArgMaxKernels.ArgMax).Method,
            KernelGrouping.Reduce, Hot: true, WarpShuffles: false),
        .. Weighted<F32Weights>(),
        .. Weighted<F16Weights>(),
        .. Weighted<BF16Weights>(),
        .. Weighted<Int8Weights>(),
    ];

    /// <summary>The weight-reading kernels of one format, as WeightKernels loads them.</summary>
    private static KernelLaunch[] Weighted<TWeight>() where TWeight : struct, IWeightView
    {
        string format = $"<{typeof(TWeight).Name}>";
        return
        [
            new("Embedding" + format, new Action<Index1D, TWeight, ArrayView<int>, ArrayView<float>, int>(
                ElementwiseKernels.Embedding).Method, KernelGrouping.Auto, Hot: true, WarpShuffles: false),
            new("Linear.Naive" + format, new Action<Index2D, ArrayView<float>, TWeight, ArrayView<float>, int, int, int>(
                LinearKernels.Naive).Method, KernelGrouping.Auto, Hot: true, WarpShuffles: false),
            new("Linear.Tiled" + format, new Action<ArrayView<float>, TWeight, ArrayView<float>, int, int, int, int>(
                LinearKernels.Tiled).Method, KernelGrouping.Tile, Hot: true, WarpShuffles: false),
            new("Linear.Gemv" + format, new Action<ArrayView<float>, TWeight, ArrayView<float>, int, int, int, int>(
                LinearKernels.Gemv).Method, KernelGrouping.Gemv, Hot: true, WarpShuffles: true),
            new("RmsNorm" + format, new Action<ArrayView<float>, TWeight, ArrayView<float>, int, float>(
                NormKernels.RmsNorm).Method, KernelGrouping.Reduce, Hot: true, WarpShuffles: false),
            new("PositionBias" + format, new Action<Index2D, TWeight, ArrayView<float>, PositionBiasParams>(
                AttentionKernels.PositionBias).Method, KernelGrouping.Auto, Hot: false, WarpShuffles: false),
        ];
    }

    private static KernelLaunch Plain(string name, Delegate kernel) =>
        new(name, kernel.Method, KernelGrouping.Auto, Hot: true, WarpShuffles: false);
}
