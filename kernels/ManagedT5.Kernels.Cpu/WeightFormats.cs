// How each weight format is read by the kernels: one small struct per format, with a scalar form and
// Vector128/256/512 forms (TensorPrimitives' operator pattern). Narrow formats are read in "lanes": a vector load
// of raw weights splits into 1, 2 or 4 float vectors with shifts and masks only (no shuffles), so the input x is
// laid out once per call to match (see LaneLayout). Widening BF16/F16/int8 to float is exact.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ManagedT5.Kernels.Cpu;

/// <summary>A weight element type as the GEMV sees it.</summary>
internal unsafe interface IWeightFormat
{
    /// <summary>Bytes per stored element.</summary>
    static abstract int ElementSize { get; }

    /// <summary>Element <paramref name="index"/> of <paramref name="row"/> widened to float (Int8: the raw integer).</summary>
    static abstract float Widen(byte* row, int index);

    /// <summary>Part <paramref name="part"/> (0 .. 4 / ElementSize - 1) of a raw 64-byte chunk, widened: the weights
    /// that meet x at chunk offset part * 16 in lane order.</summary>
    static abstract Vector512<float> Part(Vector512<uint> raw, int part);

    /// <summary>Part <paramref name="part"/> of a raw 32-byte chunk, widened (x at chunk offset part * 8).</summary>
    static abstract Vector256<float> Part(Vector256<uint> raw, int part);

    /// <summary>acc0 + acc1 += W chunk (64 bytes at <paramref name="w"/>) * x chunk (laid out in lanes at
    /// <paramref name="x"/>). The products are spread over two accumulators to halve the FMA dependency chain.</summary>
    static abstract void MultiplyAdd(byte* w, float* x, ref Vector512<float> acc0, ref Vector512<float> acc1);

    /// <summary>acc0 + acc1 += W chunk (32 bytes) * x chunk (in lanes).</summary>
    static abstract void MultiplyAdd(byte* w, float* x, ref Vector256<float> acc0, ref Vector256<float> acc1);

    /// <summary>acc0 + acc1 += W chunk (16 bytes) * x chunk (in lanes).</summary>
    static abstract void MultiplyAdd(byte* w, float* x, ref Vector128<float> acc0, ref Vector128<float> acc1);
}

/// <summary>fp32 weights: a chunk is one vector, x in natural order.</summary>
internal readonly unsafe struct F32Weights : IWeightFormat
{
    public static int ElementSize => 4;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Widen(byte* row, int index) => ((float*)row)[index];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Part(Vector512<uint> raw, int part) => raw.AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Part(Vector256<uint> raw, int part) => raw.AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void MultiplyAdd(byte* w, float* x, ref Vector512<float> acc0, ref Vector512<float> acc1) =>
        acc0 = Vector512.FusedMultiplyAdd(Vector512.Load((float*)w), Vector512.Load(x), acc0);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void MultiplyAdd(byte* w, float* x, ref Vector256<float> acc0, ref Vector256<float> acc1) =>
        acc0 = Vector256.FusedMultiplyAdd(Vector256.Load((float*)w), Vector256.Load(x), acc0);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void MultiplyAdd(byte* w, float* x, ref Vector128<float> acc0, ref Vector128<float> acc1) =>
        acc0 = Vector128.FusedMultiplyAdd(Vector128.Load((float*)w), Vector128.Load(x), acc0);
}

/// <summary>bfloat16 weights: each 32-bit lane holds elements 2l (low half) and 2l+1 (high half); a bf16 is the top
/// half of a float, so the low one is lane &lt;&lt; 16 and the high one is lane &amp; 0xFFFF0000.</summary>
internal readonly unsafe struct BF16Weights : IWeightFormat
{
    public static int ElementSize => 2;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Widen(byte* row, int index) => BitConverter.Int32BitsToSingle(((ushort*)row)[index] << 16);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Part(Vector512<uint> raw, int part) =>
        (part == 0 ? Vector512.ShiftLeft(raw, 16) : raw & Vector512.Create(0xFFFF0000u)).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Part(Vector256<uint> raw, int part) =>
        (part == 0 ? Vector256.ShiftLeft(raw, 16) : raw & Vector256.Create(0xFFFF0000u)).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void MultiplyAdd(byte* w, float* x, ref Vector512<float> acc0, ref Vector512<float> acc1)
    {
        Vector512<uint> pairs = Vector512.Load((uint*)w);
        acc0 = Vector512.FusedMultiplyAdd(Vector512.ShiftLeft(pairs, 16).AsSingle(), Vector512.Load(x), acc0);
        acc1 = Vector512.FusedMultiplyAdd((pairs & Vector512.Create(0xFFFF0000u)).AsSingle(), Vector512.Load(x + 16), acc1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void MultiplyAdd(byte* w, float* x, ref Vector256<float> acc0, ref Vector256<float> acc1)
    {
        Vector256<uint> pairs = Vector256.Load((uint*)w);
        acc0 = Vector256.FusedMultiplyAdd(Vector256.ShiftLeft(pairs, 16).AsSingle(), Vector256.Load(x), acc0);
        acc1 = Vector256.FusedMultiplyAdd((pairs & Vector256.Create(0xFFFF0000u)).AsSingle(), Vector256.Load(x + 8), acc1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void MultiplyAdd(byte* w, float* x, ref Vector128<float> acc0, ref Vector128<float> acc1)
    {
        Vector128<uint> pairs = Vector128.Load((uint*)w);
        acc0 = Vector128.FusedMultiplyAdd(Vector128.ShiftLeft(pairs, 16).AsSingle(), Vector128.Load(x), acc0);
        acc1 = Vector128.FusedMultiplyAdd((pairs & Vector128.Create(0xFFFF0000u)).AsSingle(), Vector128.Load(x + 4), acc1);
    }
}

/// <summary>IEEE half weights: like BF16, two per 32-bit lane, widened by <see cref="HalfBits"/>.</summary>
internal readonly unsafe struct F16Weights : IWeightFormat
{
    public static int ElementSize => 2;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Widen(byte* row, int index) => (float)((Half*)row)[index];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Part(Vector512<uint> raw, int part) => part == 0 ? HalfBits.Low(raw) : HalfBits.High(raw);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Part(Vector256<uint> raw, int part) => part == 0 ? HalfBits.Low(raw) : HalfBits.High(raw);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void MultiplyAdd(byte* w, float* x, ref Vector512<float> acc0, ref Vector512<float> acc1)
    {
        Vector512<uint> pairs = Vector512.Load((uint*)w);
        acc0 = Vector512.FusedMultiplyAdd(HalfBits.Low(pairs), Vector512.Load(x), acc0);
        acc1 = Vector512.FusedMultiplyAdd(HalfBits.High(pairs), Vector512.Load(x + 16), acc1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void MultiplyAdd(byte* w, float* x, ref Vector256<float> acc0, ref Vector256<float> acc1)
    {
        Vector256<uint> pairs = Vector256.Load((uint*)w);
        acc0 = Vector256.FusedMultiplyAdd(HalfBits.Low(pairs), Vector256.Load(x), acc0);
        acc1 = Vector256.FusedMultiplyAdd(HalfBits.High(pairs), Vector256.Load(x + 8), acc1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void MultiplyAdd(byte* w, float* x, ref Vector128<float> acc0, ref Vector128<float> acc1)
    {
        Vector128<uint> pairs = Vector128.Load((uint*)w);
        acc0 = Vector128.FusedMultiplyAdd(HalfBits.Low(pairs), Vector128.Load(x), acc0);
        acc1 = Vector128.FusedMultiplyAdd(HalfBits.High(pairs), Vector128.Load(x + 4), acc1);
    }
}

/// <summary>int8 weights (the per-row scale is applied by the caller): each 32-bit lane holds elements 4l..4l+3;
/// byte j is sign-extended by shifting it to the top and arithmetic-shifting it back down.</summary>
internal readonly unsafe struct Int8Weights : IWeightFormat
{
    public static int ElementSize => 1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Widen(byte* row, int index) => ((sbyte*)row)[index];

    // Byte `part` of each lane: shift it to the top, arithmetic-shift it back down (part 3 needs only the second).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Part(Vector512<uint> raw, int part) =>
        Vector512.ConvertToSingle(Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(raw.AsInt32(), 24 - 8 * part), 24));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Part(Vector256<uint> raw, int part) =>
        Vector256.ConvertToSingle(Vector256.ShiftRightArithmetic(Vector256.ShiftLeft(raw.AsInt32(), 24 - 8 * part), 24));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void MultiplyAdd(byte* w, float* x, ref Vector512<float> acc0, ref Vector512<float> acc1)
    {
        Vector512<int> quads = Vector512.Load((int*)w);
        acc0 = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(quads, 24), 24)), Vector512.Load(x), acc0);
        acc1 = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(quads, 16), 24)), Vector512.Load(x + 16), acc1);
        acc0 = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(Vector512.ShiftRightArithmetic(Vector512.ShiftLeft(quads, 8), 24)), Vector512.Load(x + 32), acc0);
        acc1 = Vector512.FusedMultiplyAdd(Vector512.ConvertToSingle(Vector512.ShiftRightArithmetic(quads, 24)), Vector512.Load(x + 48), acc1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void MultiplyAdd(byte* w, float* x, ref Vector256<float> acc0, ref Vector256<float> acc1)
    {
        Vector256<int> quads = Vector256.Load((int*)w);
        acc0 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(Vector256.ShiftRightArithmetic(Vector256.ShiftLeft(quads, 24), 24)), Vector256.Load(x), acc0);
        acc1 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(Vector256.ShiftRightArithmetic(Vector256.ShiftLeft(quads, 16), 24)), Vector256.Load(x + 8), acc1);
        acc0 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(Vector256.ShiftRightArithmetic(Vector256.ShiftLeft(quads, 8), 24)), Vector256.Load(x + 16), acc0);
        acc1 = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(Vector256.ShiftRightArithmetic(quads, 24)), Vector256.Load(x + 24), acc1);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void MultiplyAdd(byte* w, float* x, ref Vector128<float> acc0, ref Vector128<float> acc1)
    {
        Vector128<int> quads = Vector128.Load((int*)w);
        acc0 = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(Vector128.ShiftRightArithmetic(Vector128.ShiftLeft(quads, 24), 24)), Vector128.Load(x), acc0);
        acc1 = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(Vector128.ShiftRightArithmetic(Vector128.ShiftLeft(quads, 16), 24)), Vector128.Load(x + 4), acc1);
        acc0 = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(Vector128.ShiftRightArithmetic(Vector128.ShiftLeft(quads, 8), 24)), Vector128.Load(x + 8), acc0);
        acc1 = Vector128.FusedMultiplyAdd(Vector128.ConvertToSingle(Vector128.ShiftRightArithmetic(quads, 24)), Vector128.Load(x + 12), acc1);
    }
}

/// <summary>IEEE halves, two per 32-bit lane, to floats without F16C: move exponent and mantissa into float
/// position and multiply by 2^112 to rebias (subnormal halves come out right because the intermediate float is
/// itself subnormal); a half exponent of all ones (inf, NaN) becomes a float exponent of all ones; then the sign.</summary>
internal static class HalfBits
{
    private const float Rebias = 5.192297e33f;       // 2^112 = 2^(127 - 15)
    private const uint Magnitude = 0x7FFFu << 13;    // a half's exponent and mantissa, moved to float position
    private const uint Special = 0x7C00u << 13;      // half exponent all ones
    private const uint FloatExponent = 0x7F800000u;
    private const uint Sign = 0x80000000u;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Low(Vector512<uint> pairs) =>
        Combine(Vector512.ShiftLeft(pairs, 13) & Vector512.Create(Magnitude), Vector512.ShiftLeft(pairs, 16) & Vector512.Create(Sign));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> High(Vector512<uint> pairs) =>
        Combine(Vector512.ShiftRightLogical(pairs, 3) & Vector512.Create(Magnitude), pairs & Vector512.Create(Sign));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Combine(Vector512<uint> magnitude, Vector512<uint> sign)
    {
        Vector512<uint> value = (magnitude.AsSingle() * Vector512.Create(Rebias)).AsUInt32();
        Vector512<uint> special = Vector512.GreaterThanOrEqual(magnitude, Vector512.Create(Special)) & Vector512.Create(FloatExponent);
        return (value | special | sign).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Low(Vector256<uint> pairs) =>
        Combine(Vector256.ShiftLeft(pairs, 13) & Vector256.Create(Magnitude), Vector256.ShiftLeft(pairs, 16) & Vector256.Create(Sign));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> High(Vector256<uint> pairs) =>
        Combine(Vector256.ShiftRightLogical(pairs, 3) & Vector256.Create(Magnitude), pairs & Vector256.Create(Sign));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Combine(Vector256<uint> magnitude, Vector256<uint> sign)
    {
        Vector256<uint> value = (magnitude.AsSingle() * Vector256.Create(Rebias)).AsUInt32();
        Vector256<uint> special = Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(Special)) & Vector256.Create(FloatExponent);
        return (value | special | sign).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Low(Vector128<uint> pairs) =>
        Combine(Vector128.ShiftLeft(pairs, 13) & Vector128.Create(Magnitude), Vector128.ShiftLeft(pairs, 16) & Vector128.Create(Sign));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> High(Vector128<uint> pairs) =>
        Combine(Vector128.ShiftRightLogical(pairs, 3) & Vector128.Create(Magnitude), pairs & Vector128.Create(Sign));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Combine(Vector128<uint> magnitude, Vector128<uint> sign)
    {
        Vector128<uint> value = (magnitude.AsSingle() * Vector128.Create(Rebias)).AsUInt32();
        Vector128<uint> special = Vector128.GreaterThanOrEqual(magnitude, Vector128.Create(Special)) & Vector128.Create(FloatExponent);
        return (value | special | sign).AsSingle();
    }
}

/// <summary>
/// The order x must be in for the lane reads above. A chunk is one vector load of weights (64/32/16 bytes); its
/// element (lane l, part j) is weight index l * parts + j, and the matching x goes to chunk offset j * lanes + l.
/// Elements past the last whole chunk stay in natural order (read by the scalar tail).
/// </summary>
internal static unsafe class LaneLayout
{
    /// <summary>Weight elements in one chunk at <paramref name="level"/> (0 for scalar: natural order throughout).</summary>
    public static int ChunkElements(SimdLevel level, int elementSize) => level == SimdLevel.Scalar ? 0 : (int)level / 8 / elementSize;

    /// <summary>Copies x (length <paramref name="length"/>) to <paramref name="laid"/> in lane order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Arrange(float* x, float* laid, int length, SimdLevel level, int elementSize)
    {
        int chunk = ChunkElements(level, elementSize);
        int parts = 4 / elementSize, lanes = chunk / Math.Max(parts, 1);
        int whole = chunk == 0 ? 0 : length / chunk * chunk;
        for (int c = 0; c < whole; c += chunk)
            for (int l = 0; l < lanes; l++)
                for (int j = 0; j < parts; j++)
                    laid[c + j * lanes + l] = x[c + l * parts + j];
        for (int i = whole; i < length; i++) laid[i] = x[i];
    }
}
