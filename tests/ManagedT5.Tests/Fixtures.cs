// Where the reference fixtures live (tests/fixtures in the repository) and the backends parity tests run on. The error
// measure is Errors.RelativeError (tests/Shared/Errors.cs).
using ManagedT5.Kernels;
using ManagedT5.Kernels.Reference;

namespace ManagedT5.Tests;

internal static class Fixtures
{
    public static readonly string[] ModelNames = ["tiny-flan-t5", "tiny-t5-v1_0", "tiny-flan-t5-bf16-sharded"];

    /// <summary>The environment variable naming another folder laid out as tests/fixtures (the device runner's tests
    /// point it at a copy with a model folder left out).</summary>
    public const string RootVariable = "MANAGEDT5_FIXTURES";

    /// <summary>tests/fixtures, found by walking up from the test binary, or the folder <see cref="RootVariable"/> names.</summary>
    public static string Root => Environment.GetEnvironmentVariable(RootVariable) is { Length: > 0 } root ? Path.GetFullPath(root) : Found.Value;

    private static readonly Lazy<string> Found = new(FindRoot);

    /// <summary>Whether a model's folder is in this tree: `bash bench/gpu-check.sh --prepare` sends a GPU machine a
    /// subset of the fixtures (bench/ManagedT5.Bench.GpuCheck/device-fixtures.txt); a normal clone has them all.</summary>
    public static bool Has(string name) => Directory.Exists(Path.Combine(Root, "models", name));

    /// <summary>A model's folder; Xunit.SkipException naming it when it is not in this tree (see <see cref="Has"/>).</summary>
    public static string Model(string name) => Has(name) ? Path.Combine(Root, "models", name)
        : throw new Xunit.SkipException($"fixture tests/fixtures/models/{name} not in this tree (gpu-check --prepare sends a subset)");

    public static string Configs => Path.Combine(Root, "configs");
    public static string RepoRoot => Path.GetFullPath(Path.Combine(Found.Value, "..", ".."));

    // The folder alone, not tests/fixtures/models: on a slimmed tree (gpu-check --prepare) only its README stays until
    // the device run unpacks the subset.
    private static string FindRoot()
    {
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d != null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, "tests", "fixtures");
            if (Directory.Exists(candidate)) return candidate;
        }
        throw new DirectoryNotFoundException("tests/fixtures not found above " + AppContext.BaseDirectory);
    }
}

/// <summary>The backends every parity test runs on. Faster backends join this list as they are written.
/// MANAGEDT5_PARITY_BACKEND=cuda|opencl|ilgpu-cpu|cpu|reference runs the parity suite on that backend alone, every
/// case of it, the Slow ones included (the GPU devices are never in the default run): `dotnet test` on a GPU machine, and the self-contained
/// device runner bench/ManagedT5.GpuCheck, set it. A GPU backend whose device is absent throws Xunit.SkipException
/// ("no CUDA device: ..."), so its cases are skipped with the reason; MANAGEDT5_ILGPU_REQUIRE=cuda (or opencl) makes
/// that absence a failure, as in the ILGPU tests.</summary>
public static class Backends
{
    /// <summary>The environment variable that picks one backend for the parity suite.</summary>
    public const string Variable = "MANAGEDT5_PARITY_BACKEND";

    /// <summary>Every backend a parity test can name, the GPU ones included.</summary>
    public static readonly Dictionary<string, Func<IBackend>> Factories = new()
    {
        ["reference"] = () => new ReferenceBackend(),
        ["cpu"] = () => new ManagedT5.Kernels.Cpu.CpuBackend(),
        ["ilgpu-cpu"] = () => ManagedT5.Kernels.Ilgpu.IlgpuDevices.Create(ManagedT5.Kernels.Ilgpu.IlgpuDeviceKind.Cpu),
        ["cuda"] = () => Gpu(ManagedT5.Kernels.Ilgpu.IlgpuDeviceKind.Cuda, "CUDA"),
        ["opencl"] = () => Gpu(ManagedT5.Kernels.Ilgpu.IlgpuDeviceKind.OpenCL, "OpenCL"),
    };

    /// <summary>The backends of a run without <see cref="Variable"/>: every one that needs no GPU.</summary>
    public static readonly string[] Default = ["reference", "cpu", "ilgpu-cpu"];

    /// <summary>The backends parity cases are generated for: the one <see cref="Variable"/> names, else
    /// <see cref="Default"/>. An unknown name throws, naming the variable and the choices.</summary>
    public static IReadOnlyList<string> Selected
    {
        get
        {
            string? chosen = Environment.GetEnvironmentVariable(Variable)?.Trim();
            if (string.IsNullOrEmpty(chosen)) return Default;
            return Factories.ContainsKey(chosen)
                ? [chosen]
                : throw new ArgumentException($"{Variable}: unknown backend '{chosen}'; use one of {string.Join(", ", Factories.Keys)}, or leave it unset for {string.Join(", ", Default)}.");
        }
    }

    /// <summary>Backends whose cases are split: the main fixture model in the default run, the rest under the "Slow"
    /// trait. ILGPU's CPU accelerator always (too slow for every fixture), and the backend <see cref="Variable"/>
    /// picks: `--filter "Category!=Slow"` is then a short smoke run on it, and neither half is ever empty (a theory
    /// without data fails).</summary>
    public static HashSet<string> SlowBackends
    {
        get
        {
            HashSet<string> slow = ["ilgpu-cpu"];
            if (!string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable(Variable))) slow.Add(Selected[0]);
            return slow;
        }
    }

    public static IEnumerable<object[]> Names => Selected.Select(k => new object[] { k });

    /// <summary>(model, backend) pairs of the default run.</summary>
    public static IEnumerable<object[]> ModelsByBackend =>
        from b in Selected from m in Fixtures.ModelNames
        where !SlowBackends.Contains(b) || m == Fixtures.ModelNames[0]
        select new object[] { m, b };

    /// <summary>The pairs left out of the default run.</summary>
    public static IEnumerable<object[]> SlowModelsByBackend =>
        from b in Selected.Where(SlowBackends.Contains) from m in Fixtures.ModelNames.Skip(1) select new object[] { m, b };

    /// <summary>A GPU backend, or Xunit.SkipException with what was found when the device is absent (a failure
    /// instead when MANAGEDT5_ILGPU_REQUIRE names it).</summary>
    private static IBackend Gpu(ManagedT5.Kernels.Ilgpu.IlgpuDeviceKind kind, string label)
    {
        bool required = (Environment.GetEnvironmentVariable("MANAGEDT5_ILGPU_REQUIRE") ?? "")
            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Any(name => string.Equals(name, kind.ToString(), StringComparison.OrdinalIgnoreCase));
        if (!required && !ManagedT5.Kernels.Ilgpu.IlgpuDevices.IsAvailable(kind))
            throw new Xunit.SkipException($"no {label} device: " + string.Join("; ", ManagedT5.Kernels.Ilgpu.IlgpuDevices.Describe()
                .Where(l => l.StartsWith(kind.ToString(), StringComparison.OrdinalIgnoreCase))));
        return ManagedT5.Kernels.Ilgpu.IlgpuDevices.Create(kind);
    }
}
