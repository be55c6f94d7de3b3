// Linear (x W^T, no bias) for the CPU backend: picks GEMV for a few rows (bandwidth-bound decode) or the packed
// GEMM for many (compute-bound encoder), picks the weight format and SIMD width, and splits the output across the
// worker pool. Every output element is computed by one thread with the same code, so thread count never changes
// the result.
using System.Runtime.Intrinsics;

namespace ManagedT5.Kernels.Cpu;

/// <summary>
/// The kernel choices of <see cref="LinearKernel"/>, per backend. The defaults are the measured best on the development
/// machine; tests and the decode benchmark (bench --quick-decode) set others on their own backend to compare paths.
/// </summary>
internal sealed record LinearOptions
{
    /// <summary>The defaults.</summary>
    public static readonly LinearOptions Default = new();

    /// <summary>Up to this many F32 rows the GEMV streams the weight once for all rows; above, the GEMM packs it. For
    /// narrow formats (BF16/F16/int8, <see cref="NarrowGemvMaxRows"/>) the GEMV's eight-row kernel stays ahead of the
    /// GEMM (which widens every panel) up to eight rows; for F32 at eight rows the two traded places from run to run
    /// (bench --quick-decode), so the simpler split stays.</summary>
    public int GemvMaxRows { get; init; } = 4;

    /// <summary>See <see cref="GemvMaxRows"/>.</summary>
    public int NarrowGemvMaxRows { get; init; } = 8;

    /// <summary>The row limit of the GEMV for F32 weights on AVX-512 where the aligned-chunk kernels take them (see
    /// LinearKernel.UsesAlignedChunks; they read two weight rows against eight x rows): at eight rows ~1.5x faster than
    /// the GEMM, which packs the whole weight for them (bench --quick-decode, "at +8 B" lines).</summary>
    public int ChunkedF32GemvMaxRows { get; init; } = 8;

    /// <summary>Whether 3-8 rows take the multi-row GEMV kernels (else one dot per row).</summary>
    public bool MultiRowGemv { get; init; } = true;

    /// <summary>Whether F32 weights that start mid cache line take the aligned-chunk GEMV.</summary>
    public bool AlignedChunks { get; init; } = true;

    /// <summary>Whether int8 weights take the VNNI kernels where the CPU has them (Int8Gemm: the GEMM for many rows,
    /// its GEMV form for a few; both quantize the activations per row), else widening to fp32.</summary>
    public bool Int8Vnni { get; init; } = true;

    /// <summary>Whether F32 weights take <see cref="GemmInPlace"/> for many rows on AVX-512 (else the packed GEMM): 1.1-1.3x
    /// the packed GEMM's GFLOP/s at encoder shapes, weights 8 bytes past a cache line as from a file (quick-gemm).</summary>
    public bool InPlaceF32Gemm { get; init; } = true;

    /// <summary>Whether a thread that finishes its share of a GEMV's output rows or a GEMM's output columns takes over
    /// half of what another has left (<see cref="WorkerPool.RunRanges"/>), else waits for it.</summary>
    public bool Stealing { get; init; } = true;

    /// <summary>Whether <paramref name="rows"/> rows against <paramref name="weight"/> take the GEMV.</summary>
    public bool UsesGemv(CpuWeight weight, int rows) =>
        rows <= (weight.Format == WeightFormat.F32 ? GemvMaxRows : NarrowGemvMaxRows);
}

/// <summary>Dispatch of <see cref="IBackend.Linear"/>.</summary>
internal static unsafe class LinearKernel
{
    /// <summary>Below this many weight bytes a GEMV runs on the calling thread (waking workers costs more).</summary>
    private const long ParallelMinBytes = 64 * 1024;

    /// <summary>y (rows, out) (+)= x (rows, in) W^T.</summary>
    public static void Run(WorkerPool pool, SimdLevel level, LinearOptions options, float* x, CpuWeight weight, float* y, int rows,
        bool accumulate)
    {
        fixed (float* scales = weight.Scales)
        {
            var view = new WeightView(weight.Data, weight.Format, weight.Rows, weight.Cols, scales);
            bool chunked = UsesAlignedChunks(level, options, view, rows);
            bool gemv = chunked ? rows <= options.ChunkedF32GemvMaxRows : options.UsesGemv(weight, rows);
            // int8 weights with VNNI: activations quantized per row and multiplied in integers (Int8Gemm; the GEMM
            // ~0.4x the fp32 GEMM's time). Non-finite activations would quantize to garbage, so they take the
            // widening kernels and propagate as the reference does.
            if (weight.Format == WeightFormat.Int8 && options.Int8Vnni && Int8Gemm.IsSupported(level)
                && AllFinite(x, (long)rows * weight.Cols))
            {
                if (gemv) Int8Gemm.RunGemv(pool, level, x, view, y, rows, accumulate, options.Stealing);
                else Int8Gemm.Run(pool, level, x, view, y, rows, accumulate, options.Stealing);
            }
            else if (gemv) RunGemv(pool, level, options, chunked, x, view, y, rows, accumulate);
            else if (weight.Format == WeightFormat.F32 && level == SimdLevel.Vector512 && options.InPlaceF32Gemm && GemmInPlace.IsSupported
                     && GemmInPlace.Fits(rows))
                RunGemmInPlace(pool, x, view, y, rows, accumulate, options.Stealing);
            else RunGemm(pool, level, x, view, y, rows, accumulate, options.Stealing);
        }
    }

    /// <summary>Whether F32 weights take <see cref="Gemv.RunF32Chunks"/> (AVX-512): for one or two rows when the weight
    /// starts mid cache line, and for three or more rows wherever it starts, since the multi-row chunk kernels (two
    /// weight rows against eight x rows) beat both the plain multi-row GEMV and the GEMM.</summary>
    private static bool UsesAlignedChunks(SimdLevel level, LinearOptions options, in WeightView w, int rows) =>
        w.Format == WeightFormat.F32 && level == SimdLevel.Vector512 && Vector512.IsHardwareAccelerated && options.AlignedChunks
        && ((nint)w.Data & 3) == 0 && (rows <= 2 ? ((nint)w.Data & 63) != 0 : options.MultiRowGemv);

    private static void RunGemv(WorkerPool pool, SimdLevel level, LinearOptions options, bool chunked, float* x, in WeightView w,
        float* y, int rows, bool accumulate)
    {
        int elementSize = CpuWeight.BytesPerElement(w.Format);
        long bytes = (long)w.Rows * w.Cols * elementSize;
        if (chunked)
        {
            // x rows padded with zeros. When every weight row starts at the same offset in its cache line (cols a
            // multiple of 16) x is shifted by that offset too, so the x loads are aligned like the weight chunks.
            int shift = w.Cols % 16 == 0 ? (int)(((nint)w.Data & 63) >> 2) : 0;
            int stride = (w.Cols + Gemv.Pad + 32 + 15) & ~15;
            float* padded = Scratch.Get(ScratchSlot.LaneInput, (long)rows * stride);
            for (int r = 0; r < rows; r++)
            {
                float* row = padded + (long)r * stride;
                new Span<float>(row, stride).Clear();
                new ReadOnlySpan<float>(x + (long)r * w.Cols, w.Cols).CopyTo(new Span<float>(row + Gemv.Pad + shift, w.Cols));
            }
            var chunks = new ChunkedGemvJob
            {
                Weight = (float*)w.Data, InDim = w.Cols, OutDim = w.Rows, Input = padded + shift, Stride = stride, Output = y,
                Rows = rows, Accumulate = accumulate,
            };
            RunGemvRows(pool, ref chunks, w.Rows, bytes, options.Stealing);
            return;
        }

        float* laid = x;
        if (w.Format != WeightFormat.F32 && level != SimdLevel.Scalar)
        {
            laid = Scratch.Get(ScratchSlot.LaneInput, (long)rows * w.Cols);
            for (int r = 0; r < rows; r++)
                LaneLayout.Arrange(x + (long)r * w.Cols, laid + (long)r * w.Cols, w.Cols, level, elementSize);
        }

        switch (w.Format)
        {
            case WeightFormat.F32: RunGemv<F32Weights>(pool, level, laid, w, y, rows, accumulate, bytes, options); break;
            case WeightFormat.BF16: RunGemv<BF16Weights>(pool, level, laid, w, y, rows, accumulate, bytes, options); break;
            case WeightFormat.F16: RunGemv<F16Weights>(pool, level, laid, w, y, rows, accumulate, bytes, options); break;
            case WeightFormat.Int8: RunGemv<Int8Weights>(pool, level, laid, w, y, rows, accumulate, bytes, options); break;
            default: throw new NotSupportedException($"Weight format {w.Format} is not one the CPU backend multiplies.");
        }
    }

    private static void RunGemv<TFormat>(WorkerPool pool, SimdLevel level, float* laid, in WeightView w, float* y, int rows,
        bool accumulate, long bytes, LinearOptions options) where TFormat : IWeightFormat
    {
        var job = new GemvJob<TFormat>
        {
            Weight = w, Input = laid, Output = y, Rows = rows, Accumulate = accumulate, Level = level, MultiRow = options.MultiRowGemv,
        };
        RunGemvRows(pool, ref job, w.Rows, bytes, options.Stealing);
    }

    /// <summary>
    /// Runs a GEMV's output rows on the pool, or on the calling thread below <see cref="ParallelMinBytes"/> of weights.
    /// Each thread streams one contiguous run of weight rows (splitting finer restarts the memory streams: eight
    /// claimed items per step measured ~10% slower than two); a thread that finishes first steals the back half of
    /// what is left (<see cref="WorkerPool.RunRanges"/>), since on a 2-core VM the two cores' shares of bandwidth
    /// differ from call to call and a worker wakes ~0.5 µs after the caller.
    /// </summary>
    internal static void RunGemvRows<TJob>(WorkerPool pool, ref TJob job, int outDim, long bytes, bool steal) where TJob : unmanaged, IRangeJob
    {
        if (bytes < ParallelMinBytes) job.Execute(0, outDim);
        else pool.RunRanges(ref job, outDim, GemvGrain(bytes / Math.Max(outDim, 1)), steal);
    }

    /// <summary>Output rows a GEMV thread claims at a time: at least 32 KB of weights (16 F32 rows at d_model 512, 64
    /// int8 rows), a multiple of 16 rows, so that claims stay rare and the two-row chunk kernel's pairs stay whole.</summary>
    private static int GemvGrain(long rowBytes) => (int)Math.Clamp((32 * 1024 / Math.Max(rowBytes, 1) + 15) & ~15L, 16, 1024);

    private static void RunGemm(WorkerPool pool, SimdLevel level, float* x, in WeightView w, float* y, int rows, bool accumulate,
        bool steal)
    {
        switch (level)
        {
            case SimdLevel.Vector512: RunGemm<MicroKernel512>(pool, x, w, y, rows, accumulate, steal); break;
            case SimdLevel.Vector256: RunGemm<MicroKernel256>(pool, x, w, y, rows, accumulate, steal); break;
            case SimdLevel.Vector128: RunGemm<MicroKernel128>(pool, x, w, y, rows, accumulate, steal); break;
            default: RunGemm<MicroKernelScalar>(pool, x, w, y, rows, accumulate, steal); break;
        }
    }

    private static void RunGemm<TKernel>(WorkerPool pool, float* x, in WeightView w, float* y, int rows, bool accumulate, bool steal)
        where TKernel : IMicroKernel
    {
        float* packedA = Scratch.Get(ScratchSlot.LaneInput, Gemm.PackedASize(rows, w.Cols, TKernel.MR));
        int strips = (rows + TKernel.MR - 1) / TKernel.MR;
        int stripsPerItem = Math.Max(1, (strips + pool.Threads - 1) / pool.Threads);
        var pack = new PackAJob { Input = x, Packed = packedA, Rows = rows, InDim = w.Cols, MR = TKernel.MR, Strips = strips, PerItem = stripsPerItem };
        pool.Run(ref pack, (strips + stripsPerItem - 1) / stripsPerItem);
        var job = new GemmJob<TKernel> { Weight = w, Input = packedA, Output = y, Rows = rows, Accumulate = accumulate };
        pool.RunRanges(ref job, w.Rows, Gemm.GrainPanels * TKernel.NR, steal);
    }

    private static void RunGemmInPlace(WorkerPool pool, float* x, in WeightView w, float* y, int rows, bool accumulate, bool steal)
    {
        float* packed = Scratch.Get(ScratchSlot.LaneInput, GemmInPlace.PackedSize(rows, w.Cols));
        var pack = new PackATJob { Input = x, Packed = packed, Rows = rows, InDim = w.Cols };
        pool.Run(ref pack, (w.Cols + Gemm.KC - 1) / Gemm.KC);
        var job = new InPlaceGemmJob { Weight = (float*)w.Data, InDim = w.Cols, OutDim = w.Rows, Input = packed, Output = y, Rows = rows, Accumulate = accumulate };
        pool.RunRanges(ref job, w.Rows, Gemm.GrainPanels * GemmInPlace.NW, steal);
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
