// managedt5-gpucheck: runs the parity suites on one backend without a .NET SDK (see GpuCheck.cs).
//   ManagedT5.Bench.GpuCheck --backend cuda|opencl|ilgpu-cpu|cpu|reference [--quick] [--list]
//   ManagedT5.Bench.GpuCheck bench ARGS...   (= managedt5 bench ARGS..., e.g. --device cuda --random-weights --json)
// Prints one line per case, then one JSON summary line; exit 0 when no case failed, 1 when one did, 2 on a usage error.
// The fixtures are tests/fixtures above the binary, or the folder MANAGEDT5_FIXTURES names; a case whose model folder
// is absent there (a device run gets the subset bench/ManagedT5.Bench.GpuCheck/device-fixtures.txt) skips, naming it.
using ManagedT5.Bench.GpuCheck;

if (args.Length > 0 && args[0] == "bench")
{
    // The engine benchmark, exactly as `managedt5 bench ...`: the CLI's own entry point, in this process (one
    // self-contained publish carries both). Set DOTNET_TieredCompilation=0 as the CLI's runtimeconfig does.
    var main = System.Reflection.Assembly.Load("ManagedT5.Cli").EntryPoint!;
    return (int)main.Invoke(null, [args])!;
}

string? backend = null;
bool quick = false, list = false;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--backend" when i + 1 < args.Length: backend = args[++i]; break;
        case "--quick": quick = true; break;
        case "--list": list = true; break;
        case "-h" or "--help":
            Console.WriteLine("usage: ManagedT5.Bench.GpuCheck --backend " + string.Join("|", GpuCheck.BackendNames) +
                " [--quick: leave out the Slow cases] [--list: print the cases, run none]");
            return 0;
        default:
            Console.Error.WriteLine($"gpucheck: unknown or incomplete option '{args[i]}'; use --backend " +
                string.Join("|", GpuCheck.BackendNames) + " [--quick] [--list]");
            return 2;
    }
}
if (backend is null || !GpuCheck.BackendNames.Contains(backend))
{
    Console.Error.WriteLine($"gpucheck: --backend: {(backend is null ? "missing" : $"unknown backend '{backend}'")}; use one of " +
        string.Join(", ", GpuCheck.BackendNames));
    return 2;
}
if (list)
{
    foreach (var (suite, name) in GpuCheck.List(backend, quick)) Console.WriteLine($"{suite}\t{name}");
    return 0;
}
try
{
    GpuCheckSummary summary = GpuCheck.Run(backend, quick, Console.Out);
    return summary.Failed == 0 ? 0 : 1;
}
catch (Exception e) when (Environment.GetEnvironmentVariable("MANAGEDT5_DEBUG") != "1")
{
    // A failure outside the cases (discovery, a missing test assembly): one line, no trace.
    Console.Error.WriteLine($"gpucheck: {e.GetType().Name}: {e.Message}");
    return 1;
}
