// Linear (x W^T, no bias) for the CPU backend: picks GEMV for a few rows (bandwidth-bound decode) or the packed
// GEMM for many (compute-bound encoder), picks the weight format and SIMD width, and splits the output across the
// worker pool. Every output element is computed by one thread with the same code, so thread count never changes
// the result.
using System.Runtime.Intrinsics;

namespace ManagedT5.Kernels.Cpu;

/// <summary>Dispatch of <see cref="IBackend.Linear"/>.</summary>
internal static unsafe class LinearKernel
{
    /// <summary>Below this many weight bytes a GEMV runs on the calling thread (waking workers costs more).</summary>
    private const long ParallelMinBytes = 64 * 1024;

    /// <summary>Most weights <see cref="RunShared"/> runs as one op (q, k, v).</summary>
    public const int MaxShared = 3;

    /// <summary>Up to this many F32 rows the GEMV streams the weight once for all rows; above, the GEMM packs it. For
    /// narrow formats (BF16/F16/int8, <see cref="NarrowGemvMaxRows"/>) the GEMV's eight-row kernel stays ahead of the
    /// GEMM (which widens every panel) up to eight rows; for F32 at eight rows the two traded places from run to run,
    /// so the simpler split stays (see docs/BENCHMARKS.md, "Measurements behind kernel choices").</summary>
    public const int GemvMaxRows = 4;

    /// <summary>See <see cref="GemvMaxRows"/>.</summary>
    public const int NarrowGemvMaxRows = 8;

    /// <summary>The row limit of the GEMV for F32 weights on AVX-512 where the aligned-chunk kernels take them (see
    /// UsesAlignedChunks; they read two weight rows against eight x rows): up to eight rows they beat the GEMM, which
    /// packs the whole weight for them (see docs/BENCHMARKS.md, "Measurements behind kernel choices").</summary>
    public const int ChunkedF32GemvMaxRows = 8;

    /// <summary>y (rows, out) (+)= x (rows, in) W^T.</summary>
    public static void Run(WorkerPool pool, SimdLevel level, KernelChoices options, float* x, CpuWeight weight, float* y, int rows,
        bool accumulate)
    {
        var view = WeightView.Of(weight);
        nint output = (nint)y;
        RunShared(pool, level, options, x, new ReadOnlySpan<WeightView>(in view), new ReadOnlySpan<nint>(in output), rows, accumulate);
    }

    /// <summary>
    /// y_i (rows, out_i) (+)= x (rows, in) W_i^T for up to <see cref="MaxShared"/> weights of one format and in_features
    /// (q/k/v, wi_0/wi_1): x is prepared once (padded, laid out, quantized or packed) and one pool job covers every
    /// weight's outputs, each element computed exactly as a lone <see cref="Run"/> computes it. Weights the kernel
    /// choice would treat differently (alignment), or that would want x shifted differently for aligned loads, run one
    /// after another.
    /// </summary>
    public static void RunShared(WorkerPool pool, SimdLevel level, KernelChoices options, float* x, ReadOnlySpan<WeightView> w,
        ReadOnlySpan<nint> y, int rows, bool accumulate)
    {
        if (w.Length > MaxShared) throw new ArgumentException($"At most {MaxShared} weights share one call, not {w.Length}.", nameof(w));
        bool chunked = UsesAlignedChunks(level, options, w[0], rows);
        for (int i = 1; i < w.Length; i++)
        {
            if (w[i].Format != w[0].Format || w[i].Cols != w[0].Cols || UsesAlignedChunks(level, options, w[i], rows) != chunked
                || (chunked && ChunkShift(w[i]) != ChunkShift(w[0])))
            {
                for (int j = 0; j < w.Length; j++) RunShared(pool, level, options, x, w.Slice(j, 1), y.Slice(j, 1), rows, accumulate);
                return;
            }
        }
        WeightView first = w[0];
        bool gemv = chunked ? rows <= options.ChunkedF32GemvMaxRows : options.UsesGemv(first.Format, rows);
        // int8 weights with VNNI: activations quantized per row and multiplied in integers (Int8Gemm, faster than the
        // fp32 GEMM: see docs/BENCHMARKS.md). Non-finite activations would quantize to garbage, so they take the
        // widening kernels and propagate as the reference does.
        if (first.Format == WeightFormat.Int8 && options.Int8Integer && Int8Gemm.IsSupported(level)
            && AllFinite(x, (long)rows * first.Cols))
        {
            if (gemv) Int8Gemm.RunGemvShared(pool, level, x, w, y, rows, accumulate, options.Stealing);
            else Int8Gemm.RunShared(pool, level, x, w, y, rows, accumulate, options.Stealing);
        }
        else if (gemv) RunGemv(pool, level, options, chunked, x, w, y, rows, accumulate);
        else if (first.Format == WeightFormat.F32 && level == SimdLevel.Vector512 && options.InPlaceF32Gemm && GemmInPlace.IsSupported
                 && GemmInPlace.Fits(rows))
            RunGemmInPlace(pool, x, w, y, rows, accumulate, options.Stealing);
        else if (first.Format == WeightFormat.F32 && !chunked && rows <= options.GroupedGemvMaxRows)
            RunGemvInGroups(pool, level, options, x, w, y, rows, accumulate);
        else RunGemm(pool, level, x, w, y, rows, accumulate, options.Stealing);
    }

    /// <summary>Most F32 rows that <see cref="RunGemvInGroups"/> takes where the in-place GEMM does not (AVX2 and below).</summary>
    public const int GroupedGemvMaxRows = 16;

    /// <summary>
    /// F32 rows just above the GEMV's limit, where the packed GEMM would copy the whole weight into panels on every call
    /// (a decoder step of a continuous batch, batch8 greedy): the multi-row GEMV over groups of
    /// <see cref="KernelChoices.GroupedGemvRows"/> rows streams the weight once per group instead. Measured with
    /// `ManagedT5.Bench --quick 2` on the AVX2 machine of session 7, 1024x512, microseconds per row: the packed GEMM
    /// 71.9 (5 rows), 48.9 (8), 32.5 (12), 20.5 (16); grouped by 8: 22.6, 15.8, 18.4, 16.8.
    /// </summary>
    private static void RunGemvInGroups(WorkerPool pool, SimdLevel level, KernelChoices options, float* x, ReadOnlySpan<WeightView> w,
        ReadOnlySpan<nint> y, int rows, bool accumulate)
    {
        int cols = w[0].Cols, group = Math.Max(1, options.GroupedGemvRows);
        Span<nint> groupOutputs = stackalloc nint[w.Length];
        for (int r0 = 0; r0 < rows; r0 += group)
        {
            int n = Math.Min(group, rows - r0);
            for (int i = 0; i < w.Length; i++) groupOutputs[i] = y[i] + (nint)((long)r0 * w[i].Rows * sizeof(float));
            RunGemv(pool, level, options, chunked: false, x + (long)r0 * cols, w, groupOutputs, n, accumulate);
        }
    }

    /// <summary>
    /// Runs one range job per weight as one pool job over their output units (rows of a GEMV, columns of a GEMM) laid
    /// end to end, <paramref name="grain"/> units per claim; on the calling thread alone unless
    /// <paramref name="parallel"/>.
    /// </summary>
    internal static void RunJobs<TJob>(WorkerPool pool, TJob* jobs, ReadOnlySpan<WeightView> w, int grain, bool steal, bool parallel)
        where TJob : unmanaged, IRangeJob
    {
        if (w.Length == 1)
        {
            if (parallel) pool.RunRanges(ref jobs[0], w[0].Rows, grain, steal);
            else jobs[0].Execute(0, w[0].Rows);
            return;
        }
        int* ends = stackalloc int[w.Length];
        int total = 0;
        for (int i = 0; i < w.Length; i++) ends[i] = total += w[i].Rows;
        var group = new JobGroup<TJob> { Jobs = jobs, Ends = ends, Count = w.Length };
        if (parallel) pool.RunRanges(ref group, total, grain, steal);
        else group.Execute(0, total);
    }

    /// <summary>Units [first, end) of several jobs laid end to end: job i owns [Ends[i - 1], Ends[i]).</summary>
    private struct JobGroup<TJob> : IRangeJob where TJob : unmanaged, IRangeJob
    {
        public TJob* Jobs;
        public int* Ends;
        public int Count;

        public void Execute(int first, int end)
        {
            int start = 0;
            for (int i = 0; i < Count && start < end; i++)
            {
                int stop = Ends[i];
                int from = Math.Max(first, start), to = Math.Min(end, stop);
                if (from < to) Jobs[i].Execute(from - start, to - start);
                start = stop;
            }
        }
    }

    /// <summary>Floats x is shifted by in the aligned-chunk kernels' padded copy: the weight's offset in its cache
    /// line when every row starts at the same offset (cols a multiple of 16), else 0.</summary>
    private static int ChunkShift(in WeightView w) => w.Cols % 16 == 0 ? (int)(((nint)w.Data & 63) >> 2) : 0;

    /// <summary>Total weight bytes of <paramref name="w"/>.</summary>
    internal static long Bytes(ReadOnlySpan<WeightView> w)
    {
        long bytes = 0;
        foreach (WeightView v in w) bytes += (long)v.Rows * v.Cols * CpuWeight.BytesPerElement(v.Format);
        return bytes;
    }

    /// <summary>Whether F32 weights take <see cref="Gemv.RunF32Chunks"/> (AVX-512): for one or two rows when the weight
    /// starts mid cache line, and for three or more rows wherever it starts, since the multi-row chunk kernels (two
    /// weight rows against eight x rows) beat both the plain multi-row GEMV and the GEMM.</summary>
    private static bool UsesAlignedChunks(SimdLevel level, KernelChoices options, in WeightView w, int rows) =>
        w.Format == WeightFormat.F32 && level == SimdLevel.Vector512 && Vector512.IsHardwareAccelerated && options.AlignedChunks
        && ((nint)w.Data & 3) == 0 && (rows <= 2 ? ((nint)w.Data & 63) != 0 : options.MultiRowGemv);

    private static void RunGemv(WorkerPool pool, SimdLevel level, KernelChoices options, bool chunked, float* x,
        ReadOnlySpan<WeightView> w, ReadOnlySpan<nint> y, int rows, bool accumulate)
    {
        int cols = w[0].Cols, elementSize = CpuWeight.BytesPerElement(w[0].Format);
        bool parallel = GemvParallel(Bytes(w));
        int grain = GemvGrain((long)cols * elementSize);
        if (chunked)
        {
            // x rows padded with zeros. When every weight row starts at the same offset in its cache line (cols a
            // multiple of 16) x is shifted by that offset too, so the x loads are aligned like the weight chunks.
            int shift = ChunkShift(w[0]);
            int stride = (cols + Gemv.Pad + 32 + 15) & ~15;
            float* padded = Scratch.Get(ScratchSlot.PreparedInput, (long)rows * stride);
            for (int r = 0; r < rows; r++)
            {
                float* row = padded + (long)r * stride;
                new Span<float>(row, stride).Clear();
                new ReadOnlySpan<float>(x + (long)r * cols, cols).CopyTo(new Span<float>(row + Gemv.Pad + shift, cols));
            }
            ChunkedGemvJob* chunks = stackalloc ChunkedGemvJob[w.Length];
            for (int i = 0; i < w.Length; i++)
                chunks[i] = new ChunkedGemvJob
                {
                    Weight = (float*)w[i].Data, InDim = cols, OutDim = w[i].Rows, Input = padded + shift, Stride = stride,
                    Output = (float*)y[i], Rows = rows, Accumulate = accumulate,
                };
            RunJobs(pool, chunks, w, grain, options.Stealing, parallel);
            return;
        }

        float* laid = x;
        if (w[0].Format != WeightFormat.F32 && level != SimdLevel.Scalar)
        {
            laid = Scratch.Get(ScratchSlot.PreparedInput, (long)rows * cols);
            for (int r = 0; r < rows; r++)
                LaneLayout.Arrange(x + (long)r * cols, laid + (long)r * cols, cols, level, elementSize);
        }

        switch (w[0].Format)
        {
            case WeightFormat.F32: RunGemv<F32Weights>(pool, level, laid, w, y, rows, accumulate, options, grain, parallel); break;
            case WeightFormat.BF16: RunGemv<BF16Weights>(pool, level, laid, w, y, rows, accumulate, options, grain, parallel); break;
            case WeightFormat.F16: RunGemv<F16Weights>(pool, level, laid, w, y, rows, accumulate, options, grain, parallel); break;
            case WeightFormat.Int8: RunGemv<Int8Weights>(pool, level, laid, w, y, rows, accumulate, options, grain, parallel); break;
            default: throw new NotSupportedException($"Weight format {w[0].Format} is not one the CPU backend multiplies.");
        }
    }

    private static void RunGemv<TFormat>(WorkerPool pool, SimdLevel level, float* laid, ReadOnlySpan<WeightView> w,
        ReadOnlySpan<nint> y, int rows, bool accumulate, KernelChoices options, int grain, bool parallel) where TFormat : IWeightFormat
    {
        GemvJob<TFormat>* jobs = stackalloc GemvJob<TFormat>[w.Length];
        for (int i = 0; i < w.Length; i++)
            jobs[i] = new GemvJob<TFormat>
            {
                Weight = w[i], Input = laid, Output = (float*)y[i], Rows = rows, Accumulate = accumulate, Level = level,
                MultiRow = options.MultiRowGemv,
            };
        RunJobs(pool, jobs, w, grain, options.Stealing, parallel);
    }

    /// <summary>
    /// Whether a GEMV of <paramref name="bytes"/> of weights goes to the pool (below <see cref="ParallelMinBytes"/> it
    /// runs on the calling thread). On the pool each thread streams one contiguous run of weight rows (splitting finer
    /// restarts the memory streams and measured slower), and a thread that finishes first steals the back half of what
    /// is left (<see cref="WorkerPool.RunRanges"/>), since the cores' shares of bandwidth differ from call to call and a
    /// worker wakes after the caller (see docs/BENCHMARKS.md, "Measurements behind kernel choices").
    /// </summary>
    internal static bool GemvParallel(long bytes) => bytes >= ParallelMinBytes;

    /// <summary>Output rows a GEMV thread claims at a time: at least 32 KB of weights (16 F32 rows at d_model 512, 64
    /// int8 rows), a multiple of 16 rows, so that claims stay rare and the two-row chunk kernel's pairs stay whole.</summary>
    internal static int GemvGrain(long rowBytes) => (int)Math.Clamp((32 * 1024 / Math.Max(rowBytes, 1) + 15) & ~15L, 16, 1024);

    private static void RunGemm(WorkerPool pool, SimdLevel level, float* x, ReadOnlySpan<WeightView> w, ReadOnlySpan<nint> y, int rows,
        bool accumulate, bool steal)
    {
        switch (level)
        {
            case SimdLevel.Vector512: RunGemm<MicroKernel512>(pool, x, w, y, rows, accumulate, steal); break;
            case SimdLevel.Vector256: RunGemm<MicroKernel256>(pool, x, w, y, rows, accumulate, steal); break;
            case SimdLevel.Vector128: RunGemm<MicroKernel128>(pool, x, w, y, rows, accumulate, steal); break;
            default: RunGemm<MicroKernelScalar>(pool, x, w, y, rows, accumulate, steal); break;
        }
    }

    private static void RunGemm<TKernel>(WorkerPool pool, float* x, ReadOnlySpan<WeightView> w, ReadOnlySpan<nint> y, int rows,
        bool accumulate, bool steal) where TKernel : IMicroKernel
    {
        int cols = w[0].Cols;
        float* packedA = Scratch.Get(ScratchSlot.PreparedInput, Gemm.PackedASize(rows, cols, TKernel.MR));
        int strips = (rows + TKernel.MR - 1) / TKernel.MR;
        int stripsPerItem = Math.Max(1, (strips + pool.Threads - 1) / pool.Threads);
        var pack = new PackAJob { Input = x, Packed = packedA, Rows = rows, InDim = cols, MR = TKernel.MR, Strips = strips, PerItem = stripsPerItem };
        pool.Run(ref pack, (strips + stripsPerItem - 1) / stripsPerItem);
        GemmJob<TKernel>* jobs = stackalloc GemmJob<TKernel>[w.Length];
        for (int i = 0; i < w.Length; i++)
            jobs[i] = new GemmJob<TKernel> { Weight = w[i], Input = packedA, Output = (float*)y[i], Rows = rows, Accumulate = accumulate };
        int panels = 0;
        foreach (WeightView view in w) panels += (view.Rows + TKernel.NR - 1) / TKernel.NR;
        RunJobs(pool, jobs, w, Gemm.ClaimPanels(panels, pool.Threads) * TKernel.NR, steal, parallel: true);
    }

    private static void RunGemmInPlace(WorkerPool pool, float* x, ReadOnlySpan<WeightView> w, ReadOnlySpan<nint> y, int rows,
        bool accumulate, bool steal)
    {
        int cols = w[0].Cols;
        float* packed = Scratch.Get(ScratchSlot.PreparedInput, GemmInPlace.PackedSize(rows, cols));
        var pack = new PackATJob { Input = x, Packed = packed, Rows = rows, InDim = cols };
        pool.Run(ref pack, (cols + Gemm.KC - 1) / Gemm.KC);
        InPlaceGemmJob* jobs = stackalloc InPlaceGemmJob[w.Length];
        for (int i = 0; i < w.Length; i++)
            jobs[i] = new InPlaceGemmJob
            {
                Weight = (float*)w[i].Data, InDim = cols, OutDim = w[i].Rows, Input = packed, Output = (float*)y[i], Rows = rows,
                Accumulate = accumulate,
            };
        RunJobs(pool, jobs, w, Gemm.GrainPanels * GemmInPlace.NW, steal, parallel: true);
    }

    /// <summary>One item: k slab <c>index</c> of A^T for <see cref="GemmInPlace"/>.</summary>
    private struct PackATJob : IParallelJob
    {
        public float* Input, Packed;
        public int Rows, InDim;

        public void Execute(int index) => GemmInPlace.PackSlab(Input, Rows, InDim, Packed, index);
    }

    /// <summary>Output columns [first, end) of every row, <see cref="GemmInPlace"/>.</summary>
    private struct InPlaceGemmJob : IRangeJob
    {
        public float* Weight, Input, Output;
        public int InDim, OutDim, Rows;
        public bool Accumulate;

        public void Execute(int first, int end) => GemmInPlace.Run(Weight, InDim, OutDim, Input, Output, Rows, first, end, Accumulate);
    }

    /// <summary>Output rows [first, end) of every input row.</summary>
    private struct GemvJob<TFormat> : IRangeJob where TFormat : IWeightFormat
    {
        public WeightView Weight;
        public float* Input, Output;
        public int Rows;
        public bool Accumulate, MultiRow;
        public SimdLevel Level;

        public void Execute(int first, int end) =>
            Gemv.Run<TFormat>((byte*)Weight.Data, Weight.Cols, Weight.Rows, Weight.Scales, Input, Rows, Output,
                first, end, Accumulate, Level, MultiRow);
    }

    /// <summary>True when no element of x is NaN or infinite (x - x is 0 exactly for finite x, NaN otherwise).</summary>
    private static bool AllFinite(float* x, long length)
    {
        long i = 0;
        Vector256<float> acc = Vector256<float>.Zero;
        for (; i <= length - 8; i += 8)
        {
            Vector256<float> v = Vector256.Load(x + i);
            acc += v - v;
        }
        float tail = 0;
        for (; i < length; i++) tail += x[i] - x[i];
        return Vector256.Sum(acc) == 0 && tail == 0;
    }

    /// <summary>Output rows [first, end) of <see cref="Gemv.RunF32Chunks"/>.</summary>
    private struct ChunkedGemvJob : IRangeJob
    {
        public float* Weight, Input, Output;
        public int InDim, OutDim, Stride, Rows;
        public bool Accumulate;

        public void Execute(int first, int end) =>
            Gemv.RunF32Chunks(Weight, InDim, OutDim, Input, Stride, Rows, Output, first, end, Accumulate);
    }

    /// <summary>One item: strips [index * PerItem, +PerItem) of A packed for the GEMM.</summary>
    private struct PackAJob : IParallelJob
    {
        public float* Input, Packed;
        public int Rows, InDim, MR, Strips, PerItem;

        public void Execute(int index)
        {
            int first = index * PerItem;
            Gemm.PackA(Input, Rows, InDim, MR, Packed, first, Math.Min(first + PerItem, Strips));
        }
    }

    /// <summary>Output columns [first, end) (whole panels) of every row; Input is packed A.</summary>
    private struct GemmJob<TKernel> : IRangeJob where TKernel : IMicroKernel
    {
        public WeightView Weight;
        public float* Input, Output;
        public int Rows;
        public bool Accumulate;

        public void Execute(int first, int end) => Gemm.Run<TKernel>(Weight, Input, Output, Rows, first, end, Accumulate);
    }
}
