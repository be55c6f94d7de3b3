// A weight uploaded once to the device, in the width it is stored in: F32 as floats, F16/BF16 as their 16-bit
// patterns (widened inside the kernels), Int8 as bytes plus one fp32 scale per row.
using ILGPU;
using ILGPU.Runtime;
using ManagedT5.Kernels.Ilgpu.Kernels;

namespace ManagedT5.Kernels.Ilgpu;

/// <summary>A weight tensor in device memory. Row-major; a linear weight is [out_features, in_features].</summary>
public sealed class IlgpuWeight : IWeight
{
    private MemoryBuffer1D<float, Stride1D.Dense>? _floats;   // F32 elements
    private MemoryBuffer1D<ushort, Stride1D.Dense>? _halves;  // F16 / BF16 bit patterns
    private MemoryBuffer1D<sbyte, Stride1D.Dense>? _bytes;    // Int8 elements
    private MemoryBuffer1D<float, Stride1D.Dense>? _scales;   // Int8 per-row scales

    internal IlgpuWeight(IlgpuBackend owner, string name, IReadOnlyList<int> shape, WeightFormat format, int rows, int cols,
        MemoryBuffer1D<float, Stride1D.Dense>? floats, MemoryBuffer1D<ushort, Stride1D.Dense>? halves,
        MemoryBuffer1D<sbyte, Stride1D.Dense>? bytes, MemoryBuffer1D<float, Stride1D.Dense>? scales)
    {
        Owner = owner;
        Name = name;
        Shape = shape;
        Format = format;
        Rows = rows;
        Cols = cols;
        _floats = floats;
        _halves = halves;
        _bytes = bytes;
        _scales = scales;
        ByteLength = (floats?.LengthInBytes ?? 0) + (halves?.LengthInBytes ?? 0) + (bytes?.LengthInBytes ?? 0)
            + (scales?.LengthInBytes ?? 0);
    }

    /// <inheritdoc />
    public string Name { get; }
    /// <inheritdoc />
    public IReadOnlyList<int> Shape { get; }
    /// <inheritdoc />
    public WeightFormat Format { get; }
    /// <inheritdoc />
    public long ByteLength { get; }
    /// <summary>Rows (every dimension but the last multiplied; 1 for a vector).</summary>
    public int Rows { get; }
    /// <summary>Elements per row (the last dimension).</summary>
    public int Cols { get; }

    internal IlgpuBackend Owner { get; }

    internal F32Weights F32View => new(Live(_floats).View);
    internal F16Weights F16View => new(Live(_halves).View);
    internal BF16Weights BF16View => new(Live(_halves).View);
    internal Int8Weights Int8View => new(Live(_bytes).View, Live(_scales).View);

    private T Live<T>(T? memory) where T : class =>
        memory ?? throw new ObjectDisposedException(nameof(IlgpuWeight), $"Weight '{Name}' has been disposed.");

    /// <inheritdoc />
    public void Dispose()
    {
        Free(ref _floats);
        Free(ref _halves);
        Free(ref _bytes);
        Free(ref _scales);
    }

    private void Free<T>(ref T? memory) where T : MemoryBuffer
    {
        var taken = Interlocked.Exchange(ref memory, null);
        if (taken is not null) Owner.Release(taken, taken.LengthInBytes);
    }
}
