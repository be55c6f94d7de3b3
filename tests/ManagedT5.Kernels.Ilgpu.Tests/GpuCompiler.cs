// Compiles the backend's kernels (KernelCatalog) for GPUs this machine does not have: ILGPU's PTX backend for CUDA
// architectures and its OpenCL backend to OpenCL C source, which Debian's clang then compiles to SPIR. Nothing here
// needs a device or a driver; results are cached per target so the GpuCompile tests share one compile each.
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.RegularExpressions;
using ILGPU;
using ILGPU.Backends;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.OpenCL;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;
using ManagedT5.Kernels.Ilgpu.Kernels;

namespace ManagedT5.Kernels.Ilgpu.Tests;

/// <summary>One kernel compiled for one target: the generated code, or why it did not compile.</summary>
public sealed record CompiledCode(string Kernel, string Target, string? Code, string? Error)
{
    internal KernelLaunch Launch { get; init; } = null!;
}

/// <summary>Device-free compiles of every kernel in <see cref="KernelCatalog"/>.</summary>
public static class GpuCompiler
{
    /// <summary>The CUDA architectures checked: Volta (V100), Ampere (A100), Hopper (H100/H200).</summary>
    public static readonly string[] CudaArchitectures = ["sm_70", "sm_80", "sm_90"];

    private static readonly ConcurrentDictionary<string, Lazy<IReadOnlyList<CompiledCode>>> Cache = new();

    /// <summary>
    /// Every kernel as PTX for <paramref name="architecture"/> ("sm_80"), set up as CudaAccelerator does for a device
    /// of that architecture: capabilities from the architecture, the PTX target ILGPU derives from them, and the
    /// instruction set a driver would pick. <paramref name="newestDriver"/>: false = the oldest driver that supports the
    /// architecture (the oldest PTX ISA), true = a driver new enough for the newest ISA ILGPU knows.
    /// </summary>
    public static IReadOnlyList<CompiledCode> Ptx(string architecture, bool newestDriver) =>
        Cache.GetOrAdd($"ptx {architecture} {(newestDriver ? "newest" : "oldest")} driver", target => new(() =>
        {
            var arch = CudaArchitectureOf(architecture);
            var capabilities = new CudaCapabilityContext(arch);
            var driver = newestDriver
                ? CudaDriverVersionUtils.GetMinimumDriverVersion(PTXCodeGenerator.SupportedInstructionSets.First())
                : CudaDriverVersionUtils.GetMinimumDriverVersion(arch);
            var isa = CudaAccelerator.GetInstructionSet(capabilities.TargetArchitecture, driver);
            using var context = IlgpuDevices.NewContext(IlgpuDeviceKind.Cuda);
            using var backend = new PTXBackend(context, capabilities, arch, isa, nvvmAPI: null);
            return CompileAll(backend, $"{target} (PTX ISA {isa}, .target {capabilities.TargetArchitecture})",
                kernel => ((PTXCompiledKernel)kernel).PTXAssembly);
        })).Value;

    /// <summary>Every kernel as OpenCL C for a device of <paramref name="version"/> with the generic address space
    /// (ILGPU's requirement), as CLAccelerator sets it up: sub-groups and fp64 as given, vendor as given.</summary>
    public static IReadOnlyList<CompiledCode> OpenCL(CLCVersion version, CLDeviceVendor vendor, bool subGroups, bool fp64) =>
        Cache.GetOrAdd($"opencl {version} {vendor} subgroups={subGroups} fp64={fp64}", target => new(() =>
        {
            var capabilities = new CLCapabilityContext(
                float16: false, float64: fp64, genericAddressSpace: true, int64_Atomics: false, subGroups: subGroups);
            using var context = IlgpuDevices.NewContext(IlgpuDeviceKind.OpenCL);
            using var backend = new CLBackend(context, capabilities, vendor, version);
            return CompileAll(backend, target, kernel => ((CLCompiledKernel)kernel).Source);
        })).Value;

    private static List<CompiledCode> CompileAll(Backend backend, string target, Func<CompiledKernel, string> code)
    {
        var results = new List<CompiledCode>();
        foreach (var launch in KernelCatalog.All)
        {
            var entry = launch.Grouping == KernelGrouping.Auto
                ? EntryPointDescription.FromImplicitlyGroupedKernel(launch.Method)
                : EntryPointDescription.FromExplicitlyGroupedKernel(launch.Method);
            try
            {
                // The backend loads every kernel without a specialization (KernelSpecialization.Empty).
                var compiled = backend.Compile(entry, KernelSpecialization.Empty);
                results.Add(new CompiledCode(launch.Name, target, code(compiled), null) { Launch = launch });
            }
            catch (Exception e)
            {
                results.Add(new CompiledCode(launch.Name, target, null, $"{e.GetType().Name}: {e.Message}") { Launch = launch });
            }
        }
        return results;
    }

    private static CudaArchitecture CudaArchitectureOf(string name) => name switch
    {
        "sm_70" => CudaArchitecture.SM_70,
        "sm_80" => CudaArchitecture.SM_80,
        "sm_90" => CudaArchitecture.SM_90,
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, "Add the architecture to CudaArchitectureOf."),
    };
}

/// <summary>An OpenCL device as ILGPU's OpenCL backend sees it, and the clang flags that describe the same device.</summary>
/// <param name="Name">What kind of device this stands for.</param>
/// <param name="Version">The -cl-std ILGPU compiles for (CL2.0 for OpenCL 2.x devices, CL3.0 for 3.0 devices).</param>
/// <param name="Vendor">The vendor ILGPU picks intrinsics for.</param>
/// <param name="SubGroups">Whether ILGPU found sub-group support.</param>
/// <param name="Extensions">The clang -cl-ext list: every extension and OpenCL C 3.0 feature off, then these on.</param>
public sealed record OpenCLProfile(string Name, CLCVersion Version, CLDeviceVendor Vendor, bool SubGroups, string Extensions)
{
    /// <summary>The devices the OpenCL check covers. All have the generic address space ILGPU requires and fp64
    /// (IlgpuBackend refuses an OpenCL device without it).</summary>
    public static readonly OpenCLProfile[] All =
    [
        new("OpenCL 2.0 Intel GPU (cl_intel_subgroups)", CLCVersion.CL20, CLDeviceVendor.Intel, SubGroups: true,
            "+cl_khr_fp64,+cl_khr_subgroups,+cl_intel_subgroups"),
        new("OpenCL 2.0 AMD GPU (cl_khr_subgroups)", CLCVersion.CL20, CLDeviceVendor.AMD, SubGroups: true,
            "+cl_khr_fp64,+cl_khr_subgroups"),
        // Program-scope global variables: ILGPU's OpenCL C keeps the dynamic shared memory's pointer (Attention) in one.
        new("OpenCL 3.0 device (generic address space, program-scope variables, fp64, no sub-groups)", CLCVersion.CL30,
            CLDeviceVendor.Other, SubGroups: false,
            "+__opencl_c_generic_address_space,+__opencl_c_program_scope_global_variables,+cl_khr_fp64,+__opencl_c_fp64"),
    ];

    /// <summary>The kernels IlgpuBackend loads on this device (the GEMV only where it may use warp shuffles).</summary>
    internal bool Loads(KernelLaunch kernel) =>
        !kernel.WarpShuffles || IlgpuBackend.OpenCLWarpShuffles(Capabilities(fp64: true), Vendor);

    internal CLCapabilityContext Capabilities(bool fp64) =>
        new(float16: false, float64: fp64, genericAddressSpace: true, int64_Atomics: false, subGroups: SubGroups);

    /// <inheritdoc />
    public override string ToString() => Name;
}

/// <summary>Debian's clang as an offline OpenCL C compiler: OpenCL C source to SPIR (LLVM IR for spir64).</summary>
public static partial class Clang
{
    /// <summary>The clang found on this machine (clang, clang-14 .. clang-19 on PATH, or Debian's llvm folders), or null.</summary>
    public static string? Path { get; } = Find();

    /// <summary>Why clang-based tests are skipped, or null when clang is here.</summary>
    public static string? SkipReason => Path is null
        ? "clang not found (Debian: apt-get install clang-14; .ci/run installs it), so the OpenCL C source cannot be compiled here"
        : null;

    /// <summary>
    /// Compiles OpenCL C sources (kernel name, source) for the SPIR target in one clang run; returns null, or clang's
    /// errors (which name the kernels' files). Extensions and OpenCL C 3.0 features are all off except the profile's.
    /// <paramref name="fullHeader"/>: declare the built-in functions from opencl-c.h instead of clang's faster built-in
    /// table, which in clang 14 lacks cl_intel_subgroups' functions (intel_sub_group_shuffle_down, the GEMV's shuffle).
    /// </summary>
    public static string? Compile(IReadOnlyList<(string Name, string Source)> sources, OpenCLProfile profile, bool fullHeader)
    {
        string folder = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"managedt5-opencl-{Guid.NewGuid():N}");
        Directory.CreateDirectory(folder);
        try
        {
            var start = new ProcessStartInfo(Path!)
            {
                WorkingDirectory = folder, // each input's .bc is written here
                RedirectStandardError = true,
                RedirectStandardOutput = true,
            };
            string[] arguments =
            [
                "-x", "cl", $"-cl-std={profile.Version}", "-target", "spir64", "-emit-llvm", "-c",
                "-Xclang", $"-cl-ext=-all,{profile.Extensions}",
                .. fullHeader ? new[] { "-cl-no-stdinc", "-include", "opencl-c.h" } : [],
            ];
            foreach (string argument in arguments) start.ArgumentList.Add(argument);
            foreach (var (name, source) in sources)
            {
                string file = System.IO.Path.Combine(folder, FileName().Replace(name, "_") + ".cl");
                File.WriteAllText(file, source);
                start.ArgumentList.Add(file);
            }
            using var process = Process.Start(start)!;
            var stdout = process.StandardOutput.ReadToEndAsync();
            string stderr = process.StandardError.ReadToEnd();
            process.WaitForExit();
            return process.ExitCode == 0 ? null : $"clang exit {process.ExitCode}: {stderr}{stdout.Result}";
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [GeneratedRegex(@"[^A-Za-z0-9.]")]
    private static partial Regex FileName();

    private static string? Find()
    {
        string[] names = ["clang", "clang-14", "clang-15", "clang-16", "clang-17", "clang-18", "clang-19"];
        var folders = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(System.IO.Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Concat(["/usr/bin", "/usr/lib/llvm-14/bin"]);
        foreach (string folder in folders)
            foreach (string name in names)
            {
                string candidate = System.IO.Path.Combine(folder, name);
                if (File.Exists(candidate)) return candidate;
            }
        return null;
    }
}

/// <summary>A fact that needs clang, skipped with the reason where clang cannot be found.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class ClangFactAttribute : FactAttribute
{
    /// <summary>Skips when <see cref="Clang.Path"/> is null.</summary>
    public ClangFactAttribute() => Skip = Clang.SkipReason;
}
