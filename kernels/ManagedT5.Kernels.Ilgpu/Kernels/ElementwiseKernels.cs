// One thread per element: embedding lookup, activations, add, scale, KV-cache append, row gather.
// Each mirrors its scalar twin in ReferenceKernels / ReferenceBackend.
using ILGPU;

namespace ManagedT5.Kernels.Ilgpu.Kernels;

/// <summary>Element-wise kernels over <see cref="Index1D"/>.</summary>
internal static class ElementwiseKernels
{
    /// <summary>output[i, c] = table[ids[i], c] — table (vocab, d_model), ids (n,) -> output (n, d_model).</summary>
    public static void Embedding<TWeight>(Index1D index, TWeight table, ArrayView<int> ids, ArrayView<float> output, int dModel)
        where TWeight : struct, IWeightView
    {
        int row = ids[index / dModel];
        int col = index % dModel;
        output[index] = table.Load((long)row * dModel + col) * table.RowScale(row);
    }

    /// <summary>gate[i] = act(gate[i]) * up[i] (gated != 0) or act(gate[i]) — the T5 feed-forward's activation.</summary>
    public static void Activate(Index1D index, ArrayView<float> gate, ArrayView<float> up, int kind, int gated)
    {
        float a = Activation(gate[index], kind);
        gate[index] = gated != 0 ? a * up[index] : a;
    }

    /// <summary>The activations, numbered as <see cref="ActivationKind"/>, written like ReferenceKernels.Activation.</summary>
    public static float Activation(float x, int kind)
    {
        if (kind == (int)ActivationKind.Relu) return Math.Max(x, 0f);
        if (kind == (int)ActivationKind.GeluNew)
            return 0.5f * x * (1f + DeviceMath.Tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
        if (kind == (int)ActivationKind.Silu) return x / (1f + DeviceMath.Exp(-x));
        return GeluErf(x);
    }

    /// <summary>gelu with erf, 0.5 x (1 + erf(x / sqrt 2)), by the same Numerical Recipes erfc fit (relative error
    /// 1.2e-7) the reference uses, in fp32. For x &lt; 0, 1 + erf(z) is erfc(|z|) itself: taking it directly instead
    /// of 1 - (1 - erfc) keeps the far negative tail accurate in fp32 (the reference works in double).</summary>
    public static float GeluErf(float x)
    {
        float z = Math.Abs(x) * 0.70710678118654752f;
        float t = 1f / (1f + 0.5f * z);
        float erfc = t * DeviceMath.Exp(-z * z - 1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f
            + t * (-0.18628806f + t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f
            + t * (-0.82215223f + t * 0.17087277f)))))))));
        float onePlusErf = x >= 0f ? 2f - erfc : erfc;
        return 0.5f * x * onePlusErf;
    }

    /// <summary>destination[i] += source[i].</summary>
    public static void Add(Index1D index, ArrayView<float> source, ArrayView<float> destination) =>
        destination[index] += source[index];

    /// <summary>buffer[i] *= factor.</summary>
    public static void Scale(Index1D index, ArrayView<float> buffer, float factor) => buffer[index] *= factor;

    /// <summary>cache[b, position + t, c] = source[b, t, c] — source (batch, length, rowLength),
    /// cache (batch, capacity, rowLength); one thread per source element.</summary>
    public static void AppendToCache(Index1D index, ArrayView<float> source, ArrayView<float> cache,
        int length, int capacity, int position, int rowLength)
    {
        int c = index % rowLength;
        int bt = index / rowLength;
        int t = bt % length;
        int b = bt / length;
        cache[((long)b * capacity + position + t) * rowLength + c] = source[index];
    }

    /// <summary>destination[r, c] = source[rows[r], c] — rows of rowLength floats; one thread per output element.</summary>
    public static void GatherRows(Index1D index, ArrayView<float> source, ArrayView<float> destination,
        ArrayView<int> rows, int rowLength, int rowStride)
    {
        int r = index / rowLength;
        int c = index % rowLength;
        destination[(long)r * rowStride + c] = source[(long)rows[r] * rowStride + c];
    }
}
