// Training products with a narrow side, as LoRA's rank-r factors make them: x·Aᵀ and dy·B (C 8 or fewer columns wide)
// and dyᵀ·saved (dB: C 16 or fewer wide, A stored transposed). The packed GEMM (MatMulGemm) packs the wide operand for
// them (reading and writing it once more than the product reads it) and fills half of each 16-column panel with zeros at
// r 8; these read the wide operand in place and pack only the narrow one: 1.4-2x faster each at flan-t5-small's LoRA
// shapes (`--quick-train`, NARROW_PARTS=1). The other three LoRA products (saved·Bᵀ and t·A, 8 deep; tᵀ·x, 8 rows) were
// written this way too and measured 1.4-4x slower than the packed GEMM, so they stay with it.
//
// Numerics are the packed GEMM's: each C element is a sequential fused multiply-add chain from zero over one KC-deep
// slab, the slabs added into C in depth order, so the results are bit-identical to it (tested).
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ManagedT5.Kernels.Cpu.Training;

/// <summary>C (+)= op(A)·op(B) where C's width, C's height or the depth is at most <see cref="MaxWidth"/>.</summary>
internal static unsafe class NarrowProducts
{
    /// <summary>The widest narrow side: two Vector256 of columns, or two blocks of eight accumulators.</summary>
    public const int MaxWidth = 16;

    /// <summary>
    /// Runs C[m, n] (+)= op(A)·op(B) on the pool when it has a narrow form and the hardware has 256-bit vectors; false
    /// (nothing done) otherwise. With A [m, p] and B [p, n] as logical matrices: n ≤ 8 with A plain is
    /// <see cref="RowsJob"/>; n ≤ 16 with A transposed and B plain is <see cref="OuterJob"/>.
    /// </summary>
    public static bool TryRun(WorkerPool pool, SimdLevel level, MatrixOperand a, MatrixOperand b, float* c, int ldc,
        int m, int p, int n, bool accumulate)
    {
        if (level < SimdLevel.Vector256 || !Vector256.IsHardwareAccelerated) return false;
        if (!a.Transposed && n <= 8)
        {
            // B as p rows of 8 floats, zero past column n.
            float* packed = Scratch.Get(ScratchSlot.SharedPanels, (long)p * 8);
            for (int k = 0; k < p; k++)
                for (int j = 0; j < 8; j++)
                    packed[(long)k * 8 + j] = j < n ? Element(b, k, j) : 0;
            var job = new RowsJob { A = a, B = packed, C = c, Ldc = ldc, M = m, P = p, N = n, Accumulate = accumulate };
            pool.RunRanges(ref job, (m + RowsJob.Rows - 1) / RowsJob.Rows, 2);
            return true;
        }
        if (a.Transposed && !b.Transposed && n <= MaxWidth)
        {
            // Cᵀ[j, i] = sum_k B[k, j]·A[i, k]: B's rows (n floats each) packed as p rows of 16, zero past n; A's
            // stored rows (m floats each, A being stored [p, m]) read in place.
            float* packed = Scratch.Get(ScratchSlot.SharedPanels, (long)p * MaxWidth);
            for (int k = 0; k < p; k++)
                for (int j = 0; j < MaxWidth; j++)
                    packed[(long)k * MaxWidth + j] = j < n ? b.Data[(long)k * b.Stride + j] : 0;
            var job = new OuterJob { U = packed, V = a.Data, Ldv = a.Stride, Narrow = n, Wide = m, P = p, Accumulate = accumulate, C = c, Ldc = ldc };
            pool.RunRanges(ref job, (m + 7) / 8, 2);
            return true;
        }
        return false;
    }

    /// <summary>Element (k, j) of the logical matrix B [p, n].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Element(in MatrixOperand b, int k, int j) =>
        b.Transposed ? b.Data[(long)j * b.Stride + k] : b.Data[(long)k * b.Stride + j];

    /// <summary>Writes a slab's sums into C: C = sums on the first slab unless accumulating, else C + sums (the micro-kernels'
    /// store).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* c, Vector256<float> sums, bool add)
    {
        if (add) sums += Vector256.Load(c);
        sums.Store(c);
    }

    /// <summary>The first <paramref name="count"/> lanes of <paramref name="sums"/> into C, <paramref name="stride"/> apart.</summary>
    private static void StorePart(float* c, long stride, Vector256<float> sums, int count, bool add)
    {
        for (int j = 0; j < count; j++)
        {
            float value = sums.GetElement(j);
            c[j * stride] = add ? c[j * stride] + value : value;
        }
    }

    /// <summary>C[m, n] (+)= A[m, p]·B with n ≤ 8: eight rows of A at a time (eight independent FMA chains), read in
    /// place, against B packed as p rows of 8 floats. Unit u is rows [8u, 8u + 8).</summary>
    private struct RowsJob : IRangeJob
    {
        public const int Rows = 8;
        public MatrixOperand A;
        public float* B, C;
        public int Ldc, M, P, N;
        public bool Accumulate;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int first, int end)
        {
            for (int unit = first; unit < end; unit++)
            {
                int row0 = unit * Rows, rows = Math.Min(Rows, M - row0);
                if (rows == Rows) { Eight(row0); continue; }
                for (int r = 0; r < rows; r++) One(row0 + r);
            }
        }

        /// <summary>Rows row0..row0+7.</summary>
        private readonly void Eight(int row0)
        {
            long lda = A.Stride;
            float* a0 = A.Data + row0 * lda;
            for (int k0 = 0; k0 < P; k0 += Gemm.KC)
            {
                int k1 = Math.Min(P, k0 + Gemm.KC);
                Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default, s7 = default;
                for (int k = k0; k < k1; k++)
                {
                    Vector256<float> bk = Vector256.Load(B + (long)k * 8);
                    float* ak = a0 + k;
                    s0 = Vector256.FusedMultiplyAdd(Vector256.Create(ak[0]), bk, s0);
                    s1 = Vector256.FusedMultiplyAdd(Vector256.Create(ak[lda]), bk, s1);
                    s2 = Vector256.FusedMultiplyAdd(Vector256.Create(ak[2 * lda]), bk, s2);
                    s3 = Vector256.FusedMultiplyAdd(Vector256.Create(ak[3 * lda]), bk, s3);
                    s4 = Vector256.FusedMultiplyAdd(Vector256.Create(ak[4 * lda]), bk, s4);
                    s5 = Vector256.FusedMultiplyAdd(Vector256.Create(ak[5 * lda]), bk, s5);
                    s6 = Vector256.FusedMultiplyAdd(Vector256.Create(ak[6 * lda]), bk, s6);
                    s7 = Vector256.FusedMultiplyAdd(Vector256.Create(ak[7 * lda]), bk, s7);
                }
                bool add = Accumulate || k0 > 0;
                Put(row0, s0, add); Put(row0 + 1, s1, add); Put(row0 + 2, s2, add); Put(row0 + 3, s3, add);
                Put(row0 + 4, s4, add); Put(row0 + 5, s5, add); Put(row0 + 6, s6, add); Put(row0 + 7, s7, add);
            }
        }

        /// <summary>One row (the last rows of A).</summary>
        private readonly void One(int row)
        {
            float* a = A.Data + (long)row * A.Stride;
            for (int k0 = 0; k0 < P; k0 += Gemm.KC)
            {
                int k1 = Math.Min(P, k0 + Gemm.KC);
                Vector256<float> sums = default;
                for (int k = k0; k < k1; k++)
                    sums = Vector256.FusedMultiplyAdd(Vector256.Create(a[k]), Vector256.Load(B + (long)k * 8), sums);
                Put(row, sums, Accumulate || k0 > 0);
            }
        }

        private readonly void Put(int row, Vector256<float> sums, bool add)
        {
            float* c = C + (long)row * Ldc;
            if (N == 8) Store(c, sums, add);
            else StorePart(c, 1, sums, N, add);
        }
    }

    /// <summary>
    /// C[col, j] (+)= sum_k U[k, j]·V[k, col] for j &lt; Narrow (≤ 16), col &lt; Wide: U packed as p rows of 16 floats,
    /// V read in place (rows Ldv apart), C's rows Ldc apart. Unit u is columns [8u, 8u + 8) of V: each row of V is
    /// loaded once per slab for eight accumulators (one per j).
    /// </summary>
    private struct OuterJob : IRangeJob
    {
        public float* U, V, C;
        public int Ldv, Ldc, Narrow, Wide, P;
        public bool Accumulate;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int first, int end)
        {
            for (int unit = first; unit < end; unit++)
            {
                int column = unit * 8, columns = Math.Min(8, Wide - column);
                for (int j0 = 0; j0 < Narrow; j0 += 8)
                {
                    if (columns == 8) Block(column, j0);
                    else Tail(column, columns, j0);
                }
            }
        }

        /// <summary>Columns column..column+7 for j in [j0, j0 + 8).</summary>
        private readonly void Block(int column, int j0)
        {
            for (int k0 = 0; k0 < P; k0 += Gemm.KC)
            {
                int k1 = Math.Min(P, k0 + Gemm.KC);
                Vector256<float> g0 = default, g1 = default, g2 = default, g3 = default, g4 = default, g5 = default, g6 = default, g7 = default;
                for (int k = k0; k < k1; k++)
                {
                    Vector256<float> v = Vector256.Load(V + (long)k * Ldv + column);
                    float* u = U + (long)k * MaxWidth + j0;
                    g0 = Vector256.FusedMultiplyAdd(Vector256.Create(u[0]), v, g0);
                    g1 = Vector256.FusedMultiplyAdd(Vector256.Create(u[1]), v, g1);
                    g2 = Vector256.FusedMultiplyAdd(Vector256.Create(u[2]), v, g2);
                    g3 = Vector256.FusedMultiplyAdd(Vector256.Create(u[3]), v, g3);
                    g4 = Vector256.FusedMultiplyAdd(Vector256.Create(u[4]), v, g4);
                    g5 = Vector256.FusedMultiplyAdd(Vector256.Create(u[5]), v, g5);
                    g6 = Vector256.FusedMultiplyAdd(Vector256.Create(u[6]), v, g6);
                    g7 = Vector256.FusedMultiplyAdd(Vector256.Create(u[7]), v, g7);
                }
                bool add = Accumulate || k0 > 0;
                int rows = Math.Min(8, Narrow - j0);
                Put(j0, column, g0, add);
                if (rows > 1) Put(j0 + 1, column, g1, add);
                if (rows > 2) Put(j0 + 2, column, g2, add);
                if (rows > 3) Put(j0 + 3, column, g3, add);
                if (rows > 4) Put(j0 + 4, column, g4, add);
                if (rows > 5) Put(j0 + 5, column, g5, add);
                if (rows > 6) Put(j0 + 6, column, g6, add);
                if (rows > 7) Put(j0 + 7, column, g7, add);
            }
        }

        private readonly void Put(int j, int column, Vector256<float> sums, bool add)
        {
            StorePart(C + (long)column * Ldc + j, Ldc, sums, 8, add);
        }

        /// <summary>The last columns (fewer than eight), element by element in the same order.</summary>
        private readonly void Tail(int column, int columns, int j0)
        {
            int rows = Math.Min(8, Narrow - j0);
            for (int k0 = 0; k0 < P; k0 += Gemm.KC)
            {
                int k1 = Math.Min(P, k0 + Gemm.KC);
                bool add = Accumulate || k0 > 0;
                for (int j = j0; j < j0 + rows; j++)
                    for (int col = column; col < column + columns; col++)
                    {
                        float sum = 0;
                        for (int k = k0; k < k1; k++) sum = MathF.FusedMultiplyAdd(U[(long)k * MaxWidth + j], V[(long)k * Ldv + col], sum);
                        float* g = C + (long)col * Ldc + j;
                        *g = add ? *g + sum : sum;
                    }
            }
        }
    }
}
