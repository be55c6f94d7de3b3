// Device selection in one place: the name a user passes (--device, T5LoadOptions.Device) to a backend instance.
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
    /// "auto": CUDA, then OpenCL, then the CPU SIMD backend). <paramref name="threads"/>: 0 for one per processor, else
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
            case "auto":
                return GpuBackends.Create(device.ToLowerInvariant(), threads);
            default:
                throw new ArgumentException(
                    $"device: '{device}' is not a device; use one of {string.Join(", ", DeviceNames)}.", nameof(device));
        }
    }
}
