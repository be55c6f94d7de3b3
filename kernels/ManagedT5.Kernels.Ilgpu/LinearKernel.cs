// Which of the three linear kernels IlgpuBackend.Linear runs (Auto in normal use; the others for tests and benchmarks).
namespace ManagedT5.Kernels.Ilgpu;

/// <summary>The kernel behind <see cref="IlgpuBackend.Linear(IBuffer, IWeight, IBuffer, int, bool, LinearKernel)"/>.</summary>
public enum LinearKernel
{
    /// <summary>GPU: <see cref="Gemv"/> for up to <see cref="IlgpuBackend.GemvMaxRows"/> rows, else <see cref="Tiled"/>.
    /// ILGPU's CPU accelerator: <see cref="Naive"/> (it runs each group's threads as OS threads, so barriers and warp
    /// shuffles cost far more than they save there).</summary>
    Auto,
    /// <summary>One thread per output element: the plain reference kernel and fallback.</summary>
    Naive,
    /// <summary>16x16 tiles of input and weight staged in shared memory (rows &gt; 1: encoding a prompt).</summary>
    Tiled,
    /// <summary>One warp per output feature with a shuffle reduction (decoding a token: memory-bound).</summary>
    Gemv,
}
