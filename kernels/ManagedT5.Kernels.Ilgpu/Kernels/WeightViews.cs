// How a kernel reads a weight: one small struct per storage format. Weights stay in their stored width on the
// device (F16/BF16: 2 bytes, Int8: 1 byte + a scale per row) and are widened to fp32 in registers, element by element.
using ILGPU;

namespace ManagedT5.Kernels.Ilgpu.Kernels;

/// <summary>A weight as a kernel sees it: a flat row-major array of elements plus a per-row scale.</summary>
/// <remarks>Kernels are generic over this interface (<c>where TWeight : struct, IWeightView</c>), so ILGPU compiles
/// one specialised kernel per format and the widening is inlined: no branch on the format in the inner loop.</remarks>
internal interface IWeightView
{
    /// <summary>Element <paramref name="index"/> widened to float (Int8: the integer itself, not yet scaled).</summary>
    float Load(long index);

    /// <summary>The factor every element of <paramref name="row"/> is multiplied by: 1, except for Int8.</summary>
    float RowScale(int row);
}

/// <summary>fp32 weights: read as they are.</summary>
internal readonly struct F32Weights : IWeightView
{
    /// <summary>The elements.</summary>
    public readonly ArrayView<float> Data;

    public F32Weights(ArrayView<float> data) => Data = data;

    public float Load(long index) => Data[index];

    public float RowScale(int row) => 1f;
}

/// <summary>IEEE half weights, kept as their 16 bits and widened exactly.</summary>
internal readonly struct F16Weights : IWeightView
{
    /// <summary>The elements' bits.</summary>
    public readonly ArrayView<ushort> Data;

    public F16Weights(ArrayView<ushort> data) => Data = data;

    public float Load(long index) => HalfBits.ToSingle(Data[index]);

    public float RowScale(int row) => 1f;
}

/// <summary>bfloat16 weights: the upper 16 bits of an fp32, so widening is a shift.</summary>
internal readonly struct BF16Weights : IWeightView
{
    /// <summary>The elements' bits.</summary>
    public readonly ArrayView<ushort> Data;

    public BF16Weights(ArrayView<ushort> data) => Data = data;

    public float Load(long index) => Interop.IntAsFloat((uint)Data[index] << 16);

    public float RowScale(int row) => 1f;
}

/// <summary>Symmetric int8 weights with one fp32 scale per output row: value = q * scale[row].</summary>
internal readonly struct Int8Weights : IWeightView
{
    /// <summary>The quantized elements.</summary>
    public readonly ArrayView<sbyte> Data;
    /// <summary>One scale per row.</summary>
    public readonly ArrayView<float> Scales;

    public Int8Weights(ArrayView<sbyte> data, ArrayView<float> scales)
    {
        Data = data;
        Scales = scales;
    }

    public float Load(long index) => Data[index];

    public float RowScale(int row) => Scales[row];
}

/// <summary>IEEE binary16 bits to binary32, with integer and float operations every ILGPU backend has.</summary>
internal static class HalfBits
{
    /// <summary>Exact conversion (normals, subnormals, infinities, NaN), the same value as <c>(float)(Half)bits</c>.</summary>
    public static float ToSingle(ushort bits)
    {
        uint sign = (uint)(bits & 0x8000) << 16;
        // Exponent and mantissa moved to where binary32 keeps them. Read as a float this is the half's value times
        // 2^-112 (the difference of the exponent biases, 127 - 15); multiplying by 2^112 is exact, and because a
        // binary32 subnormal times 2^112 is a normal number, half subnormals come out right too.
        uint magnitude = (uint)(bits & 0x7FFF) << 13;
        float value = Interop.IntAsFloat(magnitude) * 5.192296858534828e33f; // 2^112
        if (magnitude >= 0x0F800000u) // exponent 31: infinity or NaN, keep the payload
            value = Interop.IntAsFloat(magnitude | 0x7F800000u);
        return Interop.IntAsFloat(Interop.FloatAsInt(value) | sign);
    }
}
