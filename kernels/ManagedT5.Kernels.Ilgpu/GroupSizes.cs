// How many threads per group each explicitly grouped kernel is launched with, fitted once to a device's limits.
// IlgpuBackend uses it for the device it runs on; the GpuCompile tests use it for a CUDA device they do not have.
namespace ManagedT5.Kernels.Ilgpu;

/// <summary>Threads per group of the explicitly grouped kernels on one device. Every size is a power of two (the
/// shared-memory tree reductions of GroupReduce need that) and within the device's maximum; the GEMV's is a
/// multiple of the warp size, so each warp of it is full.</summary>
/// <param name="Reduce">RmsNorm and ArgMax: threads per row.</param>
/// <param name="Attention">Attention: threads per (batch, head, query).</param>
/// <param name="Tile">LinearKernel.Tiled: the tile edge; a group is Tile x Tile threads.</param>
/// <param name="Gemv">LinearKernel.Gemv: warps per group times the warp size.</param>
internal readonly record struct GroupSizes(int Reduce, int Attention, int Tile, int Gemv)
{
    /// <summary>The sizes for a device allowing <paramref name="maxThreadsPerGroup"/> threads per group with warps of
    /// <paramref name="warpSize"/> (CUDA: 1024 and 32; ILGPU's CPU accelerator: 16 and 4).</summary>
    public static GroupSizes For(int maxThreadsPerGroup, int warpSize)
    {
        int tile = 1;
        while (tile < Kernels.LinearKernels.MaxTile && (tile * 2) * (tile * 2) <= maxThreadsPerGroup) tile *= 2;
        return new GroupSizes(
            Reduce: FloorPowerOfTwo(Math.Min(256, maxThreadsPerGroup)),
            Attention: FloorPowerOfTwo(Math.Min(128, maxThreadsPerGroup)),
            Tile: tile,
            Gemv: Math.Max(warpSize, FloorPowerOfTwo(Math.Min(256, maxThreadsPerGroup))));
    }

    private static int FloorPowerOfTwo(int n)
    {
        int p = 1;
        while (p * 2 <= n) p *= 2;
        return p;
    }
}
