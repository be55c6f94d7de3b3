// The metric reference values (tests/fixtures/metrics/metric-cases.json, found by walking up from the test binary)
// and the comparison rule: the same double where the operations are the same, 1e-12 relative where libm may differ.
using System.Text.Json;

namespace ManagedT5.Evaluation.Tests;

/// <summary>Loads metric-cases.json once and hands out its cases.</summary>
public static class MetricFixtures
{
    static readonly Lazy<JsonElement> Root = new(() =>
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, "tests", "fixtures", "metrics", "metric-cases.json");
            if (File.Exists(candidate)) return JsonDocument.Parse(File.ReadAllBytes(candidate)).RootElement;
        }
        throw new FileNotFoundException("tests/fixtures/metrics/metric-cases.json not found above " + AppContext.BaseDirectory);
    });

    /// <summary>The whole fixture file.</summary>
    public static JsonElement Json => Root.Value;

    /// <summary>Every case, by id.</summary>
    public static IEnumerable<JsonElement> Cases => Json.GetProperty("cases").EnumerateArray();

    /// <summary>One case by id.</summary>
    public static JsonElement Case(string id) => Cases.Single(c => c.GetProperty("id").GetString() == id);

    /// <summary>xunit data: every case id.</summary>
    public static TheoryData<string> CaseIds()
    {
        var data = new TheoryData<string>();
        foreach (var c in Cases) data.Add(c.GetProperty("id").GetString()!);
        return data;
    }

    /// <summary>The six BLEU configurations of the fixture (key, tokenizer, lowercase).</summary>
    public static readonly (string Key, BleuTokenize Tokenize, bool Lowercase)[] BleuConfigs =
    [
        ("13a", BleuTokenize.Mteval13a, false), ("intl", BleuTokenize.Intl, false), ("zh", BleuTokenize.Zh, false),
        ("char", BleuTokenize.Char, false), ("none", BleuTokenize.None, false), ("13a_lowercase", BleuTokenize.Mteval13a, true),
    ];

    public static string Hyp(JsonElement c) => c.GetProperty("hyp").GetString()!;
    public static string[] Refs(JsonElement c) => c.GetProperty("refs").EnumerateArray().Select(r => r.GetString()!).ToArray();
    public static double D(JsonElement e, string name) => e.GetProperty(name).GetDouble();
    public static long[] Longs(JsonElement e, string name) => e.GetProperty(name).EnumerateArray().Select(x => x.GetInt64()).ToArray();
    public static double[] Doubles(JsonElement e, string name) => e.GetProperty(name).EnumerateArray().Select(x => x.GetDouble()).ToArray();

    /// <summary>The same double, bit for bit.</summary>
    public static void Exact(double expected, double actual, string what)
    {
        if (expected.Equals(actual)) return;
        Assert.Fail($"{what}: expected {expected:R}, got {actual:R}");
    }

    /// <summary>
    /// For values that pass through exp/log (BLEU score and brevity penalty): the same double on Linux, where .NET
    /// and CPython both call glibc's exp and log; within 1e-12 relative elsewhere (another libm), as the fixture's
    /// README allows.
    /// </summary>
    public static void ExactViaLibm(double expected, double actual, string what)
    {
        if (OperatingSystem.IsLinux()) { Exact(expected, actual, what); return; }
        double scale = Math.Max(Math.Abs(expected), double.Epsilon);
        if (Math.Abs(expected - actual) / scale <= 1e-12) return;
        Assert.Fail($"{what}: expected {expected:R}, got {actual:R} (more than 1e-12 relative)");
    }
}
