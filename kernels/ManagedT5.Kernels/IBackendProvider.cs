// How an optional backend package plugs in: it implements IBackendProvider, and the engine's BackendFactory finds it
// when the package is referenced (so an app that only runs on the CPU never loads, or even restores, ILGPU).
namespace ManagedT5.Kernels;

/// <summary>Creates the backends of one optional package for the device names it serves.</summary>
public interface IBackendProvider
{
    /// <summary>The package to reference for this provider, for messages ("ManagedT5.Kernels.Ilgpu").</summary>
    string Package { get; }

    /// <summary>Device names this provider serves ("cuda", "opencl", "ilgpu-cpu").</summary>
    IReadOnlyList<string> Devices { get; }

    /// <summary>A backend on <paramref name="device"/>, one of <see cref="Devices"/>; throws
    /// <see cref="NotSupportedException"/> naming the device when this machine has none.</summary>
    IBackend Create(string device);

    /// <summary>The best accelerator present (a GPU), or null when there is none worth using over the CPU backend.</summary>
    IBackend? CreateBest();
}
