// The scalar formulas, written once: the reference kernels are made of them, and the SIMD kernels use them for their
// tails and special cases (a row holding NaN), so a scalar element of either is the same float.
namespace ManagedT5.Kernels.Cpu;

/// <summary>One value at a time: the activations, erf, argmax.</summary>
internal static class ScalarMath
{
    /// <summary>sqrt(2 / pi), gelu_new's factor.</summary>
    public const float SqrtTwoOverPi = 0.7978845608028654f;

    /// <summary>gelu_new's cubic coefficient.</summary>
    public const float GeluCubic = 0.044715f;

    /// <summary>The activation <paramref name="kind"/> of <paramref name="x"/>.</summary>
    public static float Activation(float x, ActivationKind kind) => kind switch
    {
        ActivationKind.Relu => Relu(x),
        ActivationKind.GeluNew => GeluNew(x),
        ActivationKind.Gelu => Gelu(x),
        ActivationKind.Silu => Silu(x),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>max(x, 0).</summary>
    public static float Relu(float x) => MathF.Max(x, 0f);

    /// <summary>gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).</summary>
    public static float GeluNew(float x) => 0.5f * x * (1f + MathF.Tanh(SqrtTwoOverPi * (x + GeluCubic * x * x * x)));

    /// <summary>gelu with erf: 0.5 x (1 + erf(x / sqrt 2)), in double.</summary>
    public static float Gelu(float x) => (float)(0.5 * x * (1.0 + Erf(x / Math.Sqrt(2.0))));

    /// <summary>silu: x / (1 + exp(-x)).</summary>
    public static float Silu(float x) => x / (1f + MathF.Exp(-x));

    /// <summary>erf from Numerical Recipes' erfc fit (fractional error below 1.2e-7): plenty for a float result.</summary>
    public static double Erf(double x)
    {
        // erf(x) = 1 - erfc(x), erfc by the Chebyshev-fitted exponential of Numerical Recipes.
        double t = 1.0 / (1.0 + 0.5 * Math.Abs(x));
        double y = 1 - t * Math.Exp(-x * x - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
            + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
            + t * (-0.82215223 + t * 0.17087277)))))))));
        return x >= 0 ? y : -y;
    }

    /// <summary>Index of the largest value (the first on ties; NaN never wins a comparison, so a row of NaN gives 0).</summary>
    public static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }
}
