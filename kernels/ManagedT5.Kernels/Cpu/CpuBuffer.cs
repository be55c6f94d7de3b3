// Host-memory activations for the CPU backends: a plain float array.
namespace ManagedT5.Kernels.Cpu;

/// <summary>A buffer of floats in a managed array (CPU backends).</summary>
public sealed class CpuBuffer : IBuffer
{
    /// <summary>The floats.</summary>
    public float[] Data { get; }

    /// <inheritdoc />
    public int Length => Data.Length;

    /// <summary>Allocates <paramref name="length"/> zeroed floats.</summary>
    public CpuBuffer(int length) => Data = new float[length];

    /// <summary>The first <paramref name="length"/> floats as a span.</summary>
    public Span<float> Span(int length) => Data.AsSpan(0, length);

    /// <inheritdoc />
    public void Dispose() { }

    internal static CpuBuffer Of(IBuffer buffer) => buffer as CpuBuffer
        ?? throw new ArgumentException($"Buffer of type {buffer.GetType().Name} does not belong to a CPU backend.", nameof(buffer));
}
