// Reads a run of one weight row as floats, whatever the format: used by GEMM packing, embeddings and norm weights.
// Widening is exact (and int8 is dequantized as q * scale[row], like CpuWeight.Get), so any vector width gives the
// same floats. BF16 is a 16-bit shift, F16 goes through HalfBits, int8 is sign-extended and scaled.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ManagedT5.Kernels.Cpu;

/// <summary>
/// What a kernel needs of a <see cref="CpuWeight"/>, as a plain unmanaged struct so that parallel jobs can carry it.
/// <see cref="Scales"/> and <see cref="RowSums"/> point at the int8 weight's pinned arrays (null for other formats).
/// </summary>
internal readonly unsafe struct WeightView(nint data, WeightFormat format, int rows, int cols, float* scales, int* rowSums = null)
{
    /// <summary>The view of a CPU weight (its scales and row sums are pinned, so no <c>fixed</c> is needed).</summary>
    public static WeightView Of(CpuWeight weight) =>
        new(weight.Data, weight.Format, weight.Rows, weight.Cols, weight.ScalesAddress, weight.RowSumsAddress);

    /// <summary>Address of element 0.</summary>
    public readonly nint Data = data;
    /// <summary>Storage format.</summary>
    public readonly WeightFormat Format = format;
    /// <summary>Rows: out_features of a linear weight.</summary>
    public readonly int Rows = rows;
    /// <summary>Elements per row: in_features of a linear weight.</summary>
    public readonly int Cols = cols;
    /// <summary>Per-row int8 scales, or null.</summary>
    public readonly float* Scales = scales;
    /// <summary>Per-row sums of the int8 weights (<see cref="CpuWeight.RowSums"/>), or null.</summary>
    public readonly int* RowSums = rowSums;
}

/// <summary>Widening reads of weight rows.</summary>
internal static unsafe class WeightRows
{
    /// <summary>destination[i] = W[row, start + i] for i &lt; count, as float (dequantized for int8).</summary>
    public static void Widen(in WeightView weight, int row, int start, int count, float* destination)
    {
        long first = (long)row * weight.Cols + start;
        var output = new Span<float>(destination, count);
        switch (weight.Format)
        {
            case WeightFormat.F32:
                new ReadOnlySpan<float>((float*)weight.Data + first, count).CopyTo(output);
                break;
            case WeightFormat.F16:
                WidenHalf((ushort*)weight.Data + first, destination, count);
                break;
            case WeightFormat.BF16:
                WidenBFloat16((ushort*)weight.Data + first, destination, count);
                break;
            case WeightFormat.Int8:
                DequantizeInt8((sbyte*)weight.Data + first, weight.Scales[row], destination, count);
                break;
            default:
                throw new NotSupportedException($"Weight format {weight.Format} is not one the CPU backend reads.");
        }
    }

    /// <summary>destination[i] = q[i] * scale: sign-extend each byte to int32, convert, scale (as CpuWeight.Get does).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DequantizeInt8(sbyte* q, float scale, float* destination, int count)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i <= count - 64; i += 64)
            {
                (Vector512<short> low, Vector512<short> high) = Vector512.Widen(Vector512.Load(q + i));
                (Vector512<int> a, Vector512<int> b) = Vector512.Widen(low);
                (Vector512<int> c, Vector512<int> d) = Vector512.Widen(high);
                (Vector512.ConvertToSingle(a) * scale).Store(destination + i);
                (Vector512.ConvertToSingle(b) * scale).Store(destination + i + 16);
                (Vector512.ConvertToSingle(c) * scale).Store(destination + i + 32);
                (Vector512.ConvertToSingle(d) * scale).Store(destination + i + 48);
            }
        if (Vector256.IsHardwareAccelerated)
            for (; i <= count - 32; i += 32)
            {
                (Vector256<short> low, Vector256<short> high) = Vector256.Widen(Vector256.Load(q + i));
                (Vector256<int> a, Vector256<int> b) = Vector256.Widen(low);
                (Vector256<int> c, Vector256<int> d) = Vector256.Widen(high);
                (Vector256.ConvertToSingle(a) * scale).Store(destination + i);
                (Vector256.ConvertToSingle(b) * scale).Store(destination + i + 8);
                (Vector256.ConvertToSingle(c) * scale).Store(destination + i + 16);
                (Vector256.ConvertToSingle(d) * scale).Store(destination + i + 24);
            }
        for (; i < count; i++) destination[i] = q[i] * scale;
    }

    /// <summary>IEEE half bits to float (TensorPrimitives.ConvertToSingle(Half) is far slower here): zero-extend to 32
    /// bits and widen with <see cref="HalfBits"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WidenHalf(ushort* source, float* destination, int count)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i <= count - 32; i += 32)
            {
                (Vector512<uint> low, Vector512<uint> high) = Vector512.Widen(Vector512.Load(source + i));
                HalfBits.Low(low).Store(destination + i);
                HalfBits.Low(high).Store(destination + i + 16);
            }
        if (Vector256.IsHardwareAccelerated)
            for (; i <= count - 16; i += 16)
            {
                (Vector256<uint> low, Vector256<uint> high) = Vector256.Widen(Vector256.Load(source + i));
                HalfBits.Low(low).Store(destination + i);
                HalfBits.Low(high).Store(destination + i + 8);
            }
        for (; i < count; i++) destination[i] = (float)BitConverter.UInt16BitsToHalf(source[i]);
    }

    /// <summary>bfloat16 bits to float: zero-extend to 32 bits and shift into the top half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WidenBFloat16(ushort* source, float* destination, int count)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
            for (; i <= count - 32; i += 32)
            {
                (Vector512<uint> low, Vector512<uint> high) = Vector512.Widen(Vector512.Load(source + i));
                Vector512.ShiftLeft(low, 16).AsSingle().Store(destination + i);
                Vector512.ShiftLeft(high, 16).AsSingle().Store(destination + i + 16);
            }
        if (Vector256.IsHardwareAccelerated)
            for (; i <= count - 16; i += 16)
            {
                (Vector256<uint> low, Vector256<uint> high) = Vector256.Widen(Vector256.Load(source + i));
                Vector256.ShiftLeft(low, 16).AsSingle().Store(destination + i);
                Vector256.ShiftLeft(high, 16).AsSingle().Store(destination + i + 8);
            }
        for (; i < count; i++) destination[i] = BitConverter.Int32BitsToSingle(source[i] << 16);
    }
}
