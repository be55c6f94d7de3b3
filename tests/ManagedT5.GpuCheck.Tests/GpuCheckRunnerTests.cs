// The device runner against the suites it runs: every backend-taking HF parity test is run or excused, its case list
// per backend is what the suites' own data give, the CUDA cases skip with the reason where there is no GPU, and a
// CPU run passes in process (the same code the self-contained publish runs on the GPU machine).
using System.Collections;
using System.Reflection;
using ManagedT5.Bench.GpuCheck;
using Runner = ManagedT5.Bench.GpuCheck.GpuCheck;
using ManagedT5.Kernels.Ilgpu;
using ManagedT5.Kernels.Ilgpu.Tests;
using Xunit.Abstractions;

namespace ManagedT5.GpuCheck.Tests;

[Collection("environment")] // the runner sets MANAGEDT5_PARITY_BACKEND for the process
public sealed class GpuCheckRunnerTests(ITestOutputHelper output) : IDisposable
{
    private static readonly Assembly HfTests = typeof(ManagedT5.Tests.ForwardParityTests).Assembly;

    public void Dispose() => Environment.SetEnvironmentVariable(ManagedT5.Tests.Backends.Variable, null);

    [Fact]
    public void EveryTestThatTakesABackendIsRunOrExcused()
    {
        var methods = HfTests.GetTypes().SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.Instance | BindingFlags.DeclaredOnly))
            .Where(m => m.GetCustomAttributes<FactAttribute>().Any() && m.GetParameters().Any(p => p.Name == "backendName"))
            .Select(m => $"{m.DeclaringType!.FullName}.{m.Name}").ToList();
        Assert.NotEmpty(methods);
        var classes = Runner.HfParityClasses.Select(t => t.FullName + ".").ToList();
        var dropped = methods.Where(m => !classes.Any(m.StartsWith) && !Runner.NotRun.ContainsKey(m)).ToList();
        Assert.True(dropped.Count == 0, "tests that take a backend but the device runner neither runs nor excuses: " + string.Join(", ", dropped));
    }

    [Theory]
    [InlineData("cpu")]
    [InlineData("cuda")]
    [InlineData("ilgpu-cpu")]
    public void CaseListIsWhatTheSuitesGenerate(string backend)
    {
        var listed = Runner.List(backend, quick: false);   // sets MANAGEDT5_PARITY_BACKEND=backend

        // HF parity: each method's rows from its own [MemberData], those naming the backend.
        var expected = new Dictionary<string, int>();
        foreach (var type in Runner.HfParityClasses)
            foreach (var method in type.GetMethods())
                foreach (var data in method.GetCustomAttributes<MemberDataAttribute>())
                {
                    Type source = data.MemberType ?? type;
                    object? rows = source.GetProperty(data.MemberName, BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static)?.GetValue(null)
                        ?? source.GetMethod(data.MemberName, BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static)?.Invoke(null, null);
                    int n = ((IEnumerable)rows!).Cast<object[]>().Count(r => r.Contains(backend));
                    if (n > 0) expected[$"{type.FullName}.{method.Name}"] = expected.GetValueOrDefault($"{type.FullName}.{method.Name}") + n;
                }
        var actual = listed.Where(c => c.Suite == "hf-parity").GroupBy(c => c.Name[..c.Name.IndexOf('(')]).ToDictionary(g => g.Key, g => g.Count());
        output.WriteLine($"{backend}: {listed.Count} cases; hf-parity by method: {string.Join(", ", actual.Select(p => $"{p.Key.Split('.')[^1]} {p.Value}"))}");
        Assert.Equal(expected.OrderBy(p => p.Key), actual.OrderBy(p => p.Key));
        Assert.True(expected.Values.Sum() >= 10, "too few HF parity cases: the fixture models or the generation cases went missing");

        // ILGPU: one case per [DeviceTheory] method, one per [DeviceFact] of this device; the compile checks on GPUs.
        IlgpuDeviceKind? kind = Runner.IlgpuKind(backend);
        var ilgpuMethods = typeof(TestDevices).Assembly.GetTypes().SelectMany(t => t.GetMethods()).ToList();
        int deviceCases = kind is null ? 0
            : ilgpuMethods.Count(m => m.GetCustomAttribute<DeviceTheoryAttribute>() is not null)
              + ilgpuMethods.Count(m => m.GetCustomAttribute<DeviceFactAttribute>()?.Kind == kind);
        Assert.Equal(deviceCases, listed.Count(c => c.Suite == "ilgpu-kernels"));
        if (kind == IlgpuDeviceKind.Cuda) Assert.Contains(listed, c => c.Suite == "gpu-compile" && c.Name.Contains("EveryKernelCompilesToPTX"));
        else Assert.DoesNotContain(listed, c => c.Suite == "gpu-compile");
    }

    [SkippableFact]
    public void WithoutAGpuTheCudaCasesAreSkippedWithTheReason()
    {
        Skip.If(IlgpuDevices.IsAvailable(IlgpuDeviceKind.Cuda), "a CUDA device is present: the absent-device path cannot be seen here");
        var log = new StringWriter();
        GpuCheckSummary s = Runner.Run("cuda", quick: true, log);
        output.WriteLine(log.ToString().Split('\n')[^2]);
        Assert.Equal(0, s.Failed);
        Assert.Equal(s.Suites[0].Total, s.Suites[0].Skipped);   // every HF parity case
        Assert.Equal(s.Suites[1].Total, s.Suites[1].Skipped);   // every ILGPU device case
        Assert.True(s.Suites[0].Total > 0 && s.Suites[1].Total > 0);
        Assert.Contains(s.SkipReasons, r => r.StartsWith("no CUDA device"));
    }

    [Fact]
    public void CpuRunPassesInProcess()
    {
        var log = new StringWriter();
        GpuCheckSummary s = Runner.Run("cpu", quick: false, log);   // every HF parity case, a few seconds
        string text = log.ToString();
        output.WriteLine(text.Split('\n')[^2]);   // the JSON summary line
        Assert.True(s.Failed == 0, text);
        Assert.True(s.Total >= 20 && s.Passed == s.Total, $"{s.Passed} of {s.Total} passed");
        Assert.NotNull(s.WorstRelError);
        Assert.InRange(s.WorstRelError!.Value, 0, 1e-4);
        Assert.NotNull(s.WorstBeamScoreDiff);
        Assert.StartsWith("{\"backend\":\"cpu\"", text.Split('\n')[^2]);
    }
}
