// GEMM: C (rows, out) (+)= A (rows, in) W^T, for many rows (the encoder, batched decode). Cache-blocked and
// packed as in BLIS / Goto: a KC-deep slab of the thread's weight columns is widened once to fp32 and packed
// into panels of NR columns (B, in L2), each MR-row strip of A is packed into a micro-panel (in L1), and a
// register-blocked micro-kernel multiplies them. Narrow formats (BF16/F16/int8) cost their conversion once per
// slab instead of once per row. Threads split the output columns; every C element is owned by one thread.
namespace ManagedT5.Kernels.Cpu;

/// <summary>The packed, cache-blocked matrix product behind Linear for many rows.</summary>
internal static unsafe class Gemm
{
    /// <summary>Depth of a packed slab: KC x NR floats of B per panel.</summary>
    public const int KC = 256;

    /// <summary>Most panels one thread item packs at once (8 x 32 x 256 floats = 256 KB of L2 with AVX-512).</summary>
    public const int MaxPanelsPerItem = 8;

    /// <summary>Columns one work item covers: a whole number of panels, about four items per thread.</summary>
    public static int ColumnsPerItem(int outDim, int nr, int threads)
    {
        int panels = (outDim + nr - 1) / nr;
        int perItem = Math.Clamp((panels + threads * 4 - 1) / (threads * 4), 1, MaxPanelsPerItem);
        return perItem * nr;
    }

    /// <summary>
    /// C[r, n] (+)= sum_k A[r, k] W[n, k] for r &lt; <paramref name="rows"/>, n in [<paramref name="firstColumn"/>,
    /// <paramref name="endColumn"/>). A is (rows, in) row-major, C is (rows, out) row-major, W is the weight.
    /// </summary>
    public static void Run<TKernel>(in WeightView weight, float* a, float* c, int rows, int firstColumn, int endColumn,
        bool accumulate) where TKernel : IMicroKernel
    {
        int mr = TKernel.MR, nr = TKernel.NR;
        int inDim = weight.Cols, outDim = weight.Rows;
        int columns = endColumn - firstColumn;
        int panels = (columns + nr - 1) / nr;
        float* packedB = Scratch.Get(ScratchSlot.PackedB, (long)panels * nr * KC);
        float* packedA = Scratch.Get(ScratchSlot.PackedA, (long)mr * KC);
        float* tile = Scratch.Get(ScratchSlot.Tile, Math.Max(mr * nr, KC));

        for (int k0 = 0; k0 < inDim; k0 += KC)
        {
            int kc = Math.Min(KC, inDim - k0);
            bool add = accumulate || k0 > 0;
            PackB(weight, firstColumn, columns, k0, kc, nr, packedB, tile);
            for (int r0 = 0; r0 < rows; r0 += mr)
            {
                int rowsHere = Math.Min(mr, rows - r0);
                PackA(a + (long)r0 * inDim + k0, inDim, rowsHere, kc, mr, packedA);
                for (int p = 0; p < panels; p++)
                {
                    int column = firstColumn + p * nr;
                    int columnsHere = Math.Min(nr, endColumn - column);
                    float* b = packedB + (long)p * nr * kc;
                    float* cTile = c + (long)r0 * outDim + column;
                    if (rowsHere == mr && columnsHere == nr)
                    {
                        TKernel.Run(packedA, b, kc, cTile, outDim, add);
                        continue;
                    }
                    // Edge tile: compute the whole tile aside, keep the part that exists.
                    TKernel.Run(packedA, b, kc, tile, nr, false);
                    for (int r = 0; r < rowsHere; r++)
                        for (int j = 0; j < columnsHere; j++)
                        {
                            float value = tile[r * nr + j];
                            cTile[(long)r * outDim + j] = add ? cTile[(long)r * outDim + j] + value : value;
                        }
                }
            }
        }
    }

    /// <summary>Packs W[first .. first + columns, k0 .. k0 + kc) as fp32 panels: panel p holds columns
    /// p*NR .. p*NR + NR - 1 as kc rows of NR floats (columns past the end are zero).</summary>
    private static void PackB(in WeightView weight, int first, int columns, int k0, int kc, int nr, float* packed, float* row)
    {
        int panels = (columns + nr - 1) / nr;
        for (int j = 0; j < panels * nr; j++)
        {
            float* panel = packed + (long)(j / nr) * nr * kc + j % nr;
            if (j >= columns)
            {
                for (int k = 0; k < kc; k++) panel[k * nr] = 0;
                continue;
            }
            float* source = row;
            if (weight.Format == WeightFormat.F32) source = (float*)weight.Data + (long)(first + j) * weight.Cols + k0;
            else WeightRows.Widen(weight, first + j, k0, kc, row);
            for (int k = 0; k < kc; k++) panel[k * nr] = source[k];
        }
    }

    /// <summary>Packs rows r &lt; <paramref name="rows"/> of an A strip as kc groups of MR floats (missing rows zero).</summary>
    private static void PackA(float* a, int lda, int rows, int kc, int mr, float* packed)
    {
        for (int r = 0; r < mr; r++)
        {
            float* source = a + (long)r * lda;
            if (r < rows) for (int k = 0; k < kc; k++) packed[k * mr + r] = source[k];
            else for (int k = 0; k < kc; k++) packed[k * mr + r] = 0;
        }
    }
}
