// Element types a checkpoint tensor can have, and how wide each is. Matches safetensors' dtype strings.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ManagedT5.Kernels;

/// <summary>Element type of a stored tensor (safetensors spelling in comments).</summary>
public enum DType
{
    /// <summary>"F32": IEEE binary32.</summary>
    F32,
    /// <summary>"F16": IEEE binary16.</summary>
    F16,
    /// <summary>"BF16": bfloat16, the upper half of a binary32.</summary>
    BF16,
    /// <summary>"I8": signed byte (int8 weights, with per-row scales).</summary>
    I8,
    /// <summary>"U8": unsigned byte.</summary>
    U8,
    /// <summary>"I64": 64-bit signed integer (token ids in reference files).</summary>
    I64,
}

/// <summary>Helpers on <see cref="DType"/>.</summary>
public static class DTypes
{
    /// <summary>Bytes per element.</summary>
    public static int SizeOf(this DType type) => type switch
    {
        DType.F32 => 4,
        DType.F16 or DType.BF16 => 2,
        DType.I8 or DType.U8 => 1,
        DType.I64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Unknown dtype."),
    };

    /// <summary>Parses a safetensors dtype string ("F32", "BF16", ...); false when it is not one we read.</summary>
    public static bool TryParse(string text, out DType type)
    {
        switch (text)
        {
            case "F32": type = DType.F32; return true;
            case "F16": type = DType.F16; return true;
            case "BF16": type = DType.BF16; return true;
            case "I8": type = DType.I8; return true;
            case "U8": type = DType.U8; return true;
            case "I64": type = DType.I64; return true;
            default: type = default; return false;
        }
    }

    /// <summary>The safetensors spelling of a dtype.</summary>
    public static string ToSafetensorsString(this DType type) => type.ToString();

    /// <summary>The weight format a tensor of this dtype is used in as stored (F32, F16, BF16), or null for dtypes that
    /// are not weights.</summary>
    public static WeightFormat? AsStoredWeightFormat(this DType type) => type switch
    {
        DType.F32 => WeightFormat.F32,
        DType.F16 => WeightFormat.F16,
        DType.BF16 => WeightFormat.BF16,
        _ => null,
    };

    /// <summary>bfloat16 bits to float: the bits are the upper half of a binary32.</summary>
    public static float BFloat16ToSingle(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary><see cref="SingleToBFloat16(float)"/> over a span, 8 at a time (converting checkpoints at load):
    /// the same integer arithmetic on every lane, so the bits equal the scalar conversion's.</summary>
    public static void SingleToBFloat16(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        if (destination.Length < source.Length)
            throw new ArgumentException($"{destination.Length} outputs for {source.Length} values.", nameof(destination));
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            ref uint bits = ref Unsafe.As<float, uint>(ref MemoryMarshal.GetReference(source));
            ref ushort output = ref MemoryMarshal.GetReference(destination);
            for (; i <= source.Length - 16; i += 16)
            {
                Vector256<uint> low = RoundToBFloat16(Vector256.LoadUnsafe(ref bits, (nuint)i));
                Vector256<uint> high = RoundToBFloat16(Vector256.LoadUnsafe(ref bits, (nuint)i + 8));
                Vector256.Narrow(low, high).StoreUnsafe(ref output, (nuint)i);
            }
        }
        for (; i < source.Length; i++) destination[i] = SingleToBFloat16(source[i]);
    }

    /// <summary><see cref="SingleToBFloat16(float)"/> on 8 lanes of float bits, the result in each lane's low half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> RoundToBFloat16(Vector256<uint> bits)
    {
        Vector256<uint> rounded = (bits + Vector256.Create(0x7FFFu) + ((bits >> 16) & Vector256<uint>.One)) >> 16;
        Vector256<uint> nan = Vector256.GreaterThan(bits & Vector256.Create(0x7FFFFFFFu), Vector256.Create(0x7F800000u));
        return Vector256.ConditionalSelect(nan, (bits >> 16) | Vector256.Create(0x40u), rounded);
    }

    /// <summary>float to bfloat16 bits, rounding to nearest even (NaN stays NaN).</summary>
    public static ushort SingleToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x40);
        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }
}
