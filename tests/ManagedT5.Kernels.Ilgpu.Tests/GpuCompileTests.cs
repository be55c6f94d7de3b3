// Checks for GPUs this machine does not have (Category GpuCompile): every kernel the ILGPU backend launches, with
// every weight format, compiled to PTX for sm_70, sm_80 and sm_90 and to OpenCL C (then through clang), and the
// generated code checked for what only breaks on hardware: shared memory, group sizes, fp64, warp-level code.
// `dotnet test ManagedT5.sln -c Release --filter "Category=GpuCompile"` runs them; none needs a device.
using System.Reflection;
using System.Text.RegularExpressions;
using ManagedT5.Kernels.Ilgpu.Kernels;
using Xunit.Abstractions;

namespace ManagedT5.Kernels.Ilgpu.Tests;

[Trait("Category", "GpuCompile")]
public sealed partial class GpuCompileTests(ITestOutputHelper output)
{
    // A CUDA device of compute capability 7.0 and above: 1024 threads and 48 KiB of static shared memory per group
    // (more only by opting in per kernel, which ILGPU does not do), warps of 32.
    private const int CudaMaxThreadsPerGroup = 1024, CudaSharedBytesPerGroup = 48 * 1024, CudaWarpSize = 32;
    private static readonly GroupSizes Cuda = GroupSizes.For(CudaMaxThreadsPerGroup, CudaWarpSize);

    public static TheoryData<string> Architectures => new(GpuCompiler.CudaArchitectures);

    [Fact]
    public void CatalogListsEveryKernelWithEveryWeightFormat()
    {
        // A kernel is a static void method of a class in ManagedT5.Kernels.Ilgpu.Kernels (helpers return values).
        var kernels = typeof(KernelCatalog).Assembly.GetTypes()
            .Where(t => t.Namespace == typeof(KernelCatalog).Namespace && t.IsAbstract && t.IsSealed)
            .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static | BindingFlags.DeclaredOnly))
            .Where(m => m.ReturnType == typeof(void) && !m.IsSpecialName)
            .ToHashSet();
        Assert.NotEmpty(kernels);
        var listed = KernelCatalog.All.Select(k => k.Method.IsGenericMethod ? k.Method.GetGenericMethodDefinition() : k.Method).ToHashSet();
        Assert.Empty(kernels.Except(listed).Select(m => $"{m.DeclaringType!.Name}.{m.Name}"));
        Type[] views = [typeof(F32Weights), typeof(F16Weights), typeof(BF16Weights), typeof(Int8Weights)];
        foreach (var generic in kernels.Where(m => m.IsGenericMethodDefinition))
            Assert.Equal(views, KernelCatalog.All.Where(k => k.Method.IsGenericMethod && k.Method.GetGenericMethodDefinition() == generic)
                .Select(k => k.Method.GetGenericArguments()[0]));
    }

    [Theory]
    [MemberData(nameof(Architectures))]
    public void EveryKernelCompilesToPTX(string architecture)
    {
        foreach (bool newestDriver in new[] { false, true })
        {
            var compiled = GpuCompiler.Ptx(architecture, newestDriver);
            output.WriteLine($"{compiled[0].Target}: {compiled.Count} kernels");
            Assert.Equal(KernelCatalog.All.Count, compiled.Count);
            Assert.Empty(compiled.Where(c => c.Error is not null).Select(c => $"{c.Kernel}: {c.Error}"));
            foreach (var c in compiled)
            {
                Assert.Matches(@"(?m)^\.target sm_\d+", c.Code!);
                Assert.Contains(".visible .entry Kernel_", c.Code!);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Architectures))]
    public void SharedMemoryOfEveryKernelFits48KiB(string architecture)
    {
        // Attention's dynamic shared memory grows with the keys; the backend refuses what exceeds the device's
        // limit, so check a long T5 input (2048 keys of d_kv 64) fits beside the static allocations.
        var longInput = new AttentionParams { HeadDim = 64, KeyLength = 2048 };
        foreach (var c in GpuCompiler.Ptx(architecture, newestDriver: true))
        {
            int staticBytes = SharedDeclaration().Matches(c.Code!).Sum(m => int.Parse(m.Groups[1].Value));
            bool dynamic = c.Code!.Contains(".extern .shared");
            int dynamicBytes = dynamic ? longInput.SharedFloats(Cuda.Attention) * sizeof(float) : 0;
            output.WriteLine($"{c.Kernel}: {staticBytes} bytes static{(dynamic ? $" + {dynamicBytes} dynamic at 2048 keys" : "")}");
            Assert.True(staticBytes + dynamicBytes <= CudaSharedBytesPerGroup,
                $"{c.Kernel} on {architecture} needs {staticBytes + dynamicBytes} bytes of shared memory per group");
            Assert.Equal(c.Launch.Grouping == KernelGrouping.Attention, dynamic);
        }
    }

    [Fact]
    public void GroupSizesFitACUDADevice()
    {
        output.WriteLine($"CUDA group sizes: {Cuda}");
        foreach (var kernel in KernelCatalog.All)
        {
            if (kernel.ThreadsPerGroup(Cuda) is not int threads) continue; // implicitly grouped: ILGPU sizes it from the device
            Assert.InRange(threads, CudaWarpSize, CudaMaxThreadsPerGroup);
            Assert.True(int.IsPow2(threads), $"{kernel.Name}: {threads} threads per group is not a power of two (GroupReduce needs one)");
        }
        // The static scratch of RmsNorm and ArgMax holds one element per thread.
        Assert.True(Cuda.Reduce <= GroupReduce.MaxGroupSize);
        Assert.True(Cuda.Tile <= LinearKernels.MaxTile);
        foreach (var c in GpuCompiler.Ptx("sm_80", newestDriver: true))
            foreach (Match m in ThreadLimit().Matches(c.Code!))
            {
                int? threads = c.Launch.ThreadsPerGroup(Cuda);
                Assert.True(threads is null || threads <= int.Parse(m.Groups[1].Value),
                    $"{c.Kernel} declares {m.Value} but is launched with {threads} threads");
            }
    }

    [Theory]
    [MemberData(nameof(Architectures))]
    public void HotKernelsUseNo64BitFloatingPoint(string architecture)
    {
        foreach (var c in GpuCompiler.Ptx(architecture, newestDriver: true))
        {
            int f64 = Regex.Count(c.Code!, @"\.f64\b");
            if (!c.Launch.Hot)
            {
                output.WriteLine($"{c.Kernel}: {f64} .f64 instructions (allowed: the exact bucket log, once per step)");
                continue;
            }
            Assert.True(f64 == 0, $"{c.Kernel} on {architecture} has {f64} .f64 instructions");
        }
    }

    /// <summary>
    /// Warp-size assumptions. Only the GEMV may contain warp-level instructions (every other kernel synchronises
    /// with group barriers, so it is correct for any warp size); its shuffles must be shfl.sync over all 32 lanes
    /// (plain shfl does not exist on sm_70+, and a partial mask would leave lanes out), and its group must be whole
    /// warps: o = group * warpsPerGroup + warp is then the same for every lane of a warp, so the early return
    /// before the shuffles removes whole warps and never a lane a shuffle still reads from.
    /// </summary>
    [Theory]
    [MemberData(nameof(Architectures))]
    public void WarpLevelCodeIsOnlyInTheGEMVAndUsesFull32LaneWarps(string architecture)
    {
        Assert.Equal(0, Cuda.Gemv % CudaWarpSize);
        foreach (var c in GpuCompiler.Ptx(architecture, newestDriver: true))
        {
            var warpOps = WarpInstruction().Matches(c.Code!).Select(m => m.Value).ToList();
            if (!c.Launch.WarpShuffles)
            {
                Assert.True(warpOps.Count == 0, $"{c.Kernel}: {string.Join(", ", warpOps)}");
                continue;
            }
            Assert.NotEmpty(warpOps);
            foreach (Match shuffle in Shuffle().Matches(c.Code!))
            {
                Assert.StartsWith("shfl.sync.", shuffle.Value);
                Assert.EndsWith("31, 4294967295;", shuffle.Value); // clamp = 32 lanes - 1, member mask = all 32 lanes
            }
            Assert.Equal(warpOps.Count, Shuffle().Count(c.Code!));
        }
    }

    public static TheoryData<OpenCLProfile> OpenCLProfiles => new(OpenCLProfile.All);

    [Theory]
    [MemberData(nameof(OpenCLProfiles))]
    public void EveryKernelTheBackendLoadsOnOpenCLCompilesWithILGPU(OpenCLProfile profile)
    {
        var compiled = GpuCompiler.OpenCL(profile.Version, profile.Vendor, profile.SubGroups, fp64: true)
            .Where(c => profile.Loads(c.Launch)).ToList();
        Assert.Empty(compiled.Where(c => c.Error is not null).Select(c => $"{c.Kernel}: {c.Error}"));
        output.WriteLine($"{profile}: {compiled.Count} kernels{(compiled.Count < KernelCatalog.All.Count ? " (no GEMV: no usable warp shuffles)" : "")}");
    }

    [ClangFact]
    public void OpenCLCOfEveryKernelCompilesWithClang()
    {
        output.WriteLine($"clang: {Clang.Path}");
        foreach (var profile in OpenCLProfile.All)
        {
            var sources = GpuCompiler.OpenCL(profile.Version, profile.Vendor, profile.SubGroups, fp64: true)
                .Where(c => profile.Loads(c.Launch) && c.Code is not null).ToList();
            Assert.NotEmpty(sources);
            // Clang 14's built-in table lacks the sub-group functions: kernels with warp shuffles get opencl-c.h.
            string? errors = Clang.Compile([.. sources.Where(c => !c.Launch.WarpShuffles).Select(c => (c.Kernel, c.Code!))], profile, fullHeader: false);
            Assert.True(errors is null, $"{profile}:\n{errors}");
            var shuffling = sources.Where(c => c.Launch.WarpShuffles).Select(c => (c.Kernel, c.Code!)).ToList();
            if (shuffling.Count > 0)
            {
                errors = Clang.Compile(shuffling, profile, fullHeader: true);
                Assert.True(errors is null, $"{profile}:\n{errors}");
            }
            output.WriteLine($"{profile}: {sources.Count} kernels compiled to SPIR");
        }
    }

    [Fact]
    public void HotKernelsNeedNoFp64OnOpenCLAndTheBackendRefusesADeviceWithoutIt()
    {
        var profile = OpenCLProfile.All[^1];
        foreach (var c in GpuCompiler.OpenCL(profile.Version, profile.Vendor, profile.SubGroups, fp64: false).Where(c => profile.Loads(c.Launch)))
        {
            if (c.Launch.Hot) Assert.True(c.Error is null, $"{c.Kernel}: {c.Error}");
            else output.WriteLine($"{c.Kernel} without fp64: {c.Error ?? "compiles"}");
        }
        Assert.Contains(GpuCompiler.OpenCL(profile.Version, profile.Vendor, profile.SubGroups, fp64: false), c => c.Error is not null);
        Assert.Contains("cl_khr_fp64", IlgpuBackend.OpenCLProblem(profile.Capabilities(fp64: false)));
        Assert.Null(IlgpuBackend.OpenCLProblem(profile.Capabilities(fp64: true)));
    }

    [GeneratedRegex(@"\.shared\s+(?:\.align\s+\d+\s+)?\.\w+\s+\w+\[(\d+)\]")]
    private static partial Regex SharedDeclaration();

    [GeneratedRegex(@"\.(?:maxntid|reqntid)\s+(\d+)")]
    private static partial Regex ThreadLimit();

    [GeneratedRegex(@"\b(?:shfl|vote|activemask|bar\.warp|match|redux)\.[^\n]*")]
    private static partial Regex WarpInstruction();

    [GeneratedRegex(@"\bshfl\.[^\n]*")]
    private static partial Regex Shuffle();
}
