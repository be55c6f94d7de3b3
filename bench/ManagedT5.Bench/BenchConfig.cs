// BenchmarkDotNet settings shared by every kernel benchmark: a short job (the machine is small and shared), the
// ratio-to-baseline column (one summary per class, so each ratio is to its own reference), GB/s and GFLOP/s columns,
// and memory diagnostics (the token loop must allocate nothing).
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;

namespace ManagedT5.Bench;

/// <summary>The benchmark configuration.</summary>
public static class BenchConfig
{
    public static IConfig Create() => DefaultConfig.Instance
        .AddJob(Job.ShortRun.WithWarmupCount(3).WithIterationCount(7))
        .AddColumn(ThroughputColumn.GigabytesPerSecond, ThroughputColumn.GigaflopsPerSecond)
        .AddDiagnoser(MemoryDiagnoser.Default);
}
