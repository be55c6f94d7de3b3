// EncodeBenchmarks: T5Tokenizer encode throughput on a long English text and a mixed multilingual text,
// as one document and line by line (short prompts), with allocations. Same texts as bench/tokenizer_peer.py.

using System.Text;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using ManagedT5.Tokenizer;

namespace ManagedT5.Bench.Tokenizer;

[MemoryDiagnoser]
[Config(typeof(ThroughputConfig))]
public class EncodeBenchmarks
{
    /// <summary>Each text file is repeated to at least this many UTF-8 bytes (tokenizer_peer.py uses the same rule).</summary>
    public const int MinBytes = 1 << 20;

    private T5Tokenizer _tokenizer = null!;
    private string _document = "";
    private string[] _lines = [];
    private int[] _buffer = [];

    [Params("english", "multilingual")]
    public string Text { get; set; } = "";

    [GlobalSetup]
    public void Setup()
    {
        _tokenizer = T5Tokenizer.FromFile(Path.Combine(AppContext.BaseDirectory, "spiece.model"));
        _document = LoadDocument(Text);
        _lines = _document.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        _buffer = new int[_document.Length + 16];
    }

    /// <summary>The text file repeated to at least <see cref="MinBytes"/> UTF-8 bytes.</summary>
    public static string LoadDocument(string name)
    {
        string unit = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "texts", name + ".txt"));
        var sb = new StringBuilder();
        int bytes = 0;
        while (bytes < MinBytes)
        {
            sb.Append(unit);
            bytes += Encoding.UTF8.GetByteCount(unit);
        }
        return sb.ToString();
    }

    /// <summary>The whole ~1 MB text in one call, returning a new id array (EncodeRaw(string)).</summary>
    [Benchmark(Baseline = true)]
    public int Document() => _tokenizer.EncodeRaw(_document).Length;

    /// <summary>Each line in its own call, into a reused buffer (the allocation-free span API).</summary>
    [Benchmark]
    public int LinesIntoBuffer()
    {
        int total = 0;
        foreach (string line in _lines) total += _tokenizer.EncodeRaw(line, _buffer);
        return total;
    }

    /// <summary>Each line in its own call, T5-style (sentinels, &lt;/s&gt;), returning arrays (Encode(string)).</summary>
    [Benchmark]
    public int LinesEncode()
    {
        int total = 0;
        foreach (string line in _lines) total += _tokenizer.Encode(line).Length;
        return total;
    }
}

/// <summary>A short job (the machines are small and shared) plus an MB/s column.</summary>
public sealed class ThroughputConfig : ManualConfig
{
    public ThroughputConfig()
    {
        AddJob(Job.Default.WithLaunchCount(1).WithWarmupCount(3).WithIterationCount(15));
        AddColumn(StatisticColumn.Min);
        AddColumn(new MegabytesPerSecondColumn(fromBest: false), new MegabytesPerSecondColumn(fromBest: true));
    }
}

/// <summary>UTF-8 megabytes (10^6 bytes) of input encoded per second, from the mean or the best (min) time.</summary>
/// <remarks>The best time is what tokenizer_peer.py reports too, and the fairer figure on a busy machine.</remarks>
public sealed class MegabytesPerSecondColumn(bool fromBest) : IColumn
{
    private static readonly Dictionary<string, double> s_megabytes = [];

    public string Id => nameof(MegabytesPerSecondColumn) + fromBest;
    public string ColumnName => fromBest ? "MB/s best" : "MB/s mean";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => fromBest ? 1 : 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => $"UTF-8 MB (10^6 bytes) of input per second, from the {(fromBest ? "min" : "mean")} time";
    public bool IsAvailable(Summary summary) => true;
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var report = summary[benchmarkCase];
        if (report?.ResultStatistics is not { } stats) return "-";
        string text = (string)benchmarkCase.Parameters["Text"];
        if (!s_megabytes.TryGetValue(text, out double megabytes))
            s_megabytes[text] = megabytes = Encoding.UTF8.GetByteCount(EncodeBenchmarks.LoadDocument(text)) / 1e6;
        double nanoseconds = fromBest ? stats.Min : stats.Mean;
        return (megabytes / (nanoseconds / 1e9)).ToString("F1", System.Globalization.CultureInfo.InvariantCulture);
    }
}
