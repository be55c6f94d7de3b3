// Element types a checkpoint tensor can have, and how wide each is. Matches safetensors' dtype strings.
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

    /// <summary>bfloat16 bits to float: the bits are the upper half of a binary32.</summary>
    public static float BFloat16ToSingle(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>float to bfloat16 bits, rounding to nearest even (NaN stays NaN).</summary>
    public static ushort SingleToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x40);
        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }
}
