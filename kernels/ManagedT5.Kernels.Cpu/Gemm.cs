// GEMM: C (rows, out) (+)= A (rows, in) W^T, for many rows (the encoder, batched decode). Cache-blocked and
// packed as in BLIS / Goto: A is packed once per call into MR-row strips (the micro-kernel then reads it
// sequentially; the strips are split across threads too); each thread item widens a KC-deep slab of its weight columns to fp32 and packs it into panels of
// NR columns (in L2) with 16 x 16 (AVX-512) or 8 x 8 (AVX) register transposes; a register-blocked micro-kernel multiplies them. Narrow
// formats (BF16/F16/int8) cost their conversion once per slab instead of once per row. Threads split the output
// columns; every C element is owned by one thread.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ManagedT5.Kernels.Cpu;

/// <summary>The packed, cache-blocked matrix product behind Linear for many rows.</summary>
internal static unsafe class Gemm
{
    /// <summary>Depth of a packed slab: KC x NR floats of B per panel.</summary>
    public const int KC = 256;

    /// <summary>The most panels of output columns a GEMM thread claims at a time (<see cref="ClaimPanels"/>): a claim's
    /// packed slab of B (24 x 16 KiB with AVX2) stays in L2 while every block of A's rows goes through it, so each block
    /// of A is read from L3 once per claim. At 4096 rows (a batch of 32 sentences) 24-panel claims ran at 104-114
    /// GFLOP/s against 67-92 with 2 (AVX2, 2 threads).</summary>
    public const int MaxClaimPanels = 24;

    /// <summary>Panels per claim for <paramref name="panels"/> panels on <paramref name="threads"/> threads: as many as
    /// <see cref="MaxClaimPanels"/>, and at least one claim per thread.</summary>
    public static int ClaimPanels(int panels, int threads) => Math.Clamp(panels / Math.Max(1, threads), GrainPanels, MaxClaimPanels);

    /// <summary>Panels of output columns a GEMM thread claims at a time when the in-place kernel runs (<see cref="WorkerPool.RunRanges"/>): each thread
    /// works through its own run of columns and steals from another's at the end, so the last claims decide how evenly
    /// the threads finish; two panels are 8-32 columns, a few µs of work at encoder shapes.</summary>
    public const int GrainPanels = 2;

    /// <summary>Row strips per block of packed A that goes through every panel of a claim while it sits in L1/L2
    /// (8 strips x KC floats: 48 KiB with AVX2's 6-row strips). Measured at 4096 x 768 x 768/3072 (AVX2, 2 threads):
    /// 4 / 8 / 12 strips within noise of each other, 16 and more slower.</summary>
    public const int CacheStrips = 8;

    /// <summary>Floats <see cref="PackA"/> writes for <paramref name="rows"/> x <paramref name="inDim"/>.</summary>
    public static long PackedASize(int rows, int inDim, int mr) => (long)(rows + mr - 1) / mr * mr * inDim;

    /// <summary>
    /// Packs strips [firstStrip, endStrip) of A (rows, in), MR rows each: packed[(s * in + k) * MR + r] = A[s * MR + r, k] (zero past the
    /// last row), so the micro-panel of strip s for slab k0 starts at (s * in + k0) * MR and is read sequentially.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackA(float* a, int rows, int inDim, int mr, float* packed, int firstStrip, int endStrip)
    {
        for (int s = firstStrip; s < endStrip; s++)
            PackStrip(a + (long)s * mr * inDim, inDim, Math.Min(mr, rows - s * mr), inDim, mr, packed + (long)s * inDim * mr);
    }

    /// <summary>One strip from rows <paramref name="stride"/> apart: strip[k * mr + r] = a[r * stride + k]. On AVX, 8 x 8
    /// blocks are transposed in registers (replacing a scalar scatter that showed up in perf: 3.7% of a training step) (for mr 6 the two spare lanes of each store are overwritten by the next one,
    /// so the last block is left to the scalar tail, which is written after it).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void PackStrip(float* a, int stride, int rows, int p, int mr, float* strip)
    {
        int k = 0;
        if (Avx.IsSupported && (mr == 8 || mr == 6))
        {
            float* zero = stackalloc float[8];
            Vector256<float>.Zero.Store(zero);
            float** source = stackalloc float*[8];
            for (int r = 0; r < 8; r++) source[r] = r < rows ? a + (long)r * stride : null;
            int end = mr == 8 ? p - 8 : p - 9;   // last k that starts a block
            for (; k <= end; k += 8)
            {
                Vector256<float> v0 = Row(source[0], k, zero), v1 = Row(source[1], k, zero), v2 = Row(source[2], k, zero), v3 = Row(source[3], k, zero);
                Vector256<float> v4 = Row(source[4], k, zero), v5 = Row(source[5], k, zero), v6 = Row(source[6], k, zero), v7 = Row(source[7], k, zero);
                Transpose8x8(ref v0, ref v1, ref v2, ref v3, ref v4, ref v5, ref v6, ref v7);
                float* d = strip + (long)k * mr;
                v0.Store(d); v1.Store(d + mr); v2.Store(d + 2 * mr); v3.Store(d + 3 * mr);
                v4.Store(d + 4 * mr); v5.Store(d + 5 * mr); v6.Store(d + 6 * mr); v7.Store(d + 7 * mr);
            }
        }
        for (; k < p; k++)
            for (int r = 0; r < mr; r++) strip[(long)k * mr + r] = r < rows ? a[(long)r * stride + k] : 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Row(float* row, int k, float* zero) => Vector256.Load(row == null ? zero : row + k);

    /// <summary>In-register 8 x 8 transpose: on return v_j[i] is the input v_i[j].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Transpose8x8(ref Vector256<float> v0, ref Vector256<float> v1, ref Vector256<float> v2, ref Vector256<float> v3,
        ref Vector256<float> v4, ref Vector256<float> v5, ref Vector256<float> v6, ref Vector256<float> v7)
    {
        Vector256<float> t0 = Avx.UnpackLow(v0, v1), t1 = Avx.UnpackHigh(v0, v1), t2 = Avx.UnpackLow(v2, v3), t3 = Avx.UnpackHigh(v2, v3);
        Vector256<float> t4 = Avx.UnpackLow(v4, v5), t5 = Avx.UnpackHigh(v4, v5), t6 = Avx.UnpackLow(v6, v7), t7 = Avx.UnpackHigh(v6, v7);
        Vector256<float> u0 = Avx.Shuffle(t0, t2, 0x44), u1 = Avx.Shuffle(t0, t2, 0xEE), u2 = Avx.Shuffle(t1, t3, 0x44), u3 = Avx.Shuffle(t1, t3, 0xEE);
        Vector256<float> u4 = Avx.Shuffle(t4, t6, 0x44), u5 = Avx.Shuffle(t4, t6, 0xEE), u6 = Avx.Shuffle(t5, t7, 0x44), u7 = Avx.Shuffle(t5, t7, 0xEE);
        v0 = Avx.Permute2x128(u0, u4, 0x20); v1 = Avx.Permute2x128(u1, u5, 0x20); v2 = Avx.Permute2x128(u2, u6, 0x20); v3 = Avx.Permute2x128(u3, u7, 0x20);
        v4 = Avx.Permute2x128(u0, u4, 0x31); v5 = Avx.Permute2x128(u1, u5, 0x31); v6 = Avx.Permute2x128(u2, u6, 0x31); v7 = Avx.Permute2x128(u3, u7, 0x31);
    }

    /// <summary>
    /// C[r, n] (+)= sum_k A[r, k] W[n, k] for r &lt; <paramref name="rows"/>, n in [<paramref name="firstColumn"/>,
    /// <paramref name="endColumn"/>). <paramref name="packedA"/> is A after <see cref="PackA"/>; C is (rows, out).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run<TKernel>(in WeightView weight, float* packedA, float* c, int rows, int firstColumn, int endColumn,
        bool accumulate) where TKernel : IMicroKernel
    {
        int mr = TKernel.MR, nr = TKernel.NR;
        int inDim = weight.Cols, outDim = weight.Rows;
        int columns = endColumn - firstColumn;
        int panels = (columns + nr - 1) / nr;
        float* packedB = Scratch.Get(ScratchSlot.WeightPanels, (long)panels * nr * KC);
        float* widened = Scratch.Get(ScratchSlot.WidenedWeightRows, 17L * KC); // 16 widened weight rows and a zero row
        float* tile = Scratch.Get(ScratchSlot.EdgeTile, mr * nr);

        for (int k0 = 0; k0 < inDim; k0 += KC)
        {
            int kc = Math.Min(KC, inDim - k0);
            bool add = accumulate || k0 > 0;
            PackB(weight, firstColumn, columns, k0, kc, nr, packedB, widened);
            MultiplySlab<TKernel>(packedA, inDim, k0, kc, packedB, 0, rows, firstColumn, endColumn, c, outDim, add, tile);
        }
    }

    /// <summary>
    /// One depth slab of a packed product: C[r, j] (+)= sum over k in [k0, k0 + kc) of A[r, k] B[k, j] for rows [row0,
    /// rowEnd) (row0 a multiple of MR) and columns [column0, columnEnd). <paramref name="packedA"/> holds A's strips over
    /// the whole depth <paramref name="depth"/> (<see cref="PackA"/>'s layout); <paramref name="packedB"/> the slab's
    /// panels from column0; C's rows are <paramref name="ldc"/> apart; <paramref name="tile"/> is MR x NR scratch.
    /// Rows go in blocks of <see cref="CacheStrips"/> strips, each block through every panel and each panel through the
    /// block's strips: the block's packed A stays in L1/L2 across the panels, the panel in L1 across the strips (before,
    /// every strip went through the claim's panels and the whole slab of A, 4 MiB at 4096 rows, streamed from L3 once
    /// per claim). Shared by Linear's GEMM and the training products.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void MultiplySlab<TKernel>(float* packedA, int depth, int k0, int kc, float* packedB, int row0, int rowEnd,
        int column0, int columnEnd, float* c, int ldc, bool add, float* tile) where TKernel : IMicroKernel
    {
        int mr = TKernel.MR, nr = TKernel.NR;
        int panels = (columnEnd - column0 + nr - 1) / nr;
        for (int m0 = row0; m0 < rowEnd; m0 += CacheStrips * mr)
        {
            int m1 = Math.Min(rowEnd, m0 + CacheStrips * mr);
            for (int p = 0; p < panels; p++)
            {
                int column = column0 + p * nr;
                int columnsHere = Math.Min(nr, columnEnd - column);
                float* b = packedB + (long)p * nr * kc;
                for (int r0 = m0; r0 < m1; r0 += mr)
                {
                    int rowsHere = Math.Min(mr, m1 - r0);
                    float* a = packedA + ((long)(r0 / mr) * depth + k0) * mr;
                    float* cTile = c + (long)r0 * ldc + column;
                    if (rowsHere == mr && columnsHere == nr)
                    {
                        TKernel.Run(a, b, kc, cTile, ldc, add);
                        continue;
                    }
                    // Edge tile: compute the whole tile aside, keep the part that exists.
                    TKernel.Run(a, b, kc, tile, nr, false);
                    for (int r = 0; r < rowsHere; r++)
                        for (int j = 0; j < columnsHere; j++)
                        {
                            float value = tile[r * nr + j];
                            cTile[(long)r * ldc + j] = add ? cTile[(long)r * ldc + j] + value : value;
                        }
                }
            }
        }
    }

    /// <summary>Packs W[first .. first + columns, k0 .. k0 + kc) as fp32 panels: panel p holds columns
    /// p*NR .. p*NR + NR - 1 as kc rows of NR floats (columns past the end are zero). Columns go in groups of 16
    /// (or NR when smaller): their rows are widened side by side, then transposed 16 x 16 at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void PackB(in WeightView weight, int first, int columns, int k0, int kc, int nr, float* packed, float* widened)
    {
        int group = Math.Min(16, nr);
        int panels = (columns + nr - 1) / nr;
        float* zero = widened + 16L * KC;
        new Span<float>(zero, kc).Clear();
        float** rows = stackalloc float*[16];
        for (int g = 0; g < panels * nr; g += group)
        {
            for (int j = 0; j < group; j++)
            {
                int column = g + j;
                if (column >= columns) rows[j] = zero;
                else if (weight.Format == WeightFormat.F32) rows[j] = (float*)weight.Data + (long)(first + column) * weight.Cols + k0;
                else
                {
                    rows[j] = widened + (long)j * KC;
                    WeightRows.Widen(weight, first + column, k0, kc, rows[j]);
                }
            }

            float* panel = packed + (long)(g / nr) * nr * kc + g % nr;
            int k = 0;
            if (group == 16 && Avx512F.IsSupported)
                for (; k <= kc - 16; k += 16) Transpose16x16(rows, k, panel + (long)k * nr, nr);
            else if (group % 8 == 0 && Avx.IsSupported)
                for (; k <= kc - 8; k += 8)
                    for (int h = 0; h < group; h += 8) Transpose8Rows(rows + h, k, panel + (long)k * nr + h, nr);
            for (; k < kc; k++)
                for (int j = 0; j < group; j++) panel[(long)k * nr + j] = rows[j][k];
        }
    }

    /// <summary>destination[t * stride + j] = rows[j][k + t] for an 8 x 8 block (AVX: the scalar gather it replaces
    /// made packing a weight slab cost about a third of a 128-row GEMM).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8Rows(float** rows, int k, float* destination, int stride)
    {
        Vector256<float> v0 = Avx.LoadVector256(rows[0] + k), v1 = Avx.LoadVector256(rows[1] + k), v2 = Avx.LoadVector256(rows[2] + k);
        Vector256<float> v3 = Avx.LoadVector256(rows[3] + k), v4 = Avx.LoadVector256(rows[4] + k), v5 = Avx.LoadVector256(rows[5] + k);
        Vector256<float> v6 = Avx.LoadVector256(rows[6] + k), v7 = Avx.LoadVector256(rows[7] + k);
        Transpose8x8(ref v0, ref v1, ref v2, ref v3, ref v4, ref v5, ref v6, ref v7);
        Avx.Store(destination, v0); Avx.Store(destination + stride, v1); Avx.Store(destination + 2 * stride, v2);
        Avx.Store(destination + 3 * stride, v3); Avx.Store(destination + 4 * stride, v4); Avx.Store(destination + 5 * stride, v5);
        Avx.Store(destination + 6 * stride, v6); Avx.Store(destination + 7 * stride, v7);
    }

    /// <summary>destination[t * stride + j] = rows[j][k + t] for a 16 x 16 block: unpack pairs, shuffle quads,
    /// then swap 128-bit lanes twice (the classic AVX-512 transpose, 64 shuffles per 256 floats).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Transpose16x16(float** rows, int k, float* destination, int stride)
    {
        Vector512<float> r0 = Vector512.Load(rows[0] + k), r1 = Vector512.Load(rows[1] + k), r2 = Vector512.Load(rows[2] + k), r3 = Vector512.Load(rows[3] + k);
        Vector512<float> r4 = Vector512.Load(rows[4] + k), r5 = Vector512.Load(rows[5] + k), r6 = Vector512.Load(rows[6] + k), r7 = Vector512.Load(rows[7] + k);
        Vector512<float> r8 = Vector512.Load(rows[8] + k), r9 = Vector512.Load(rows[9] + k), ra = Vector512.Load(rows[10] + k), rb = Vector512.Load(rows[11] + k);
        Vector512<float> rc = Vector512.Load(rows[12] + k), rd = Vector512.Load(rows[13] + k), re = Vector512.Load(rows[14] + k), rf = Vector512.Load(rows[15] + k);

        // pairs: t0 = a0 b0 a1 b1 | a4 b4 a5 b5 | ...
        Vector512<float> t0 = Avx512F.UnpackLow(r0, r1), t1 = Avx512F.UnpackHigh(r0, r1), t2 = Avx512F.UnpackLow(r2, r3), t3 = Avx512F.UnpackHigh(r2, r3);
        Vector512<float> t4 = Avx512F.UnpackLow(r4, r5), t5 = Avx512F.UnpackHigh(r4, r5), t6 = Avx512F.UnpackLow(r6, r7), t7 = Avx512F.UnpackHigh(r6, r7);
        Vector512<float> t8 = Avx512F.UnpackLow(r8, r9), t9 = Avx512F.UnpackHigh(r8, r9), ta = Avx512F.UnpackLow(ra, rb), tb = Avx512F.UnpackHigh(ra, rb);
        Vector512<float> tc = Avx512F.UnpackLow(rc, rd), td = Avx512F.UnpackHigh(rc, rd), te = Avx512F.UnpackLow(re, rf), tf = Avx512F.UnpackHigh(re, rf);

        // quads: r0 = a0 b0 c0 d0 | a4 b4 c4 d4 | a8 .. | a12 ..
        r0 = Avx512F.Shuffle(t0, t2, 0x44); r1 = Avx512F.Shuffle(t0, t2, 0xEE); r2 = Avx512F.Shuffle(t1, t3, 0x44); r3 = Avx512F.Shuffle(t1, t3, 0xEE);
        r4 = Avx512F.Shuffle(t4, t6, 0x44); r5 = Avx512F.Shuffle(t4, t6, 0xEE); r6 = Avx512F.Shuffle(t5, t7, 0x44); r7 = Avx512F.Shuffle(t5, t7, 0xEE);
        r8 = Avx512F.Shuffle(t8, ta, 0x44); r9 = Avx512F.Shuffle(t8, ta, 0xEE); ra = Avx512F.Shuffle(t9, tb, 0x44); rb = Avx512F.Shuffle(t9, tb, 0xEE);
        rc = Avx512F.Shuffle(tc, te, 0x44); rd = Avx512F.Shuffle(tc, te, 0xEE); re = Avx512F.Shuffle(td, tf, 0x44); rf = Avx512F.Shuffle(td, tf, 0xEE);

        // 128-bit lanes: t0 = (a-d)0 | (a-d)8 | (e-h)0 | (e-h)8, t4 = (a-d)4 | (a-d)12 | (e-h)4 | (e-h)12
        t0 = Avx512F.Shuffle4x128(r0, r4, 0x88); t1 = Avx512F.Shuffle4x128(r1, r5, 0x88); t2 = Avx512F.Shuffle4x128(r2, r6, 0x88); t3 = Avx512F.Shuffle4x128(r3, r7, 0x88);
        t4 = Avx512F.Shuffle4x128(r0, r4, 0xDD); t5 = Avx512F.Shuffle4x128(r1, r5, 0xDD); t6 = Avx512F.Shuffle4x128(r2, r6, 0xDD); t7 = Avx512F.Shuffle4x128(r3, r7, 0xDD);
        t8 = Avx512F.Shuffle4x128(r8, rc, 0x88); t9 = Avx512F.Shuffle4x128(r9, rd, 0x88); ta = Avx512F.Shuffle4x128(ra, re, 0x88); tb = Avx512F.Shuffle4x128(rb, rf, 0x88);
        tc = Avx512F.Shuffle4x128(r8, rc, 0xDD); td = Avx512F.Shuffle4x128(r9, rd, 0xDD); te = Avx512F.Shuffle4x128(ra, re, 0xDD); tf = Avx512F.Shuffle4x128(rb, rf, 0xDD);

        // columns: column 0 = (a-d)0 | (e-h)0 | (i-l)0 | (m-p)0
        Avx512F.Shuffle4x128(t0, t8, 0x88).Store(destination);
        Avx512F.Shuffle4x128(t1, t9, 0x88).Store(destination + stride);
        Avx512F.Shuffle4x128(t2, ta, 0x88).Store(destination + 2 * stride);
        Avx512F.Shuffle4x128(t3, tb, 0x88).Store(destination + 3 * stride);
        Avx512F.Shuffle4x128(t4, tc, 0x88).Store(destination + 4 * stride);
        Avx512F.Shuffle4x128(t5, td, 0x88).Store(destination + 5 * stride);
        Avx512F.Shuffle4x128(t6, te, 0x88).Store(destination + 6 * stride);
        Avx512F.Shuffle4x128(t7, tf, 0x88).Store(destination + 7 * stride);
        Avx512F.Shuffle4x128(t0, t8, 0xDD).Store(destination + 8 * stride);
        Avx512F.Shuffle4x128(t1, t9, 0xDD).Store(destination + 9 * stride);
        Avx512F.Shuffle4x128(t2, ta, 0xDD).Store(destination + 10 * stride);
        Avx512F.Shuffle4x128(t3, tb, 0xDD).Store(destination + 11 * stride);
        Avx512F.Shuffle4x128(t4, tc, 0xDD).Store(destination + 12 * stride);
        Avx512F.Shuffle4x128(t5, td, 0xDD).Store(destination + 13 * stride);
        Avx512F.Shuffle4x128(t6, te, 0xDD).Store(destination + 14 * stride);
        Avx512F.Shuffle4x128(t7, tf, 0xDD).Store(destination + 15 * stride);
    }
}
