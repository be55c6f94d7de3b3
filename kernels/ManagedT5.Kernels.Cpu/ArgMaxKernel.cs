// Greedy decoding's argmax over a row of logits: the largest value by a vector max, then the first index holding it
// (the reference's "first index on ties"). NaN rows fall back to the scalar loop (ScalarMath).
using System.Runtime.CompilerServices;
using System.Numerics;
using System.Runtime.Intrinsics;

namespace ManagedT5.Kernels.Cpu;

/// <summary>Row-wise argmax.</summary>
internal static unsafe class ArgMaxKernel
{
    /// <summary>Index of the largest of values[0 .. length), the first one on ties.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static int Run(float* values, int length, SimdLevel level)
    {
        if (length <= 0) return 0;
        float max = Max(values, length, level);
        if (float.IsNaN(max)) return ScalarMath.ArgMax(new ReadOnlySpan<float>(values, length));

        int i = 0;
        if (level >= SimdLevel.Vector512 && Vector512.IsHardwareAccelerated)
            for (Vector512<float> m = Vector512.Create(max); i <= length - 16; i += 16)
            {
                ulong hits = Vector512.Equals(Vector512.Load(values + i), m).ExtractMostSignificantBits();
                if (hits != 0) return i + BitOperations.TrailingZeroCount(hits);
            }
        if (level >= SimdLevel.Vector256 && Vector256.IsHardwareAccelerated)
            for (Vector256<float> m = Vector256.Create(max); i <= length - 8; i += 8)
            {
                uint hits = Vector256.Equals(Vector256.Load(values + i), m).ExtractMostSignificantBits();
                if (hits != 0) return i + BitOperations.TrailingZeroCount(hits);
            }
        if (level >= SimdLevel.Vector128 && Vector128.IsHardwareAccelerated)
            for (Vector128<float> m = Vector128.Create(max); i <= length - 4; i += 4)
            {
                uint hits = Vector128.Equals(Vector128.Load(values + i), m).ExtractMostSignificantBits();
                if (hits != 0) return i + BitOperations.TrailingZeroCount(hits);
            }
        for (; i < length; i++) if (values[i] == max) return i;
        return 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float Max(float* values, int length, SimdLevel level)
    {
        int i = 0;
        float max = float.NegativeInfinity;
        if (level >= SimdLevel.Vector512 && Vector512.IsHardwareAccelerated && length >= 16)
        {
            Vector512<float> m = Vector512.Load(values);
            for (i = 16; i <= length - 16; i += 16) m = Vector512.Max(m, Vector512.Load(values + i));
            max = MathF.Max(max, MaxAcross(m.GetLower(), m.GetUpper()));
        }
        if (level >= SimdLevel.Vector256 && Vector256.IsHardwareAccelerated && length - i >= 8)
        {
            Vector256<float> m = Vector256.Load(values + i);
            for (i += 8; i <= length - 8; i += 8) m = Vector256.Max(m, Vector256.Load(values + i));
            max = MathF.Max(max, MaxAcross(m));
        }
        if (level >= SimdLevel.Vector128 && Vector128.IsHardwareAccelerated && length - i >= 4)
        {
            Vector128<float> m = Vector128.Load(values + i);
            for (i += 4; i <= length - 4; i += 4) m = Vector128.Max(m, Vector128.Load(values + i));
            max = MathF.Max(max, MaxAcross(m));
        }
        for (; i < length; i++) max = MathF.Max(max, values[i]);
        return max;
    }

    private static float MaxAcross(Vector256<float> a, Vector256<float> b) => MaxAcross(Vector256.Max(a, b));

    private static float MaxAcross(Vector256<float> v) => MaxAcross(Vector128.Max(v.GetLower(), v.GetUpper()));

    private static float MaxAcross(Vector128<float> v)
    {
        float max = v[0];
        for (int i = 1; i < 4; i++) max = MathF.Max(max, v[i]);
        return max;
    }
}
