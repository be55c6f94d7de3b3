// ILGPU devices behind the factory: "cuda", "opencl", "ilgpu-cpu", and "auto" (a GPU when there is one, else the
// CPU SIMD backend, which beats ILGPU's CPU accelerator by far).
using ManagedT5.Kernels;
using ManagedT5.Kernels.Cpu;
using ManagedT5.Kernels.Ilgpu;

namespace ManagedT5;

internal static class GpuBackends
{
    public static IBackend Create(string device, int threads) => device switch
    {
        "cuda" => IlgpuDevices.Create(IlgpuDeviceKind.Cuda),
        "opencl" => IlgpuDevices.Create(IlgpuDeviceKind.OpenCL),
        "ilgpu-cpu" => IlgpuDevices.Create(IlgpuDeviceKind.Cpu),
        _ => IlgpuDevices.IsAvailable(IlgpuDeviceKind.Cuda) ? IlgpuDevices.Create(IlgpuDeviceKind.Cuda)
            : IlgpuDevices.IsAvailable(IlgpuDeviceKind.OpenCL) ? IlgpuDevices.Create(IlgpuDeviceKind.OpenCL)
            : new CpuBackend(threads),
    };
}
