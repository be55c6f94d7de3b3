// GEMM for F32 weights read in place (AVX-512): C (rows, out) (+)= A (rows, in) W^T computed as its transpose,
// C^T = W A^T. The packed GEMM (Gemm.cs) transposes every weight slab into panels before multiplying, and for F32 that
// packing, a read of the whole weight from memory with 16 rows in flight, is a large share of a 128-row GEMM (see
// docs/BENCHMARKS.md, "Measurements behind kernel choices").
// Here the roles swap: A, small and reused by every weight row, is packed once per call into panels of 32 rows
// (A^T, K rows of 32 floats per panel, by Gemm.PackB itself); the weight is never packed: a tile of 8 weight rows is
// read where it lies, one float per row per k step broadcast against two vectors of the A panel (16 FMAs per 2 vector
// loads and 8 broadcasts, as in Gemm's 8 x 32 micro-kernel). The 8 x 32 tile of C^T is transposed on the way out (8 x 8 register
// transposes), once per tile since the accumulators run over the whole K. Every C element is computed by one thread
// with the same code, so thread count never changes the result.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ManagedT5.Kernels.Cpu;

/// <summary>The in-place F32 GEMM behind Linear for many rows on AVX-512.</summary>
internal static unsafe class GemmInPlace
{
    /// <summary>Weight rows (output columns) per tile.</summary>
    public const int NW = 8;

    /// <summary>A rows per packed panel (two AVX-512 vectors).</summary>
    public const int RA = 32;

    /// <summary>Whether this kernel can run here (AVX-512 with the AVX shuffles of the output transpose).</summary>
    public static bool IsSupported => Vector512.IsHardwareAccelerated && Avx512F.IsSupported && Avx.IsSupported;

    /// <summary>Whether <paramref name="rows"/> rows fill the 32-row panels well enough (at most a quarter of the padded
    /// panel rows empty; the packed GEMM's 8-row strips waste less on short inputs).</summary>
    public static bool Fits(int rows) => rows > 0 && 4L * rows >= 3L * ((rows + RA - 1) / RA * RA);

    /// <summary>Floats of the packed A^T for <paramref name="rows"/> x <paramref name="inDim"/>.</summary>
    public static long PackedSize(int rows, int inDim) => (long)(rows + RA - 1) / RA * RA * inDim;

    /// <summary>Packs k slab <paramref name="slab"/> (Gemm.KC deep) of A^T: panel p (rows p*RA .. p*RA + RA - 1 of A, zero
    /// past the last) at packed + p * RA * inDim, as inDim rows of RA floats; this slab's rows of every panel.</summary>
    public static void PackSlab(float* a, int rows, int inDim, float* packed, int slab)
    {
        int k0 = slab * Gemm.KC, kc = Math.Min(Gemm.KC, inDim - k0);
        var view = new WeightView((nint)a, WeightFormat.F32, rows, inDim, null);
        float* widened = Scratch.Get(ScratchSlot.WidenedWeightRows, 17L * Gemm.KC);
        for (int p = 0; p * RA < rows; p++)
            Gemm.PackB(view, p * RA, Math.Min(RA, rows - p * RA), k0, kc, RA, packed + (long)p * RA * inDim + (long)k0 * RA, widened);
    }

    /// <summary>
    /// C[r, n] (+)= sum_k A[r, k] W[n, k] for every r &lt; <paramref name="rows"/> and n in [<paramref name="first"/>,
    /// <paramref name="end"/>); <paramref name="packed"/> is A^T from <see cref="PackSlab"/>. W is F32, (out, in).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(float* weights, int inDim, int outDim, float* packed, float* c, int rows, int first, int end, bool accumulate)
    {
        int panels = (rows + RA - 1) / RA;
        float* zero = null; // a zero weight row for the missing rows of an edge block, cleared when first needed
        float** w = stackalloc float*[NW];
        float* tile = stackalloc float[NW * RA];
        float* acc = stackalloc float[NW * RA];
        for (int n0 = first; n0 < end; n0 += NW)
        {
            int nHere = Math.Min(NW, end - n0);
            if (nHere < NW && zero == null)
            {
                zero = Scratch.Get(ScratchSlot.EdgeTile, inDim);
                new Span<float>(zero, inDim).Clear();
            }
            for (int i = 0; i < NW; i++) w[i] = i < nHere ? weights + (long)(n0 + i) * inDim : zero;
            for (int p = 0; p < panels; p++)
            {
                int r0 = p * RA, rowsHere = Math.Min(RA, rows - r0);
                if (nHere == NW && rowsHere == RA)
                {
                    Tile(w, packed + (long)p * RA * inDim, inDim, acc, c + (long)r0 * outDim + n0, outDim, accumulate);
                    continue;
                }
                // Edge tile: compute it aside (as a C tile of RA rows x NW columns), keep the part that exists.
                Tile(w, packed + (long)p * RA * inDim, inDim, acc, tile, NW, false);
                for (int r = 0; r < rowsHere; r++)
                    for (int j = 0; j < nHere; j++)
                    {
                        float* y = c + (long)(r0 + r) * outDim + n0 + j;
                        *y = accumulate ? *y + tile[r * NW + j] : tile[r * NW + j];
                    }
            }
        }
    }

    /// <summary>One 8 x 32 tile: c[r * ldc + i] (+)= sum_k W_i[k] A_r[k] for i &lt; 8, r &lt; 32, W_i = w[i], A^T panel at
    /// at; acc is 256 floats of scratch (the caller's: a stackalloc here makes the JIT spill every accumulator).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void Tile(float** w, float* at, int inDim, float* acc, float* c, int ldc, bool accumulate)
    {
        float* w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7];
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default,
            c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default,
            c60 = default, c61 = default, c70 = default, c71 = default;
        for (int k = 0; k < inDim; k++, at += RA)
        {
            Vector512<float> a0 = Vector512.Load(at), a1 = Vector512.Load(at + 16);
            Vector512<float> b = Vector512.Create(w0[k]);
            c00 = Vector512.FusedMultiplyAdd(b, a0, c00); c01 = Vector512.FusedMultiplyAdd(b, a1, c01);
            b = Vector512.Create(w1[k]);
            c10 = Vector512.FusedMultiplyAdd(b, a0, c10); c11 = Vector512.FusedMultiplyAdd(b, a1, c11);
            b = Vector512.Create(w2[k]);
            c20 = Vector512.FusedMultiplyAdd(b, a0, c20); c21 = Vector512.FusedMultiplyAdd(b, a1, c21);
            b = Vector512.Create(w3[k]);
            c30 = Vector512.FusedMultiplyAdd(b, a0, c30); c31 = Vector512.FusedMultiplyAdd(b, a1, c31);
            b = Vector512.Create(w4[k]);
            c40 = Vector512.FusedMultiplyAdd(b, a0, c40); c41 = Vector512.FusedMultiplyAdd(b, a1, c41);
            b = Vector512.Create(w5[k]);
            c50 = Vector512.FusedMultiplyAdd(b, a0, c50); c51 = Vector512.FusedMultiplyAdd(b, a1, c51);
            b = Vector512.Create(w6[k]);
            c60 = Vector512.FusedMultiplyAdd(b, a0, c60); c61 = Vector512.FusedMultiplyAdd(b, a1, c61);
            b = Vector512.Create(w7[k]);
            c70 = Vector512.FusedMultiplyAdd(b, a0, c70); c71 = Vector512.FusedMultiplyAdd(b, a1, c71);
        }
        // Out through memory: transposing here needs more registers than the loop leaves, and the JIT then spills
        // accumulators inside the loop (a first version that did ran at half speed; docs/BENCHMARKS.md).
        c00.Store(acc); c01.Store(acc + 16); c10.Store(acc + 32); c11.Store(acc + 48);
        c20.Store(acc + 64); c21.Store(acc + 80); c30.Store(acc + 96); c31.Store(acc + 112);
        c40.Store(acc + 128); c41.Store(acc + 144); c50.Store(acc + 160); c51.Store(acc + 176);
        c60.Store(acc + 192); c61.Store(acc + 208); c70.Store(acc + 224); c71.Store(acc + 240);
        StoreTransposed(acc, c, ldc, accumulate);
    }

    /// <summary>acc holds the tile as C^T (weight row i at acc + 32 i, A rows 0..31): c[r * ldc + i] (+)= acc[32 i + r],
    /// four 8 x 8 register transposes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void StoreTransposed(float* acc, float* c, int ldc, bool accumulate)
    {
        for (int r0 = 0; r0 < RA; r0 += 8)
            Store8x8(Vector256.Load(acc + r0), Vector256.Load(acc + RA + r0), Vector256.Load(acc + 2 * RA + r0), Vector256.Load(acc + 3 * RA + r0),
                Vector256.Load(acc + 4 * RA + r0), Vector256.Load(acc + 5 * RA + r0), Vector256.Load(acc + 6 * RA + r0), Vector256.Load(acc + 7 * RA + r0),
                c + (long)r0 * ldc, ldc, accumulate);
    }

    /// <summary>Rows r &lt; 8 of c (stride ldc) (+)= (v0[r], v1[r], ..., v7[r]).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store8x8(Vector256<float> v0, Vector256<float> v1, Vector256<float> v2, Vector256<float> v3,
        Vector256<float> v4, Vector256<float> v5, Vector256<float> v6, Vector256<float> v7, float* c, int ldc, bool accumulate)
    {
        Gemm.Transpose8x8(ref v0, ref v1, ref v2, ref v3, ref v4, ref v5, ref v6, ref v7);
        if (accumulate)
        {
            v0 += Vector256.Load(c); v1 += Vector256.Load(c + ldc); v2 += Vector256.Load(c + 2L * ldc); v3 += Vector256.Load(c + 3L * ldc);
            v4 += Vector256.Load(c + 4L * ldc); v5 += Vector256.Load(c + 5L * ldc); v6 += Vector256.Load(c + 6L * ldc); v7 += Vector256.Load(c + 7L * ldc);
        }
        v0.Store(c); v1.Store(c + ldc); v2.Store(c + 2L * ldc); v3.Store(c + 3L * ldc);
        v4.Store(c + 4L * ldc); v5.Store(c + 5L * ldc); v6.Store(c + 6L * ldc); v7.Store(c + 7L * ldc);
    }
}
