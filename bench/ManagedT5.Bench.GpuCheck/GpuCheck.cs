// Runs the parity test cases of one backend in process with xunit's own discoverer and executor (no test host, no
// SDK): the HF-fixture parity classes of tests/ManagedT5.Tests (backend chosen by MANAGEDT5_PARITY_BACKEND, which
// the suite reads) and the device cases of tests/ManagedT5.Kernels.Ilgpu.Tests (the IlgpuDeviceKind argument).
using System.Reflection;
using System.Text.Json;
using System.Text.RegularExpressions;
using ManagedT5.Kernels.Ilgpu;
using ManagedT5.Kernels.Ilgpu.Tests;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace ManagedT5.Bench.GpuCheck;

/// <summary>The outcome of one run: counts over both suites, the worst error the cases reported.</summary>
public sealed record GpuCheckSummary(string Backend, string Device, bool Quick, int Total, int Passed, int Failed, int Skipped,
    double? WorstRelError, double? WorstBeamScoreDiff, double Seconds, IReadOnlyList<SuiteSummary> Suites,
    IReadOnlyList<string> SkipReasons, IReadOnlyList<string> Failures);

/// <summary>Counts of one suite.</summary>
public sealed record SuiteSummary(string Name, int Total, int Passed, int Failed, int Skipped);

/// <summary>Selects and runs the cases.</summary>
public static partial class GpuCheck
{
    /// <summary>The backends a run can name (those of the HF parity suite).</summary>
    public static readonly string[] BackendNames = ["cuda", "opencl", "ilgpu-cpu", "cpu", "reference"];

    /// <summary>The HF-fixture parity classes of tests/ManagedT5.Tests: every case of them that names the backend runs.
    /// A test there that takes a backend but is not listed must be in <see cref="NotRun"/> with the reason (a test in
    /// tests/ManagedT5.GpuCheck.Tests checks that nothing is dropped silently).</summary>
    public static readonly Type[] HfParityClasses = [typeof(ManagedT5.Tests.ForwardParityTests), typeof(ManagedT5.Tests.GenerationParityTests)];

    /// <summary>Tests of tests/ManagedT5.Tests that take a backend name and are not run here, with why.</summary>
    public static readonly Dictionary<string, string> NotRun = new()
    {
        ["ManagedT5.Tests.AdapterInferenceTests.MergedAtLoadMatchesPeftLogits"] =
            "PEFT adapter parity, written for the cpu and reference backends only (InlineData), not the HF-fixture suite",
    };

    private const string HfSuite = "hf-parity", IlgpuSuite = "ilgpu-kernels", CompileSuite = "gpu-compile";

    /// <summary>The ILGPU device a backend name runs the kernel parity cases on; null for the non-ILGPU backends.</summary>
    public static IlgpuDeviceKind? IlgpuKind(string backend) => backend switch
    {
        "cuda" => IlgpuDeviceKind.Cuda,
        "opencl" => IlgpuDeviceKind.OpenCL,
        "ilgpu-cpu" => IlgpuDeviceKind.Cpu,
        _ => null,
    };

    /// <summary>(suite, display name) of every case a run would execute.</summary>
    public static IReadOnlyList<(string Suite, string Name)> List(string backend, bool quick) =>
        Select(backend, quick).SelectMany(s => s.Cases.Select(c => (s.Suite, c.DisplayName))).ToList();

    /// <summary>Runs every selected case, writing one line per case and the JSON summary line to <paramref name="log"/>.</summary>
    public static GpuCheckSummary Run(string backend, bool quick, TextWriter log)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var suites = new List<SuiteSummary>();
        var recorder = new Recorder(log);
        foreach (var (suite, assembly, cases) in Select(backend, quick))
        {
            log.WriteLine($"# {suite}: {cases.Count} cases on {backend}");
            recorder.Reset();
            if (cases.Count > 0) Execute(assembly, cases, recorder);
            suites.Add(new SuiteSummary(suite, recorder.Passed + recorder.Failed + recorder.Skipped, recorder.Passed, recorder.Failed, recorder.Skipped));
        }
        var summary = new GpuCheckSummary(backend, Device(backend), quick,
            suites.Sum(s => s.Total), suites.Sum(s => s.Passed), suites.Sum(s => s.Failed), suites.Sum(s => s.Skipped),
            recorder.WorstRelError, recorder.WorstBeamScoreDiff, Math.Round(clock.Elapsed.TotalSeconds, 1), suites,
            recorder.SkipReasons.Distinct().ToList(), recorder.Failures);
        log.WriteLine(JsonSerializer.Serialize(summary, new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));
        log.Flush();
        return summary;
    }

    private static List<(string Suite, Assembly Assembly, List<ITestCase> Cases)> Select(string backend, bool quick)
    {
        if (!BackendNames.Contains(backend))
            throw new ArgumentException($"backend: unknown backend '{backend}'; use one of {string.Join(", ", BackendNames)}", nameof(backend));
        // The HF suite generates its cases for the backend this variable names (tests/ManagedT5.Tests/Fixtures.cs).
        Environment.SetEnvironmentVariable(ManagedT5.Tests.Backends.Variable, backend);

        Assembly hf = typeof(ManagedT5.Tests.ForwardParityTests).Assembly;
        var hfClasses = HfParityClasses.Select(t => t.FullName!).ToHashSet();
        List<ITestCase> hfCases = Discover(hf).Where(c =>
            hfClasses.Contains(c.TestMethod.TestClass.Class.Name)
            && c.TestMethodArguments is { } a && a.Contains(backend)
            && !(quick && IsSlow(c))).ToList();

        Assembly ilgpu = typeof(TestDevices).Assembly;
        IlgpuDeviceKind? kind = IlgpuKind(backend);
        // The device cases: [DeviceTheory] rows of this kind and [DeviceFact(kind)] (not the compile checks, nor the
        // plain theories that test the absence of a device).
        List<ITestCase> ilgpuCases = kind is null ? [] : Discover(ilgpu).Where(c =>
            c.TestMethod.Method is IReflectionMethodInfo m
            && (m.MethodInfo.GetCustomAttribute<DeviceTheoryAttribute>() is not null
                ? c.TestMethodArguments is { Length: 1 } a && a[0] is IlgpuDeviceKind k && k == kind
                : m.MethodInfo.GetCustomAttribute<DeviceFactAttribute>()?.Kind == kind))
            .Where(c => !(quick && IsSlow(c))).ToList();
        // The compile checks of that device's code (no device needed: they show the published binary's ILGPU can
        // still generate it): PTX for cuda, OpenCL C for opencl.
        List<ITestCase> compileCases = kind is IlgpuDeviceKind.Cuda or IlgpuDeviceKind.OpenCL
            ? Discover(ilgpu).Where(c =>
                c.Traits.TryGetValue("Category", out var v) && v.Contains("GpuCompile")
                && c.TestMethod.Method.Name.Contains("OpenCL") == (kind == IlgpuDeviceKind.OpenCL)).ToList()
            : [];
        return [(HfSuite, hf, hfCases), (IlgpuSuite, ilgpu, ilgpuCases), (CompileSuite, ilgpu, compileCases)];
    }

    private static bool IsSlow(ITestCase c) => c.Traits.TryGetValue("Category", out var v) && v.Contains("Slow");

    private static string Device(string backend)
    {
        try
        {
            IlgpuDeviceKind? kind = IlgpuKind(backend);
            if (kind is IlgpuDeviceKind.Cuda or IlgpuDeviceKind.OpenCL)
                return string.Join("; ", IlgpuDevices.Describe().Where(l => l.StartsWith(kind.ToString()!, StringComparison.OrdinalIgnoreCase)));
            string cpu = $"{Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSArchitecture}";
            return kind is null ? $"host CPU ({cpu})" : $"ILGPU CPU accelerator ({cpu})";
        }
        catch (Exception e) { return "unknown: " + e.Message; }
    }

    private static List<ITestCase> Discover(Assembly assembly)
    {
        var sink = new DiscoverySink();
        using var framework = new XunitTestFramework(new NullSink());
        using ITestFrameworkDiscoverer discoverer = framework.GetDiscoverer(Reflector.Wrap(assembly));
        discoverer.Find(includeSourceInformation: false, sink, new Options { ["xunit.discovery.PreEnumerateTheories"] = true });
        sink.Done.WaitOne();
        return sink.Cases;
    }

    private static void Execute(Assembly assembly, List<ITestCase> cases, Recorder recorder)
    {
        using var framework = new XunitTestFramework(new NullSink());
        using ITestFrameworkExecutor executor = framework.GetExecutor(assembly.GetName());
        // One case at a time: the GPU and ILGPU's CPU accelerator are shared, and the log reads in order.
        executor.RunTests(cases, recorder, new Options { ["xunit.execution.DisableParallelization"] = true, ["xunit.execution.MaxParallelThreads"] = 1 });
        recorder.Done.WaitOne();
    }

    /// <summary>Discovery and execution options, xunit's string-keyed settings.</summary>
    private sealed class Options : Dictionary<string, object?>, ITestFrameworkDiscoveryOptions, ITestFrameworkExecutionOptions
    {
        public TValue GetValue<TValue>(string name) => TryGetValue(name, out object? v) && v is TValue t ? t : default!;
        public void SetValue<TValue>(string name, TValue value) => this[name] = value;
    }

    private sealed class NullSink : Xunit.LongLivedMarshalByRefObject, IMessageSink
    {
        public bool OnMessage(IMessageSinkMessage message) => true;
    }

    private sealed class DiscoverySink : Xunit.LongLivedMarshalByRefObject, IMessageSink
    {
        public readonly List<ITestCase> Cases = [];
        public readonly ManualResetEvent Done = new(false);
        public bool OnMessage(IMessageSinkMessage message)
        {
            if (message is ITestCaseDiscoveryMessage d) Cases.Add(d.TestCase);
            else if (message is IDiscoveryCompleteMessage) Done.Set();
            return true;
        }
    }

    /// <summary>Writes each result as it comes and keeps the counts and the worst reported errors.</summary>
    private sealed partial class Recorder(TextWriter log) : Xunit.LongLivedMarshalByRefObject, IMessageSink
    {
        public readonly ManualResetEvent Done = new(false);
        public int Passed, Failed, Skipped;
        public double? WorstRelError, WorstBeamScoreDiff;
        public readonly List<string> SkipReasons = [], Failures = [];

        public void Reset() { Passed = Failed = Skipped = 0; Done.Reset(); }

        public bool OnMessage(IMessageSinkMessage message)
        {
            switch (message)
            {
                case ITestPassed p:
                    Passed++;
                    Errors(p.Output);
                    log.WriteLine($"PASS {p.ExecutionTime,7:F2}s {p.Test.DisplayName}");
                    break;
                case ITestFailed f:
                    Failed++;
                    Errors(f.Output);
                    string why = string.Join(" ", f.Messages).ReplaceLineEndings(" ");
                    Failures.Add($"{f.Test.DisplayName}: {why[..Math.Min(why.Length, 300)]}");
                    log.WriteLine($"FAIL {f.ExecutionTime,7:F2}s {f.Test.DisplayName}: {why}");
                    if (f.StackTraces.FirstOrDefault() is { } trace) log.WriteLine("     " + trace.ReplaceLineEndings("\n     "));
                    break;
                case ITestSkipped s:
                    Skipped++;
                    SkipReasons.Add(s.Reason);
                    log.WriteLine($"SKIP {s.Test.DisplayName}: {s.Reason}");
                    break;
                case IErrorMessage e:
                    Failed++;
                    Failures.Add("error: " + string.Join(" ", e.Messages));
                    log.WriteLine("ERROR " + string.Join(" ", e.Messages) + "\n" + string.Join("\n", e.StackTraces));
                    break;
                case ITestAssemblyFinished:
                    Done.Set();
                    break;
            }
            log.Flush();
            return true;
        }

        // What the HF parity cases print: "... rel err 1.23E-005" and "max |sequences_scores diff| = 4.56E-007".
        private void Errors(string output)
        {
            foreach (Match m in RelErr().Matches(output)) WorstRelError = Math.Max(WorstRelError ?? 0, double.Parse(m.Groups[1].Value));
            foreach (Match m in BeamDiff().Matches(output)) WorstBeamScoreDiff = Math.Max(WorstBeamScoreDiff ?? 0, double.Parse(m.Groups[1].Value));
        }

        [GeneratedRegex(@"rel err ([0-9.]+E[-+][0-9]+)")] private static partial Regex RelErr();
        [GeneratedRegex(@"sequences_scores diff\| = ([0-9.]+E[-+][0-9]+)")] private static partial Regex BeamDiff();
    }
}
