// Host-memory weights for the CPU backends: F32/F16/BF16 used in place from the checkpoint's memory map,
// or converted once into native memory (F32 -> BF16, anything -> int8 with per-row scales) on request.
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ManagedT5.Kernels.Cpu;

/// <summary>A weight in host memory. Row-major; a linear weight is [out_features, in_features].</summary>
public sealed unsafe class CpuWeight : IWeight
{
    private void* _owned;          // native memory this weight allocated (null when it points into a checkpoint)
    private readonly float[]? _scales;   // int8 only; both pinned (kernels keep their address for the weight's life)
    private readonly int[]? _rowSums;

    /// <inheritdoc />
    public string Name { get; }
    /// <inheritdoc />
    public IReadOnlyList<int> Shape { get; }
    /// <inheritdoc />
    public WeightFormat Format { get; }
    /// <summary>Address of element 0.</summary>
    public nint Data { get; }
    /// <summary>Rows (the first dimension; 1 for a vector).</summary>
    public int Rows { get; }
    /// <summary>Elements per row (the last dimension).</summary>
    public int Cols { get; }
    /// <summary>Per-row dequantization scales (Int8 only): value = q * scale[row].</summary>
    public ReadOnlySpan<float> Scales => _scales;
    /// <summary>Per-row sums of the stored integers (Int8 only): sum_k q[row, k]. A kernel that multiplies int8 weights
    /// with activations stored as u = q + zero point subtracts zero point * this sum; computing it at load spares every
    /// call a second pass over the row.</summary>
    public ReadOnlySpan<int> RowSums => _rowSums;

    /// <summary>Address of <see cref="Scales"/>' first element (null unless Int8). The array is pinned, so the address
    /// holds while the weight lives.</summary>
    internal float* ScalesAddress => _scales is null ? null : (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_scales));
    /// <summary>Address of <see cref="RowSums"/>' first element (null unless Int8); pinned like the scales.</summary>
    internal int* RowSumsAddress => _rowSums is null ? null : (int*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_rowSums));

    /// <inheritdoc />
    public long ByteLength => (long)Rows * Cols * BytesPerElement(Format) + ((_scales?.Length ?? 0) + (_rowSums?.Length ?? 0)) * 4L;

    private CpuWeight(string name, IReadOnlyList<int> shape, WeightFormat format, nint data, void* owned, float[]? scales,
        int[]? rowSums = null)
    {
        Name = name;
        Shape = shape;
        Format = format;
        Data = data;
        _owned = owned;
        _scales = scales;
        _rowSums = rowSums;
        Cols = shape.Count == 0 ? 1 : shape[^1];
        long rows = 1;
        for (int i = 0; i < shape.Count - 1; i++) rows *= shape[i];
        Rows = checked((int)rows);
    }

    /// <summary>Makes a CPU weight from a stored tensor, converting only when <paramref name="format"/> asks for it.</summary>
    public static CpuWeight Create(HostTensor source, WeightFormat? format)
    {
        WeightFormat stored = source.DType.AsStoredWeightFormat() ?? throw new ArgumentException(
            $"Tensor '{source.Name}' has dtype {source.DType}; weights must be F32, F16 or BF16.", nameof(source));
        WeightFormat target = format ?? stored;
        if (target == stored)
            return new CpuWeight(source.Name, source.Shape, stored, source.Data, null, null);

        long count = source.ElementCount;
        switch (target)
        {
            case WeightFormat.F32:
            {
                var p = (float*)NativeMemory.AlignedAlloc((nuint)(count * 4), 64);
                for (long i = 0; i < count; i++) p[i] = source.GetSingle(i);
                return new CpuWeight(source.Name, source.Shape, target, (nint)p, p, null);
            }
            case WeightFormat.BF16:
            {
                var p = (ushort*)NativeMemory.AlignedAlloc((nuint)(count * 2), 64);
                if (source.DType == DType.F32) ConvertF32(source, p, &DTypes.SingleToBFloat16);
                else for (long i = 0; i < count; i++) p[i] = DTypes.SingleToBFloat16(source.GetSingle(i));
                return new CpuWeight(source.Name, source.Shape, target, (nint)p, p, null);
            }
            case WeightFormat.F16:
            {
                var p = (Half*)NativeMemory.AlignedAlloc((nuint)(count * 2), 64);
                if (source.DType == DType.F32) ConvertF32(source, p, &TensorPrimitives.ConvertToHalf);
                else for (long i = 0; i < count; i++) p[i] = (Half)source.GetSingle(i);
                return new CpuWeight(source.Name, source.Shape, target, (nint)p, p, null);
            }
            case WeightFormat.Int8:
                return QuantizeInt8(source);
            default:
                throw new ArgumentOutOfRangeException(nameof(format), format, "Unknown weight format.");
        }
    }

    /// <summary>An F32 tensor through a bulk span conversion, in pieces a span can hold.</summary>
    private static void ConvertF32<T>(HostTensor source, T* destination, delegate*<ReadOnlySpan<float>, Span<T>, void> convert)
        where T : unmanaged
    {
        var from = (float*)source.Data;
        for (long i = 0; i < source.ElementCount; i += 1 << 30)
        {
            int n = (int)Math.Min(source.ElementCount - i, 1 << 30);
            convert(new ReadOnlySpan<float>(from + i, n), new Span<T>(destination + i, n));
        }
    }

    /// <summary>Symmetric per-row int8: scale = max|row| / 127, q = round(x / scale); and each row's sum of q.</summary>
    private static CpuWeight QuantizeInt8(HostTensor source)
    {
        int cols = source.Shape.Count == 0 ? 1 : source.Shape[^1];
        int rows = checked((int)(source.ElementCount / Math.Max(cols, 1)));
        var p = (sbyte*)NativeMemory.AlignedAlloc((nuint)Math.Max(source.ElementCount, 1), 64);
        float[] scales = GC.AllocateArray<float>(rows, pinned: true);
        int[] rowSums = GC.AllocateArray<int>(rows, pinned: true);
        // Each row widened once into a buffer (F32 rows are read in place), then two tight passes over it.
        float[]? widened = source.DType == DType.F32 ? null : new float[cols];
        for (long r = 0; r < rows; r++)
        {
            ReadOnlySpan<float> row;
            if (widened is null) row = new ReadOnlySpan<float>((float*)source.Data + r * cols, cols);
            else
            {
                for (int c = 0; c < cols; c++) widened[c] = source.GetSingle(r * cols + c);
                row = widened;
            }
            float max = row.IsEmpty ? 0 : MathF.Abs(TensorPrimitives.MaxMagnitude(row));
            float scale = max / 127f;
            scales[r] = scale;
            rowSums[r] = QuantizeRow(row, p + r * cols, scale == 0 ? 0 : 1f / scale);
        }
        return new CpuWeight(source.Name, source.Shape, WeightFormat.Int8, (nint)p, p, scales, rowSums);
    }

    /// <summary>q[c] = clamp(round half to even (row[c] * inverse), -127, 127), 32 at a time where the vectors are
    /// accelerated (the same IEEE multiply and rounding as the scalar tail, so the bytes do not depend on the path);
    /// returns sum_c q[c].</summary>
    private static int QuantizeRow(ReadOnlySpan<float> row, sbyte* q, float inverse)
    {
        int c = 0, sum = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var multiplier = Vector256.Create(inverse);
            Vector256<int> low = Vector256.Create(-127), high = Vector256.Create(127), sums = Vector256<int>.Zero;
            fixed (float* x = row)
                for (; c <= row.Length - 32; c += 32)
                {
                    Vector256<int> a = Quantize(Vector256.Load(x + c)), b = Quantize(Vector256.Load(x + c + 8));
                    Vector256<int> d = Quantize(Vector256.Load(x + c + 16)), e = Quantize(Vector256.Load(x + c + 24));
                    sums += (a + b) + (d + e);
                    Vector256.Narrow(Vector256.Narrow(a, b), Vector256.Narrow(d, e)).Store(q + c);
                }
            sum = Vector256.Sum(sums);

            Vector256<int> Quantize(Vector256<float> v) =>
                Vector256.Min(Vector256.Max(Vector256.ConvertToInt32(Vector256.Round(v * multiplier)), low), high);
        }
        for (; c < row.Length; c++)
        {
            var value = (sbyte)Math.Clamp(MathF.Round(row[c] * inverse), -127, 127);
            q[c] = value;
            sum += value;
        }
        return sum;
    }

    /// <summary>Element (row, col) widened to float (dequantized for Int8). The slow, obvious accessor.</summary>
    public float Get(int row, int col)
    {
        long i = (long)row * Cols + col;
        return Format switch
        {
            WeightFormat.F32 => ((float*)Data)[i],
            WeightFormat.F16 => (float)((Half*)Data)[i],
            WeightFormat.BF16 => DTypes.BFloat16ToSingle(((ushort*)Data)[i]),
            WeightFormat.Int8 => ((sbyte*)Data)[i] * _scales![row],
            _ => throw new InvalidOperationException(),
        };
    }

    /// <summary>Bytes per stored element of a format.</summary>
    public static int BytesPerElement(WeightFormat format) => format switch
    {
        WeightFormat.F32 => 4,
        WeightFormat.F16 or WeightFormat.BF16 => 2,
        WeightFormat.Int8 => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(format)),
    };

    /// <inheritdoc />
    public void Dispose()
    {
        if (_owned != null)
        {
            NativeMemory.AlignedFree(_owned);
            _owned = null;
        }
    }

    internal static CpuWeight Of(IWeight weight) => weight as CpuWeight
        ?? throw new ArgumentException($"Weight '{weight.Name}' does not belong to a CPU backend.", nameof(weight));
}
