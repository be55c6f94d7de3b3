// The training products C[m, n] (+)= A·B with either operand stored plainly or transposed, at any row stride: forward
// x·Wᵀ (W as HF stores it, [out, in]), dX = dY·W, dW += dYᵀ·X, and attention's per-head products (a head's columns of
// q/k/v rows). Packed and cache-blocked as Gemm (BLIS / Goto) is, with the same micro-kernels: A is packed once per call
// into MR-row strips (threads split the strips); each work unit (a block of rows x a grain of NR-column panels) packs
// its KC-deep slab of B into panels and runs the register tiles over it, or, where B is stored plainly (rows of n
// floats), every depth slab of B is packed once by all threads and the units then run that slab. Packing reads either layout, so nothing is
// transposed whole (the kernel this replaced transposed W on every call and read B down its rows at a stride of N
// floats: 61-84 GFLOP/s at flan-t5-small's shapes against 70-127 now, docs/BENCHMARKS.md).
//
// Numerics: each C element is the sequential f32 sum over one KC-deep slab, slabs added into C in order, which keeps a
// product over the vocabulary (the head's dX: 32,128 deep) near f32's rounding (see TrainingKernels.MatMul).
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ManagedT5.Kernels.Cpu.Training;

/// <summary>A matrix operand in memory: element (r, c) of the logical matrix is <c>Data[r * Stride + c]</c>, or
/// <c>Data[c * Stride + r]</c> when <see cref="Transposed"/>.</summary>
internal readonly unsafe struct MatrixOperand(float* data, int stride, bool transposed)
{
    public readonly float* Data = data;
    public readonly int Stride = stride;
    public readonly bool Transposed = transposed;
}

/// <summary>The packed matrix product behind TrainingKernels.MatMul, the Linear ops and attention.</summary>
internal static unsafe class MatMulGemm
{
    /// <summary>Row-strip blocks of a work unit when the columns alone give too few units to share: rows per block is
    /// at least this many strips, so B's slab is packed once per <c>MinBlockStrips * MR</c> rows or more.</summary>
    private const int MinBlockStrips = 16;

    /// <summary>Panels per column grain. Training's products are 1024 rows or fewer, so small grains keep both threads
    /// busy; Gemm.ClaimPanels' wide claims (made for 4096-row encoder batches) measured slower here, dW most.</summary>
    private const int GrainPanels = 2;

    /// <summary>
    /// C[m, n] (+)= op(A)·op(B) on the pool: A stored [m, p] or, with <paramref name="transposeA"/>, [p, m]; B stored
    /// [p, n] or, with <paramref name="transposeB"/>, [n, p]; C [m, n]. Overwrites C unless <paramref name="accumulate"/>.
    /// </summary>
    public static void Run(WorkerPool pool, SimdLevel level, float* a, bool transposeA, float* b, bool transposeB, float* c,
        int m, int p, int n, bool accumulate, bool narrow = true) =>
        Run(pool, level, new MatrixOperand(a, transposeA ? m : p, transposeA), new MatrixOperand(b, transposeB ? p : n, transposeB),
            c, n, m, p, n, accumulate, narrow);

    /// <summary>C[m, n] (+)= A·B for strided operands, C's rows <paramref name="ldc"/> apart; on the pool, or on the
    /// calling thread alone when <paramref name="pool"/> is null (attention runs one head per thread). A product with a
    /// narrow side goes to <see cref="NarrowProducts"/> on the pool unless <paramref name="narrow"/> is false (tests
    /// compare the two).</summary>
    public static void Run(WorkerPool? pool, SimdLevel level, MatrixOperand a, MatrixOperand b, float* c, int ldc,
        int m, int p, int n, bool accumulate, bool narrow = true)
    {
        if (m == 0 || n == 0) return;
        if (p == 0)
        {
            if (!accumulate)
                for (int i = 0; i < m; i++) new Span<float>(c + (long)i * ldc, n).Clear();
            return;
        }
        if (narrow && pool is not null && NarrowProducts.TryRun(pool, level, a, b, c, ldc, m, p, n, accumulate)) return;
        switch (level)
        {
            case SimdLevel.Vector512: Run<MicroKernel512>(pool, a, b, c, ldc, m, p, n, accumulate); break;
            case SimdLevel.Vector256: Run<MicroKernel256>(pool, a, b, c, ldc, m, p, n, accumulate); break;
            case SimdLevel.Vector128: Run<MicroKernel128>(pool, a, b, c, ldc, m, p, n, accumulate); break;
            default: Run<MicroKernelScalar>(pool, a, b, c, ldc, m, p, n, accumulate); break;
        }
    }

    private static void Run<TKernel>(WorkerPool? pool, MatrixOperand a, MatrixOperand b, float* c, int ldc,
        int m, int p, int n, bool accumulate) where TKernel : IMicroKernel
    {
        int mr = TKernel.MR, nr = TKernel.NR;
        int strips = (m + mr - 1) / mr, panels = (n + nr - 1) / nr;
        float* packedA = Scratch.Get(ScratchSlot.PreparedInput, Gemm.PackedASize(m, p, mr));
        var pack = new PackAJob { A = a, M = m, P = p, MR = mr, Packed = packedA, Strips = strips, PerItem = strips };
        var job = new UnitJob<TKernel> { PackedA = packedA, B = b, C = c, Ldc = ldc, M = m, P = p, N = n, Accumulate = accumulate };
        if (pool is null)
        {
            pack.Execute(0);
            job.GrainPanels = panels; job.Grains = 1; job.BlockStrips = strips;
            job.Execute(0, 1);
            return;
        }
        if (a.Transposed)
        {
            // A stored [p, m] (dYᵀ in dW = dYᵀ·X): packed by depth rows, each stored row read start to end into every
            // strip. By strips, each strip read MR floats of every row at a stride (2.8% of a full fine-tuning step).
            // packed[(s * P + k) * MR + r] = stored[k, s * MR + r]: stored row k into every strip.
            var rowsJob = new ScatterRowsJob { Source = a.Data, Stride = a.Stride, Length = m, Width = mr, Step = (long)p * mr, Packed = packedA, Rows = p };
            pool.Run(ref rowsJob, (p + PackRowsPerItem - 1) / PackRowsPerItem);
        }
        else
        {
            pack.PerItem = Math.Max(1, (strips + pool.Threads * 4 - 1) / (pool.Threads * 4));
            pool.Run(ref pack, (strips + pack.PerItem - 1) / pack.PerItem);
        }

        // Units: column grains (GrainPanels panels each) times row blocks. Rows are split only when the columns
        // give fewer than four units a thread (a LoRA product is 4-16 columns wide).
        job.GrainPanels = GrainPanels;
        job.Grains = (panels + job.GrainPanels - 1) / job.GrainPanels;
        int wanted = (pool.Threads * 4 + job.Grains - 1) / job.Grains;
        job.BlockStrips = Math.Max(MinBlockStrips, (strips + wanted - 1) / wanted);
        int blocks = (strips + job.BlockStrips - 1) / job.BlockStrips;
        if (b.Transposed)
        {
            pool.RunRanges(ref job, blocks * job.Grains, 1);
            return;
        }

        // B stored plainly ([p, n]: a weight in dX = dY·W, the input in dW = dYᵀ·X): each depth slab is packed once,
        // for every unit, by jobs that read B's rows from start to end. Packed per unit, a unit's two panels read 128
        // bytes of each row at a stride of n floats, missing to memory on every row (6.8% of a LoRA step on
        // flan-t5-small); the slab order also reads a block's A once per slab, not once per grain (the head's dX,
        // 32,128 deep). Each C element still adds its slabs in depth order, so the result is the unit order's.
        job.SharedB = Scratch.Get(ScratchSlot.SharedPanels, (long)panels * nr * Gemm.KC);
        // packed[(panel * kc + k) * NR + j] = B[k0 + k, panel * NR + j]: row k0 + k of B into every panel.
        var packB = new ScatterRowsJob { Stride = b.Stride, Length = n, Width = nr, Packed = job.SharedB };
        for (int k0 = 0; k0 < p; k0 += Gemm.KC)
        {
            int kc = Math.Min(Gemm.KC, p - k0);
            packB.Source = b.Data + (long)k0 * b.Stride; packB.Rows = kc; packB.Step = (long)nr * kc;
            pool.Run(ref packB, (kc + PackRowsPerItem - 1) / PackRowsPerItem);
            job.SlabK0 = k0;
            pool.RunRanges(ref job, blocks * job.Grains, 1);
        }
    }

    /// <summary>Rows a packing item copies (a slab's KC rows of B in eight items).</summary>
    private const int PackRowsPerItem = Gemm.KC / 8;

    /// <summary>Rows [index * PackRowsPerItem, +PackRowsPerItem) of Source (Rows rows, Stride apart), each through
    /// <see cref="ScatterRow"/> into Packed + row * Width: a depth slab of a plainly stored B into panels, or A stored
    /// transposed into strips. Each row is read from start to end.</summary>
    private struct ScatterRowsJob : IParallelJob
    {
        public float* Source, Packed;
        public long Step;
        public int Stride, Length, Width, Rows;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int index)
        {
            int first = index * PackRowsPerItem, end = Math.Min(first + PackRowsPerItem, Rows);
            for (int k = first; k < end; k++)
                ScatterRow(Source + (long)k * Stride, Length, Width, Step, Packed + (long)k * Width);
        }
    }

    /// <summary>Strips [index * PerItem, +PerItem) of A in Gemm.PackA's layout: packed[(s * P + k) * MR + r] =
    /// A[s * MR + r, k], zero past the last row.</summary>
    private struct PackAJob : IParallelJob
    {
        public MatrixOperand A;
        public float* Packed;
        public int M, P, MR, Strips, PerItem;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int index)
        {
            int first = index * PerItem, end = Math.Min(first + PerItem, Strips);
            for (int s = first; s < end; s++)
            {
                int row0 = s * MR, rows = Math.Min(MR, M - row0);
                float* strip = Packed + (long)s * P * MR;
                if (A.Transposed) PackTransposedStrip(A.Data + row0, A.Stride, rows, P, MR, strip);
                else Gemm.PackStrip(A.Data + (long)row0 * A.Stride, A.Stride, rows, P, MR, strip);
            }
        }
    }

    /// <summary>One strip of A stored transposed (column r of the strip is row r of A, adjacent in memory):
    /// strip[k * mr + r] = a[k * stride + r].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackTransposedStrip(float* a, int stride, int rows, int p, int mr, float* strip)
    {
        if (rows == mr)
        {
            // A full strip: each depth is mr adjacent floats (MR: 4, 6 or 8).
            for (int k = 0; k < p; k++) CopyRow(a + (long)k * stride, strip + (long)k * mr, mr);
            return;
        }
        for (int k = 0; k < p; k++)
        {
            float* source = a + (long)k * stride, destination = strip + (long)k * mr;
            int r = 0;
            for (; r < rows; r++) destination[r] = source[r];
            for (; r < mr; r++) destination[r] = 0;
        }
    }

    /// <summary>One stored row of <paramref name="length"/> floats into packed blocks: floats [i * width, +width) go to
    /// destination + i * step, the last block zero past the row's end (a row of B into every panel, or of Aᵀ into every
    /// strip).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ScatterRow(float* source, int length, int width, long step, float* destination)
    {
        int whole = length / width, tail = length - whole * width;
        for (int i = 0; i < whole; i++, source += width, destination += step) CopyRow(source, destination, width);
        if (tail == 0) return;
        int j = 0;
        for (; j < tail; j++) destination[j] = source[j];
        for (; j < width; j++) destination[j] = 0;
    }

    /// <summary>Copies <paramref name="count"/> floats (a few dozen at most) in registers, reading and writing exactly
    /// that many.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyRow(float* source, float* destination, int count)
    {
        int j = 0;
        if (Vector256.IsHardwareAccelerated)
            for (; j + 8 <= count; j += 8) Vector256.Store(Vector256.Load(source + j), destination + j);
        if (Vector128.IsHardwareAccelerated)
            for (; j + 4 <= count; j += 4) Vector128.Store(Vector128.Load(source + j), destination + j);
        for (; j < count; j++) destination[j] = source[j];
    }

    /// <summary>Units [first, end): unit u is the rows of block u / Grains (BlockStrips strips) and the columns of grain
    /// u % Grains (GrainPanels panels), through every depth slab in order.</summary>
    private struct UnitJob<TKernel> : IRangeJob where TKernel : IMicroKernel
    {
        public float* PackedA, C;
        public MatrixOperand B;
        public bool Accumulate;
        public int Ldc, M, P, N, Grains, GrainPanels, BlockStrips;
        /// <summary>When set, the depth slab at <see cref="SlabK0"/> of B, packed for every unit: the units run that
        /// slab alone.</summary>
        public float* SharedB;
        public int SlabK0;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int first, int end)
        {
            int mr = TKernel.MR, nr = TKernel.NR;
            float* packedB = Scratch.Get(ScratchSlot.WeightPanels, (long)GrainPanels * nr * Gemm.KC);
            float* tile = Scratch.Get(ScratchSlot.EdgeTile, mr * nr);
            for (int unit = first; unit < end; unit++)
            {
                int block = unit / Grains, grain = unit % Grains;
                int row0 = block * BlockStrips * mr, rowEnd = Math.Min(M, row0 + BlockStrips * mr);
                int column0 = grain * GrainPanels * nr, columnEnd = Math.Min(N, column0 + GrainPanels * nr);
                int columns = columnEnd - column0;
                if (SharedB != null)
                {
                    int kc = Math.Min(Gemm.KC, P - SlabK0);
                    Gemm.MultiplySlab<TKernel>(PackedA, P, SlabK0, kc, SharedB + (long)grain * GrainPanels * nr * kc, row0, rowEnd,
                        column0, columnEnd, C, Ldc, Accumulate || SlabK0 > 0, tile);
                    continue;
                }
                for (int k0 = 0; k0 < P; k0 += Gemm.KC)
                {
                    int kc = Math.Min(Gemm.KC, P - k0);
                    bool add = Accumulate || k0 > 0;
                    PackB(B, N, column0, columns, k0, kc, nr, packedB);
                    Gemm.MultiplySlab<TKernel>(PackedA, P, k0, kc, packedB, row0, rowEnd, column0, columnEnd, C, Ldc, add, tile);
                }
            }
        }
    }

    /// <summary>Columns [column0, column0 + columns) of B, depths [k0, k0 + kc), as panels of NR columns:
    /// packed[(panel * kc + k) * NR + j] = B[k0 + k, column0 + panel * NR + j], zero past the last column.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackB(in MatrixOperand b, int n, int column0, int columns, int k0, int kc, int nr, float* packed)
    {
        if (b.Transposed)
        {
            // Stored [n, p] (rows Stride apart): the weight-row layout Gemm packs, a row per column of the product.
            Gemm.PackB(new WeightView((nint)b.Data, WeightFormat.F32, n, b.Stride, null), column0, columns, k0, kc, nr, packed,
                Scratch.Get(ScratchSlot.WidenedWeightRows, 17L * Gemm.KC));
            return;
        }
        int panels = (columns + nr - 1) / nr;
        for (int panel = 0; panel < panels; panel++)
        {
            int width = Math.Min(nr, columns - panel * nr);
            float* destination = packed + (long)panel * nr * kc;
            float* source = b.Data + (long)k0 * b.Stride + column0 + panel * nr;
            if (width == nr)
            {
                // A panel row is NR floats (4-32), copied in registers.
                for (int k = 0; k < kc; k++, destination += nr, source += b.Stride)
                    CopyRow(source, destination, nr);
                continue;
            }
            for (int k = 0; k < kc; k++, destination += nr, source += b.Stride)
            {
                int j = 0;
                for (; j < width; j++) destination[j] = source[j];
                for (; j < nr; j++) destination[j] = 0;
            }
        }
    }
}
