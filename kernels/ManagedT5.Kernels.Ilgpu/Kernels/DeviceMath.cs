// exp, tanh and log written with +, -, *, / and bit operations only, so every ILGPU backend computes the same
// values. ILGPU lowers MathF.Exp/Log/Tanh per backend (on CUDA without libdevice: the approximate ex2/lg2/tanh.approx
// instructions, ~2^-22 relative error), which is fine for most work but not for T5's position buckets, where a
// one-ulp change in a log moves a key into the neighbouring bucket.
using ILGPU;

namespace ManagedT5.Kernels.Ilgpu.Kernels;

/// <summary>Transcendental functions for kernels, with the accuracy T5 parity needs on every device.</summary>
internal static class DeviceMath
{
    private const float Log2E = 1.44269504f;
    private const float Ln2High = 0.693145751953125f;     // ln 2 rounded to 15 significant bits: k * Ln2High is exact
    private const float Ln2Low = 1.428606765330187e-6f;   // ln 2 - Ln2High

    /// <summary>e^x in fp32, within about 2 ulp of <see cref="MathF.Exp"/>; 0 below -104, +inf above 88.7.</summary>
    public static float Exp(float x)
    {
        if (x > 88.72284f) return float.PositiveInfinity;
        if (x < -103.97208f) return 0f;
        // x = k ln2 + r with |r| <= ln2 / 2 (Cody-Waite: the two-part ln 2 keeps r accurate).
        float scaled = x * Log2E;
        int k = (int)(scaled + (scaled >= 0f ? 0.5f : -0.5f));
        float r = x - k * Ln2High;
        r -= k * Ln2Low;
        // e^r by its Taylor series to r^7: the truncation error is below 6e-9 for |r| <= 0.347.
        float p = 1f / 5040f;
        p = p * r + 1f / 720f;
        p = p * r + 1f / 120f;
        p = p * r + 1f / 24f;
        p = p * r + 1f / 6f;
        p = p * r + 0.5f;
        p = p * r + 1f;
        p = p * r + 1f;
        // times 2^k, in two halves so neither factor leaves the normal range (k is in [-150, 128]).
        int k1 = k / 2;
        return p * PowerOfTwo(k1) * PowerOfTwo(k - k1);
    }

    /// <summary>tanh(x) = 1 - 2 / (e^2x + 1), with an absolute error below 2e-7. Near 0 the relative error grows
    /// (cancellation), which does not matter where it is used: gelu_new adds the result to 1.</summary>
    public static float Tanh(float x)
    {
        float magnitude = Math.Abs(x);
        float t = magnitude > 9.1f ? 1f : 1f - 2f / (Exp(2f * magnitude) + 1f);
        return x < 0f ? -t : t;
    }

    /// <summary>
    /// ln(x) for a positive normal float, correctly rounded to fp32 (up to ties too close to tell in double):
    /// computed in double as e ln 2 + 2 atanh((m - 1) / (m + 1)) with x = m 2^e, m in [sqrt(1/2), sqrt(2)).
    /// The CPU's logf is correctly rounded for almost all inputs, so both sides see the same fp32 log.
    /// </summary>
    public static float Log(float x)
    {
        double value = x;
        ulong bits = Interop.FloatAsInt(value);
        int exponent = (int)((bits >> 52) & 0x7FF) - 1023;
        double m = Interop.IntAsFloat((bits & 0x000FFFFFFFFFFFFFUL) | 0x3FF0000000000000UL); // in [1, 2)
        if (m > 1.4142135623730951)
        {
            m *= 0.5;
            exponent++;
        }
        double s = (m - 1.0) / (m + 1.0);  // |s| <= 0.1716
        double s2 = s * s;                 // <= 0.0295: eleven terms of the atanh series reach 1e-17
        double series = 1.0 / 21;
        series = series * s2 + 1.0 / 19;
        series = series * s2 + 1.0 / 17;
        series = series * s2 + 1.0 / 15;
        series = series * s2 + 1.0 / 13;
        series = series * s2 + 1.0 / 11;
        series = series * s2 + 1.0 / 9;
        series = series * s2 + 1.0 / 7;
        series = series * s2 + 1.0 / 5;
        series = series * s2 + 1.0 / 3;
        series = series * s2 + 1.0;
        return (float)(2.0 * s * series + exponent * 0.6931471805599453);
    }

    /// <summary>2^k for k in [-126, 127], built from its exponent bits.</summary>
    private static float PowerOfTwo(int k) => Interop.IntAsFloat((uint)(k + 127) << 23);
}
