// The benchmark seam of the CPU Linear: switches that send LinearKernel down an alternative path, so an A/B benchmark
// (bench --quick-decode, --quick-gemm, Int8GemmBenchmarks) or a kernel test can time or check a path production does
// not take. Passed explicitly (CpuBackend's internal Linear/Linears overloads, LinearKernel.Run); production passes
// Production, whose row limits are LinearKernel's constants and whose switches are all on.
namespace ManagedT5.Kernels.Cpu;

/// <summary>Which paths <see cref="LinearKernel"/> may take: <see cref="Production"/> for production, others only in
/// benchmarks and tests that compare paths.</summary>
internal sealed record KernelChoices
{
    /// <summary>What production runs: every switch on, the row limits of <see cref="LinearKernel"/>.</summary>
    public static readonly KernelChoices Production = new();

    /// <summary>Most F32 rows the GEMV takes (<see cref="LinearKernel.GemvMaxRows"/>); 1 sends more to the GEMM.</summary>
    public int GemvMaxRows { get; init; } = LinearKernel.GemvMaxRows;

    /// <summary>Most BF16/F16/int8 rows the GEMV takes (<see cref="LinearKernel.NarrowGemvMaxRows"/>).</summary>
    public int NarrowGemvMaxRows { get; init; } = LinearKernel.NarrowGemvMaxRows;

    /// <summary>Most rows the aligned-chunk F32 GEMV takes (<see cref="LinearKernel.ChunkedF32GemvMaxRows"/>).</summary>
    public int ChunkedF32GemvMaxRows { get; init; } = LinearKernel.ChunkedF32GemvMaxRows;

    /// <summary>Most F32 rows the GEMV takes in groups of <see cref="GemvMaxRows"/> where the in-place GEMM does not apply
    /// (<see cref="LinearKernel.GroupedGemvMaxRows"/>); at or below <see cref="GemvMaxRows"/> it changes nothing.</summary>
    public int GroupedGemvMaxRows { get; init; } = LinearKernel.GroupedGemvMaxRows;

    /// <summary>Rows per group of that grouped GEMV (the multi-row GEMV kernels take up to eight).</summary>
    public int GroupedGemvRows { get; init; } = 8;

    /// <summary>Whether 3-8 rows take the multi-row GEMV kernels (else one dot per row).</summary>
    public bool MultiRowGemv { get; init; } = true;

    /// <summary>Whether F32 weights that start mid cache line take the aligned-chunk GEMV.</summary>
    public bool AlignedChunks { get; init; } = true;

    /// <summary>Whether int8 weights take the integer kernels where the CPU has them (Int8Gemm: AVX-VNNI, else AVX2
    /// VPMADDUBSW + VPMADDWD; the GEMM for many rows, the GEMV for few); false widens int8 weights to fp32 in the
    /// kernels, for A/B.</summary>
    public bool Int8Integer { get; init; } = true;

    /// <summary>Whether F32 weights take <see cref="GemmInPlace"/> for many rows on AVX-512 (else the packed GEMM).</summary>
    public bool InPlaceF32Gemm { get; init; } = true;

    /// <summary>Whether a thread that finishes its share of a GEMV's output rows or a GEMM's output columns takes over
    /// half of what another has left (<see cref="WorkerPool.RunRanges"/>), else waits for it.</summary>
    public bool Stealing { get; init; } = true;

    /// <summary>Whether <paramref name="rows"/> rows against a weight in <paramref name="format"/> take the GEMV.</summary>
    public bool UsesGemv(WeightFormat format, int rows) => rows <= (format == WeightFormat.F32 ? GemvMaxRows : NarrowGemvMaxRows);
}
