// A stored tensor seen in host memory (usually inside a memory-mapped checkpoint): dtype, shape, address.
// Backends turn these into their own weight objects (CPU: used in place; GPU: uploaded once).
namespace ManagedT5.Kernels;

/// <summary>
/// A read-only view of a tensor in host memory. The memory belongs to whoever made the view (the checkpoint's
/// memory map) and must outlive every weight created from it on a backend that uses memory in place.
/// </summary>
public readonly unsafe struct HostTensor
{
    /// <summary>Name of the tensor (checkpoint name), for messages.</summary>
    public string Name { get; }
    /// <summary>Element type.</summary>
    public DType DType { get; }
    /// <summary>Shape, outermost first (a linear weight is [out_features, in_features]).</summary>
    public IReadOnlyList<int> Shape { get; }
    /// <summary>Address of the first element.</summary>
    public nint Data { get; }
    /// <summary>Number of elements (product of the shape).</summary>
    public long ElementCount { get; }

    /// <summary>Creates a view; the caller guarantees that <paramref name="data"/> holds the whole tensor.</summary>
    public HostTensor(string name, DType dtype, IReadOnlyList<int> shape, nint data)
    {
        Name = name;
        DType = dtype;
        Shape = shape;
        Data = data;
        long count = 1;
        foreach (int d in shape) count *= d;
        ElementCount = count;
    }

    /// <summary>Size in bytes.</summary>
    public long ByteLength => ElementCount * DType.SizeOf();

    /// <summary>The raw bytes.</summary>
    public ReadOnlySpan<byte> Bytes => new((void*)Data, checked((int)ByteLength));

    /// <summary>Element <paramref name="index"/> widened to float (F32, F16, BF16; I8/U8 as their integer value).</summary>
    public float GetSingle(long index) => DType switch
    {
        DType.F32 => ((float*)Data)[index],
        DType.F16 => (float)((Half*)Data)[index],
        DType.BF16 => DTypes.BFloat16ToSingle(((ushort*)Data)[index]),
        DType.I8 => ((sbyte*)Data)[index],
        DType.U8 => ((byte*)Data)[index],
        DType.I64 => ((long*)Data)[index],
        _ => throw new InvalidOperationException($"Tensor '{Name}' has dtype {DType}, which cannot be read as float."),
    };

    /// <summary>The whole tensor widened to a new float array.</summary>
    public float[] ToSingleArray()
    {
        var result = new float[ElementCount];
        if (DType == DType.F32)
        {
            new ReadOnlySpan<float>((void*)Data, result.Length).CopyTo(result);
            return result;
        }
        for (long i = 0; i < result.Length; i++) result[i] = GetSingle(i);
        return result;
    }

    /// <summary>The whole tensor as 64-bit integers (I64 only).</summary>
    public long[] ToInt64Array()
    {
        if (DType != DType.I64) throw new InvalidOperationException($"Tensor '{Name}' has dtype {DType}, not I64.");
        return new ReadOnlySpan<long>((void*)Data, checked((int)ElementCount)).ToArray();
    }
}
