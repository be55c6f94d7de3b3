// y = x W^T, T5's only matrix product (no biases anywhere): W (out, in) @ x (rows, in) -> y (rows, out).
// Three kernels: the naive one (one thread per output, the obviously-right fallback), a tiled one that stages
// 16x16 blocks of x and W in shared memory (prompt encoding, rows > 1), and a GEMV with one warp per output row
// (decoding one token: every weight is read exactly once, so the kernel is bound by memory bandwidth).
using ILGPU;

namespace ManagedT5.Kernels.Ilgpu.Kernels;

/// <summary>Linear-layer kernels. <c>accumulate != 0</c> adds the product to the output (a fused residual add).</summary>
internal static class LinearKernels
{
    /// <summary>Largest tile edge of <see cref="Tiled{TWeight}"/>: groups are tile x tile threads (16 x 16 = 256).</summary>
    public const int MaxTile = 16;

    /// <summary>One thread per output element (X: output feature, Y: row); a dot product over in_features.
    /// Sums in the same order as the reference, so on an IEEE device the results agree to the bit.</summary>
    public static void Naive<TWeight>(Index2D index, ArrayView<float> input, TWeight weight, ArrayView<float> output,
        int inDim, int outDim, int accumulate)
        where TWeight : struct, IWeightView
    {
        int o = index.X, r = index.Y;
        float scale = weight.RowScale(o);
        long wRow = (long)o * inDim, xRow = (long)r * inDim;
        float sum = 0f;
        for (int i = 0; i < inDim; i++) sum += input[xRow + i] * (weight.Load(wRow + i) * scale);
        long y = (long)r * outDim + o;
        output[y] = accumulate != 0 ? output[y] + sum : sum;
    }

    /// <summary>
    /// Tiled matrix product: a (tile x tile) group computes a tile x tile block of y. Each step the group loads a
    /// tile of x rows and a tile of W rows into shared memory (each thread one element of each, reading along
    /// in_features so neighbouring threads read neighbouring addresses), waits, and accumulates tile products from
    /// shared memory. Grid: (ceil(out / tile), ceil(rows / tile)); group: (tile, tile).
    /// </summary>
    public static void Tiled<TWeight>(ArrayView<float> input, TWeight weight, ArrayView<float> output,
        int rows, int inDim, int outDim, int accumulate)
        where TWeight : struct, IWeightView
    {
        // xTile[ty, k] = x[row0 + ty, k0 + k]; wTile[tx, k] = W[out0 + tx, k0 + k] (row stride MaxTile + 1: threads
        // of a warp read wTile[tx, k] for different tx, and the padding puts those reads in different banks).
        var xTile = SharedMemory.Allocate<float>(MaxTile * MaxTile);
        var wTile = SharedMemory.Allocate<float>(MaxTile * (MaxTile + 1));
        int tile = Group.DimX;
        int tx = Group.IdxX, ty = Group.IdxY;
        int row0 = Grid.IdxY * tile, out0 = Grid.IdxX * tile;
        int r = row0 + ty, o = out0 + tx;           // the output this thread computes
        int loadRow = row0 + ty, loadOut = out0 + ty; // the x row and W row this thread helps load
        float loadScale = loadOut < outDim ? weight.RowScale(loadOut) : 0f;

        float sum = 0f;
        for (int k0 = 0; k0 < inDim; k0 += tile)
        {
            int k = k0 + tx;
            xTile[ty * MaxTile + tx] = loadRow < rows && k < inDim ? input[(long)loadRow * inDim + k] : 0f;
            wTile[ty * (MaxTile + 1) + tx] = loadOut < outDim && k < inDim
                ? weight.Load((long)loadOut * inDim + k) * loadScale : 0f;
            Group.Barrier();
            for (int kk = 0; kk < tile; kk++) sum += xTile[ty * MaxTile + kk] * wTile[tx * (MaxTile + 1) + kk];
            Group.Barrier();
        }
        if (r < rows && o < outDim)
        {
            long y = (long)r * outDim + o;
            output[y] = accumulate != 0 ? output[y] + sum : sum;
        }
    }

    /// <summary>
    /// Matrix-vector product for a few rows (batch-1 decoding, small beams): each warp owns one output feature o,
    /// its lanes stride along W[o, :] (coalesced reads), and a warp shuffle adds the lanes' partial sums. The warp
    /// loops over the rows, so W[o, :] comes from DRAM once and from cache after. Grid: ceil(out / warpsPerGroup)
    /// groups of warpsPerGroup warps.
    /// </summary>
    public static void Gemv<TWeight>(ArrayView<float> input, TWeight weight, ArrayView<float> output,
        int rows, int inDim, int outDim, int accumulate)
        where TWeight : struct, IWeightView
    {
        int warpsPerGroup = Group.DimX / Warp.WarpSize;
        int o = Grid.IdxX * warpsPerGroup + Warp.WarpIdx;
        if (o >= outDim) return; // the whole warp leaves together; there is no group barrier below
        int lane = Warp.LaneIdx;
        float scale = weight.RowScale(o);
        long wRow = (long)o * inDim;
        for (int r = 0; r < rows; r++)
        {
            long xRow = (long)r * inDim;
            float sum = 0f;
            for (int i = lane; i < inDim; i += Warp.WarpSize) sum += input[xRow + i] * (weight.Load(wRow + i) * scale);
            for (int offset = Warp.WarpSize / 2; offset > 0; offset /= 2) sum += Warp.ShuffleDown(sum, offset);
            if (lane == 0)
            {
                long y = (long)r * outDim + o;
                output[y] = accumulate != 0 ? output[y] + sum : sum;
            }
        }
    }
}
