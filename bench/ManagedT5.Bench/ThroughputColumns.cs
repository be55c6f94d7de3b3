// BenchmarkDotNet columns that turn a benchmark's mean time into GB/s of weights streamed and GFLOP/s, for
// benchmarks that say how much work one operation does (IWorkload). The work is computed from the parameters alone.
using System.Reflection;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace ManagedT5.Bench;

/// <summary>A benchmark whose work per operation follows from its [Params].</summary>
public interface IWorkload
{
    /// <summary>Bytes one operation must read from memory (weights streamed), or 0.</summary>
    double BytesPerOperation { get; }

    /// <summary>Floating-point operations per operation (an FMA counts 2), or 0.</summary>
    double FlopsPerOperation { get; }
}

/// <summary>GB/s or GFLOP/s from the mean time of a benchmark implementing <see cref="IWorkload"/>.</summary>
public sealed class ThroughputColumn(bool bytes) : IColumn
{
    public static readonly ThroughputColumn GigabytesPerSecond = new(bytes: true);
    public static readonly ThroughputColumn GigaflopsPerSecond = new(bytes: false);

    public string Id => ColumnName;
    public string ColumnName => bytes ? "GB/s" : "GFLOP/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => bytes ? "Weight bytes streamed per second (10^9)" : "Floating-point operations per second (10^9, FMA = 2)";

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public bool IsAvailable(Summary summary) => true;
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => GetValue(summary, benchmarkCase);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase)
    {
        double? meanNs = summary[benchmarkCase]?.ResultStatistics?.Mean;
        if (meanNs is null || Activator.CreateInstance(benchmarkCase.Descriptor.Type) is not IWorkload workload) return "-";
        foreach (var parameter in benchmarkCase.Parameters.Items)
        {
            const BindingFlags flags = BindingFlags.Public | BindingFlags.Instance;
            Type type = benchmarkCase.Descriptor.Type;
            if (type.GetProperty(parameter.Name, flags) is { CanWrite: true } property) property.SetValue(workload, parameter.Value);
            else type.GetField(parameter.Name, flags)?.SetValue(workload, parameter.Value);
        }
        double work = bytes ? workload.BytesPerOperation : workload.FlopsPerOperation;
        return work <= 0 ? "-" : (work / meanNs.Value).ToString("F1"); // per ns = 10^9 per s
    }
}
