// Where the reference fixtures live (tests/fixtures in the repository) and the backends parity tests run on. The error
// measure is Errors.RelativeError (tests/Shared/Errors.cs).
using ManagedT5.Kernels;
using ManagedT5.Kernels.Reference;

namespace ManagedT5.Tests;

internal static class Fixtures
{
    public static readonly string[] ModelNames = ["tiny-flan-t5", "tiny-t5-v1_0", "tiny-flan-t5-bf16-sharded"];

    /// <summary>tests/fixtures, found by walking up from the test binary.</summary>
    public static string Root { get; } = FindRoot();

    public static string Model(string name) => Path.Combine(Root, "models", name);
    public static string Configs => Path.Combine(Root, "configs");
    public static string RepoRoot => Path.GetFullPath(Path.Combine(Root, "..", ".."));

    private static string FindRoot()
    {
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d != null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, "tests", "fixtures");
            if (Directory.Exists(Path.Combine(candidate, "models"))) return candidate;
        }
        throw new DirectoryNotFoundException("tests/fixtures not found above " + AppContext.BaseDirectory);
    }
}

/// <summary>The backends every parity test runs on. Faster backends join this list as they are written.</summary>
public static class Backends
{
    public static readonly Dictionary<string, Func<IBackend>> Factories = new()
    {
        ["reference"] = () => new ReferenceBackend(),
        ["cpu"] = () => new ManagedT5.Kernels.Cpu.CpuBackend(),
        ["ilgpu-cpu"] = () => ManagedT5.Kernels.Ilgpu.IlgpuDevices.Create(ManagedT5.Kernels.Ilgpu.IlgpuDeviceKind.Cpu),
    };

    /// <summary>Backends too slow for every fixture in the default run (ILGPU's CPU accelerator): they run the
    /// main fixture model by default and the rest under the "Slow" trait.</summary>
    public static readonly HashSet<string> SlowBackends = ["ilgpu-cpu"];

    public static IEnumerable<object[]> Names => Factories.Keys.Select(k => new object[] { k });

    /// <summary>(model, backend) pairs of the default run.</summary>
    public static IEnumerable<object[]> ModelsByBackend =>
        from b in Factories.Keys from m in Fixtures.ModelNames
        where !SlowBackends.Contains(b) || m == Fixtures.ModelNames[0]
        select new object[] { m, b };

    /// <summary>The pairs left out of the default run.</summary>
    public static IEnumerable<object[]> SlowModelsByBackend =>
        from b in SlowBackends from m in Fixtures.ModelNames.Skip(1) select new object[] { m, b };
}
