// The feed-forward activations (gate = act(gate) * up), one operator struct per function with a scalar and a
// Vector128/256/512 form, run by one fused loop. gelu_new uses 0.5 x (1 + tanh(u)) = x * sigmoid(2u), so it needs
// only exp; gelu (erf) uses the same erf approximation as the reference, in fp32. Scalar tails are ScalarMath's.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ManagedT5.Kernels.Cpu;

/// <summary>An element-wise function in every width.</summary>
internal interface IUnaryOperator
{
    static abstract float Invoke(float x);
    static abstract Vector128<float> Invoke(Vector128<float> x);
    static abstract Vector256<float> Invoke(Vector256<float> x);
    static abstract Vector512<float> Invoke(Vector512<float> x);
}

/// <summary>gate[i] = act(gate[i]) (* up[i]), fused in one pass.</summary>
internal static unsafe class ActivationKernel
{
    /// <summary>Applies <paramref name="kind"/> to gate[first .. end), times up[i] when <paramref name="up"/> is not null.</summary>
    public static void Run(float* gate, float* up, ActivationKind kind, int first, int end, SimdLevel level)
    {
        switch (kind)
        {
            case ActivationKind.Relu: Run<ReluOperator>(gate, up, first, end, level); break;
            case ActivationKind.GeluNew: Run<GeluNewOperator>(gate, up, first, end, level); break;
            case ActivationKind.Gelu: Run<GeluOperator>(gate, up, first, end, level); break;
            case ActivationKind.Silu: Run<SiluOperator>(gate, up, first, end, level); break;
            default: throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown activation.");
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Run<TOperator>(float* gate, float* up, int first, int end, SimdLevel level) where TOperator : IUnaryOperator
    {
        int i = first;
        bool gated = up != null;
        if (level >= SimdLevel.Vector512 && Vector512.IsHardwareAccelerated)
            for (; i <= end - 16; i += 16)
            {
                Vector512<float> a = TOperator.Invoke(Vector512.Load(gate + i));
                (gated ? a * Vector512.Load(up + i) : a).Store(gate + i);
            }
        if (level >= SimdLevel.Vector256 && Vector256.IsHardwareAccelerated)
            for (; i <= end - 8; i += 8)
            {
                Vector256<float> a = TOperator.Invoke(Vector256.Load(gate + i));
                (gated ? a * Vector256.Load(up + i) : a).Store(gate + i);
            }
        if (level >= SimdLevel.Vector128 && Vector128.IsHardwareAccelerated)
            for (; i <= end - 4; i += 4)
            {
                Vector128<float> a = TOperator.Invoke(Vector128.Load(gate + i));
                (gated ? a * Vector128.Load(up + i) : a).Store(gate + i);
            }
        for (; i < end; i++)
        {
            float a = TOperator.Invoke(gate[i]);
            gate[i] = gated ? a * up[i] : a;
        }
    }
}

/// <summary>max(x, 0).</summary>
internal readonly struct ReluOperator : IUnaryOperator
{
    public static float Invoke(float x) => ScalarMath.Relu(x);
    public static Vector128<float> Invoke(Vector128<float> x) => Vector128.Max(x, Vector128<float>.Zero);
    public static Vector256<float> Invoke(Vector256<float> x) => Vector256.Max(x, Vector256<float>.Zero);
    public static Vector512<float> Invoke(Vector512<float> x) => Vector512.Max(x, Vector512<float>.Zero);
}

/// <summary>gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) = x / (1 + exp(-2u)).</summary>
internal readonly struct GeluNewOperator : IUnaryOperator
{
    private const float MinusTwoSqrtTwoOverPi = -2f * ScalarMath.SqrtTwoOverPi;
    private const float Cubic = ScalarMath.GeluCubic;

    public static float Invoke(float x) => ScalarMath.GeluNew(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Invoke(Vector128<float> x)
    {
        Vector128<float> minusTwoU = x * Vector128.FusedMultiplyAdd(x * x, Vector128.Create(Cubic * MinusTwoSqrtTwoOverPi), Vector128.Create(MinusTwoSqrtTwoOverPi));
        return x / (Vector128<float>.One + VectorMath.Exp(minusTwoU));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Invoke(Vector256<float> x)
    {
        Vector256<float> minusTwoU = x * Vector256.FusedMultiplyAdd(x * x, Vector256.Create(Cubic * MinusTwoSqrtTwoOverPi), Vector256.Create(MinusTwoSqrtTwoOverPi));
        return x / (Vector256<float>.One + VectorMath.Exp(minusTwoU));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Invoke(Vector512<float> x)
    {
        Vector512<float> minusTwoU = x * Vector512.FusedMultiplyAdd(x * x, Vector512.Create(Cubic * MinusTwoSqrtTwoOverPi), Vector512.Create(MinusTwoSqrtTwoOverPi));
        return x / (Vector512<float>.One + VectorMath.Exp(minusTwoU));
    }
}

/// <summary>silu: x / (1 + exp(-x)).</summary>
internal readonly struct SiluOperator : IUnaryOperator
{
    public static float Invoke(float x) => ScalarMath.Silu(x);
    public static Vector128<float> Invoke(Vector128<float> x) => x / (Vector128<float>.One + VectorMath.Exp(-x));
    public static Vector256<float> Invoke(Vector256<float> x) => x / (Vector256<float>.One + VectorMath.Exp(-x));
    public static Vector512<float> Invoke(Vector512<float> x) => x / (Vector512<float>.One + VectorMath.Exp(-x));
}

/// <summary>gelu with erf: 0.5 x (1 + erf(x / sqrt 2)). erf(z) = 1 - t exp(-z^2 + P(t)), t = 1 / (1 + |z| / 2)
/// (Numerical Recipes' erfc, relative error below 1.2e-7), the reference's formula.</summary>
internal readonly struct GeluOperator : IUnaryOperator
{
    private const float InverseSqrtTwo = 0.70710678118654752f;

    public static float Invoke(float x) => ScalarMath.Gelu(x);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Invoke(Vector128<float> x)
    {
        Vector128<float> z = Vector128.Abs(x) * InverseSqrtTwo;
        Vector128<float> t = Vector128<float>.One / Vector128.FusedMultiplyAdd(z, Vector128.Create(0.5f), Vector128<float>.One);
        Vector128<float> p = Vector128.Create(0.17087277f);
        p = Vector128.FusedMultiplyAdd(p, t, Vector128.Create(-0.82215223f));
        p = Vector128.FusedMultiplyAdd(p, t, Vector128.Create(1.48851587f));
        p = Vector128.FusedMultiplyAdd(p, t, Vector128.Create(-1.13520398f));
        p = Vector128.FusedMultiplyAdd(p, t, Vector128.Create(0.27886807f));
        p = Vector128.FusedMultiplyAdd(p, t, Vector128.Create(-0.18628806f));
        p = Vector128.FusedMultiplyAdd(p, t, Vector128.Create(0.09678418f));
        p = Vector128.FusedMultiplyAdd(p, t, Vector128.Create(0.37409196f));
        p = Vector128.FusedMultiplyAdd(p, t, Vector128.Create(1.00002368f));
        p = Vector128.FusedMultiplyAdd(p, t, Vector128.Create(-1.26551223f));
        Vector128<float> erf = Vector128<float>.One - t * VectorMath.Exp(p - z * z);
        return 0.5f * x * (Vector128<float>.One + Vector128.CopySign(erf, x));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Invoke(Vector256<float> x)
    {
        Vector256<float> z = Vector256.Abs(x) * InverseSqrtTwo;
        Vector256<float> t = Vector256<float>.One / Vector256.FusedMultiplyAdd(z, Vector256.Create(0.5f), Vector256<float>.One);
        Vector256<float> p = Vector256.Create(0.17087277f);
        p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(-0.82215223f));
        p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(1.48851587f));
        p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(-1.13520398f));
        p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(0.27886807f));
        p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(-0.18628806f));
        p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(0.09678418f));
        p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(0.37409196f));
        p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(1.00002368f));
        p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(-1.26551223f));
        Vector256<float> erf = Vector256<float>.One - t * VectorMath.Exp(p - z * z);
        return 0.5f * x * (Vector256<float>.One + Vector256.CopySign(erf, x));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Invoke(Vector512<float> x)
    {
        Vector512<float> z = Vector512.Abs(x) * InverseSqrtTwo;
        Vector512<float> t = Vector512<float>.One / Vector512.FusedMultiplyAdd(z, Vector512.Create(0.5f), Vector512<float>.One);
        Vector512<float> p = Vector512.Create(0.17087277f);
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(-0.82215223f));
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(1.48851587f));
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(-1.13520398f));
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(0.27886807f));
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(-0.18628806f));
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(0.09678418f));
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(0.37409196f));
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(1.00002368f));
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(-1.26551223f));
        Vector512<float> erf = Vector512<float>.One - t * VectorMath.Exp(p - z * z);
        return 0.5f * x * (Vector512<float>.One + Vector512.CopySign(erf, x));
    }
}
