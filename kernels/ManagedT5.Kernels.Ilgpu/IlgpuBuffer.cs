// Activations in device memory: a MemoryBuffer1D<float> owned by one IlgpuBackend.
using ILGPU;
using ILGPU.Runtime;

namespace ManagedT5.Kernels.Ilgpu;

/// <summary>A buffer of floats on an ILGPU accelerator. Create with <see cref="BackendBase.Allocate"/>; move data
/// with <see cref="BackendBase.Upload"/> and <see cref="BackendBase.Download"/>.</summary>
public sealed class IlgpuBuffer : IBuffer
{
    private MemoryBuffer1D<float, Stride1D.Dense>? _memory;

    internal IlgpuBuffer(IlgpuBackend owner, MemoryBuffer1D<float, Stride1D.Dense> memory, int length)
    {
        Owner = owner;
        _memory = memory;
        Length = length;
    }

    /// <inheritdoc />
    public int Length { get; }

    internal IlgpuBackend Owner { get; }

    /// <summary>The device memory as a kernel argument.</summary>
    internal ArrayView<float> View => Memory.View;

    /// <summary>The device memory itself (copies use its dense view).</summary>
    internal MemoryBuffer1D<float, Stride1D.Dense> Memory => _memory ?? throw new ObjectDisposedException(nameof(IlgpuBuffer));

    /// <inheritdoc />
    public void Dispose()
    {
        var memory = Interlocked.Exchange(ref _memory, null);
        if (memory is null) return;
        Owner.Release(memory, memory.LengthInBytes);
    }
}
