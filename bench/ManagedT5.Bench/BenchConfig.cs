// BenchmarkDotNet settings shared by every kernel benchmark: a short job (the machine is small and shared), the
// ratio-to-baseline column, and memory diagnostics (the token loop must allocate nothing).
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;

namespace ManagedT5.Bench;

/// <summary>The benchmark configuration.</summary>
public static class BenchConfig
{
    public static IConfig Create() => DefaultConfig.Instance
        .AddJob(Job.ShortRun.WithWarmupCount(2).WithIterationCount(5))
        .AddDiagnoser(MemoryDiagnoser.Default)
        .WithOptions(ConfigOptions.JoinSummary);
}
