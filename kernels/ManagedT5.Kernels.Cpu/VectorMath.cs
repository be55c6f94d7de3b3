// exp for the kernels' vector paths (softmax, gelu_new, silu, gelu). .NET's Vector512.Exp(float) computes in double
// and was many times slower (docs/BENCHMARKS.md); this is the classic Cephes expf in fp32 (range reduction by ln 2, a degree-6
// polynomial, the power of two built in the exponent bits), about 2 ulp.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ManagedT5.Kernels.Cpu;

/// <summary>Vector exp with exp(-inf) = 0 and exp(x) = +inf past the float range.</summary>
internal static class VectorMath
{
    private const float Log2E = 1.44269504088896341f;
    private const float Ln2High = 0.693359375f;        // ln 2 split so that n * Ln2High is exact
    private const float Ln2Low = -2.12194440e-4f;
    private const float MaxInput = 88.3762626647949f;  // largest x whose 2^round(x / ln 2) is a normal float
    private const float MinInput = -87.3365447505531f; // below: the result would be subnormal; returns 0
    private const float P0 = 1.9875691500e-4f, P1 = 1.3981999507e-3f, P2 = 8.3334519073e-3f,
        P3 = 4.1665795894e-2f, P4 = 1.6666665459e-1f, P5 = 5.0000001201e-1f;

    /// <summary>e^x per lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x)
    {
        Vector512<float> clamped = Vector512.Min(Vector512.Max(x, Vector512.Create(MinInput)), Vector512.Create(MaxInput));
        Vector512<float> n = Vector512.Round(clamped * Log2E);
        Vector512<float> r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2High), clamped);
        r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2Low), r);
        Vector512<float> p = Vector512.FusedMultiplyAdd(Vector512.Create(P0), r, Vector512.Create(P1));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(P2));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(P3));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(P4));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(P5));
        Vector512<float> y = Vector512.FusedMultiplyAdd(p, r * r, r + Vector512<float>.One);
        Vector512<float> scale = Vector512.ShiftLeft(Vector512.ConvertToInt32(n) + Vector512.Create(127), 23).AsSingle();
        y *= scale;
        y = Vector512.ConditionalSelect(Vector512.LessThan(x, Vector512.Create(MinInput)), Vector512<float>.Zero, y);
        return Vector512.ConditionalSelect(Vector512.GreaterThan(x, Vector512.Create(MaxInput)), Vector512.Create(float.PositiveInfinity), y);
    }

    /// <summary>e^x per lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        Vector256<float> clamped = Vector256.Min(Vector256.Max(x, Vector256.Create(MinInput)), Vector256.Create(MaxInput));
        Vector256<float> n = Vector256.Round(clamped * Log2E);
        Vector256<float> r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-Ln2High), clamped);
        r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-Ln2Low), r);
        Vector256<float> p = Vector256.FusedMultiplyAdd(Vector256.Create(P0), r, Vector256.Create(P1));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(P2));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(P3));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(P4));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(P5));
        Vector256<float> y = Vector256.FusedMultiplyAdd(p, r * r, r + Vector256<float>.One);
        Vector256<float> scale = Vector256.ShiftLeft(Vector256.ConvertToInt32(n) + Vector256.Create(127), 23).AsSingle();
        y *= scale;
        y = Vector256.ConditionalSelect(Vector256.LessThan(x, Vector256.Create(MinInput)), Vector256<float>.Zero, y);
        return Vector256.ConditionalSelect(Vector256.GreaterThan(x, Vector256.Create(MaxInput)), Vector256.Create(float.PositiveInfinity), y);
    }

    /// <summary>e^x per lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Exp(Vector128<float> x)
    {
        Vector128<float> clamped = Vector128.Min(Vector128.Max(x, Vector128.Create(MinInput)), Vector128.Create(MaxInput));
        Vector128<float> n = Vector128.Round(clamped * Log2E);
        Vector128<float> r = Vector128.FusedMultiplyAdd(n, Vector128.Create(-Ln2High), clamped);
        r = Vector128.FusedMultiplyAdd(n, Vector128.Create(-Ln2Low), r);
        Vector128<float> p = Vector128.FusedMultiplyAdd(Vector128.Create(P0), r, Vector128.Create(P1));
        p = Vector128.FusedMultiplyAdd(p, r, Vector128.Create(P2));
        p = Vector128.FusedMultiplyAdd(p, r, Vector128.Create(P3));
        p = Vector128.FusedMultiplyAdd(p, r, Vector128.Create(P4));
        p = Vector128.FusedMultiplyAdd(p, r, Vector128.Create(P5));
        Vector128<float> y = Vector128.FusedMultiplyAdd(p, r * r, r + Vector128<float>.One);
        Vector128<float> scale = Vector128.ShiftLeft(Vector128.ConvertToInt32(n) + Vector128.Create(127), 23).AsSingle();
        y *= scale;
        y = Vector128.ConditionalSelect(Vector128.LessThan(x, Vector128.Create(MinInput)), Vector128<float>.Zero, y);
        return Vector128.ConditionalSelect(Vector128.GreaterThan(x, Vector128.Create(MaxInput)), Vector128.Create(float.PositiveInfinity), y);
    }

    /// <summary>The lane sums of four vectors at once into sums[0..3]: two 128-bit shuffle rounds fold the four into one
    /// vector whose 128-bit block i holds vector i's partial sums, then two in-block permutes finish every block. About
    /// 13 instructions, against about 25 for each <see cref="Vector512.Sum{T}(Vector512{T})"/>, which matters in a GEMV
    /// that reduces four accumulators per weight row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void Sum4(Vector512<float> a0, Vector512<float> a1, Vector512<float> a2, Vector512<float> a3, float* sums)
    {
        if (!Avx512F.IsSupported)
        {
            sums[0] = Vector512.Sum(a0); sums[1] = Vector512.Sum(a1); sums[2] = Vector512.Sum(a2); sums[3] = Vector512.Sum(a3);
            return;
        }
        Vector512<float> p01 = Avx512F.Shuffle4x128(a0, a1, 0x44) + Avx512F.Shuffle4x128(a0, a1, 0xEE); // a0 | a0 | a1 | a1 halves
        Vector512<float> p23 = Avx512F.Shuffle4x128(a2, a3, 0x44) + Avx512F.Shuffle4x128(a2, a3, 0xEE);
        Vector512<float> r = Avx512F.Shuffle4x128(p01, p23, 0x88) + Avx512F.Shuffle4x128(p01, p23, 0xDD); // block i: a_i
        r += Avx512F.Permute4x32(r, 0xB1);                                                                   // swap pairs
        r += Avx512F.Permute4x32(r, 0x4E);                                                                   // swap halves
        sums[0] = r.GetElement(0); sums[1] = r.GetElement(4); sums[2] = r.GetElement(8); sums[3] = r.GetElement(12);
    }
}
