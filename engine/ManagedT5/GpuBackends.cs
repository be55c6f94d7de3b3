// ILGPU devices behind the factory (kept apart so the CPU path never touches ILGPU types).
using ManagedT5.Kernels;

namespace ManagedT5;

internal static class GpuBackends
{
    public static IBackend Create(string device, int threads) =>
        throw new NotSupportedException($"device '{device}': the ILGPU backend is not built into this version.");
}
