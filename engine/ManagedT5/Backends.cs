// Device selection in one place: the name a user passes (--device, T5LoadOptions.Device) to a backend instance.
// The GPU devices come from the optional ManagedT5.Kernels.Ilgpu package, found by name when the app references it.
using ManagedT5.Kernels;
using ManagedT5.Kernels.Cpu;
using ManagedT5.Kernels.Reference;

namespace ManagedT5;

/// <summary>Creates backends by device name.</summary>
public static class BackendFactory
{
    /// <summary>Device names accepted everywhere a device can be chosen.</summary>
    public static readonly IReadOnlyList<string> DeviceNames = ["cpu", "reference", "cuda", "opencl", "ilgpu-cpu", "auto"];

    /// <summary>"cpu" (SIMD, the default), "reference" (scalar), or an ILGPU device ("cuda", "opencl", "ilgpu-cpu",
    /// "auto": CUDA, then OpenCL, then the CPU SIMD backend). The ILGPU devices need the ManagedT5.Kernels.Ilgpu package;
    /// without it they throw <see cref="NotSupportedException"/> saying to add it, and "auto" is the CPU backend.
    /// <paramref name="threads"/>: 0 for one per processor, else
    /// 1 to <see cref="CpuBackend.MaxThreads"/>; an <see cref="ArgumentException"/> (ParamName "threads") otherwise.</summary>
    public static IBackend Create(string device = "cpu", int threads = 0)
    {
        // Checked for every device (an ILGPU device may fall back to the CPU backend), before anything starts.
        if (threads < 0 || threads > CpuBackend.MaxThreads)
            throw new ArgumentException(
                $"threads: {threads} is not a thread count; use 0 for one per processor, or 1 to {CpuBackend.MaxThreads} " +
                $"(4 per processor; this machine has {Environment.ProcessorCount}).", "threads");
        switch (device.ToLowerInvariant())
        {
            case "cpu": return new CpuBackend(threads);
            case "reference": return new ReferenceBackend();
            case "cuda":
            case "opencl":
            case "ilgpu-cpu":
                return (GpuProvider ?? throw new NotSupportedException(
                    $"device: '{device}' runs on ILGPU, which is an optional package; add a reference to {IlgpuPackage} " +
                    $"(dotnet add package {IlgpuPackage}), or use --device cpu.")).Create(device.ToLowerInvariant());
            case "auto":
                return GpuProvider?.CreateBest() ?? new CpuBackend(threads);
            default:
                throw new ArgumentException(
                    $"device: '{device}' is not a device; use one of {string.Join(", ", DeviceNames)}.", nameof(device));
        }
    }

    private const string IlgpuPackage = "ManagedT5.Kernels.Ilgpu";

    /// <summary>The ILGPU package's provider when the app references that package (its assembly sits beside the app),
    /// else null. Looked up once, by name: the engine does not reference ILGPU.</summary>
    private static IBackendProvider? GpuProvider => s_gpuProvider.Value;

    private static readonly Lazy<IBackendProvider?> s_gpuProvider = new(FindGpuProvider);

    private static IBackendProvider? FindGpuProvider()
    {
        Type? type;
        try { type = Type.GetType("ManagedT5.Kernels.Ilgpu.IlgpuBackendProvider, " + IlgpuPackage, throwOnError: false); }
        catch (IOException) { return null; }             // the assembly is listed but its file is gone or unreadable
        catch (BadImageFormatException) { return null; }
        return type is null ? null : (IBackendProvider?)Activator.CreateInstance(type);
    }
}
