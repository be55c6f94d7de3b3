// Host-memory activations for the CPU backends: a plain float array, recycled through a pool when disposed.
// Fresh large arrays come from the OS as untouched pages, and the first write to each page faults: an encoder call
// that allocated its work buffers anew spent a measurable share of its time there (see docs/BENCHMARKS.md,
// "Measurements behind kernel choices"). Recycled arrays are already mapped.
using System.Collections.Concurrent;

namespace ManagedT5.Kernels.Cpu;

/// <summary>A buffer of floats in a managed array (CPU backends).</summary>
public sealed class CpuBuffer : IBuffer
{
    private readonly CpuBufferPool? _pool;
    private int _disposed;

    /// <summary>The floats.</summary>
    public float[] Data { get; }

    /// <inheritdoc />
    public int Length => Data.Length;

    /// <summary>Allocates <paramref name="length"/> zeroed floats.</summary>
    public CpuBuffer(int length) => Data = new float[length];

    internal CpuBuffer(float[] data, CpuBufferPool pool)
    {
        Data = data;
        _pool = pool;
    }

    /// <summary>The first <paramref name="length"/> floats as a span.</summary>
    public Span<float> Span(int length) => Data.AsSpan(0, length);

    /// <summary>Gives the array back to the pool it came from (once); the buffer must not be used afterwards.</summary>
    public void Dispose()
    {
        if (_pool is not null && Interlocked.Exchange(ref _disposed, 1) == 0) _pool.Return(Data);
    }

    internal static CpuBuffer Of(IBuffer buffer) => buffer as CpuBuffer
        ?? throw new ArgumentException($"Buffer of type {buffer.GetType().Name} does not belong to a CPU backend.", nameof(buffer));
}

/// <summary>
/// Recycles the arrays of disposed <see cref="CpuBuffer"/>s by exact length (a model asks for the same few sizes
/// over and over). Rented buffers are zeroed, as fresh ones are. Holds at most <see cref="MaxRetainedBytes"/>.
/// </summary>
public sealed class CpuBufferPool
{
    private readonly ConcurrentDictionary<int, ConcurrentBag<float[]>> _free = new();
    private long _retainedBytes;

    /// <summary>Most bytes of idle arrays kept for reuse; beyond it disposed arrays go to the GC.</summary>
    public long MaxRetainedBytes { get; }

    /// <summary>A pool keeping up to <paramref name="maxRetainedBytes"/> of idle arrays.</summary>
    public CpuBufferPool(long maxRetainedBytes = 1L << 30) => MaxRetainedBytes = maxRetainedBytes;

    /// <summary>Bytes of idle arrays held now.</summary>
    public long RetainedBytes => Interlocked.Read(ref _retainedBytes);

    /// <summary>A zeroed buffer of <paramref name="length"/> floats, recycled when one of that length is free.</summary>
    public CpuBuffer Rent(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (_free.TryGetValue(length, out ConcurrentBag<float[]>? bag) && bag.TryTake(out float[]? data))
        {
            Interlocked.Add(ref _retainedBytes, -4L * length);
            Array.Clear(data);
            return new CpuBuffer(data, this);
        }
        return new CpuBuffer(new float[length], this);
    }

    internal void Return(float[] data)
    {
        long bytes = 4L * data.Length;
        if (Interlocked.Add(ref _retainedBytes, bytes) > MaxRetainedBytes)
        {
            Interlocked.Add(ref _retainedBytes, -bytes);
            return;
        }
        _free.GetOrAdd(data.Length, _ => new ConcurrentBag<float[]>()).Add(data);
    }
}
