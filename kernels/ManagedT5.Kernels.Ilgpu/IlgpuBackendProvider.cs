// The ILGPU package's entry point for the engine: BackendFactory finds this class by name when the package is
// referenced, and asks it for "cuda", "opencl", "ilgpu-cpu", or the best GPU for "auto".
namespace ManagedT5.Kernels.Ilgpu;

/// <summary>Serves the ILGPU devices to the engine's backend factory.</summary>
public sealed class IlgpuBackendProvider : IBackendProvider
{
    /// <inheritdoc />
    public string Package => "ManagedT5.Kernels.Ilgpu";

    /// <inheritdoc />
    public IReadOnlyList<string> Devices { get; } = ["cuda", "opencl", "ilgpu-cpu"];

    /// <inheritdoc />
    public IBackend Create(string device) => device switch
    {
        "cuda" => IlgpuDevices.Create(IlgpuDeviceKind.Cuda),
        "opencl" => IlgpuDevices.Create(IlgpuDeviceKind.OpenCL),
        "ilgpu-cpu" => IlgpuDevices.Create(IlgpuDeviceKind.Cpu),
        _ => throw new ArgumentException($"device: '{device}' is not an ILGPU device; use one of {string.Join(", ", Devices)}.", nameof(device)),
    };

    /// <inheritdoc />
    /// <remarks>CUDA, then OpenCL; never ILGPU's CPU accelerator, which the CPU SIMD backend beats by far.</remarks>
    public IBackend? CreateBest() =>
        IlgpuDevices.IsAvailable(IlgpuDeviceKind.Cuda) ? IlgpuDevices.Create(IlgpuDeviceKind.Cuda)
        : IlgpuDevices.IsAvailable(IlgpuDeviceKind.OpenCL) ? IlgpuDevices.Create(IlgpuDeviceKind.OpenCL)
        : null;
}
