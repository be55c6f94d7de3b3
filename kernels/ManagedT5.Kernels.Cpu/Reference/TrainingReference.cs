// The scalar twins of the training kernels (Training/TrainingKernels.cs): the same ops in plain loops with double
// accumulation, for the kernel tests and the finite-difference checks. Slow on purpose; never used for training.
using ManagedT5.Kernels;

namespace ManagedT5.Kernels.Cpu.Training;

/// <summary>Plain scalar forms of <see cref="TrainingKernels"/>' ops, with the same shapes and meaning.</summary>
public static class TrainingReference
{
    /// <summary>C[m, n] (+)= A·B, A [m, p] (or stored [p, m] when <paramref name="transposeA"/>), B [p, n].</summary>
    public static void MatMul(ReadOnlySpan<float> a, int m, int p, bool transposeA, ReadOnlySpan<float> b, int n, Span<float> c, bool accumulate) =>
        MatMul(a, m, p, transposeA, b, n, transposeB: false, c, accumulate);

    /// <summary>C[m, n] (+)= A·B with A stored [m, p] (or [p, m] when transposeA) and B stored [p, n] (or [n, p] when transposeB).</summary>
    public static void MatMul(ReadOnlySpan<float> a, int m, int p, bool transposeA, ReadOnlySpan<float> b, int n, bool transposeB, Span<float> c, bool accumulate)
    {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double sum = accumulate ? c[i * n + j] : 0;
                for (int k = 0; k < p; k++)
                    sum += (double)(transposeA ? a[k * m + i] : a[i * p + k]) * (transposeB ? b[j * p + k] : b[k * n + j]);
                c[i * n + j] = (float)sum;
            }
    }

    /// <summary>y[rows, out] (+)= x[rows, in]·Wᵀ, W [out, in].</summary>
    public static void LinearForward(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, Span<float> y, int rows, int inFeatures, int outFeatures, bool accumulate = false)
    {
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < outFeatures; o++)
            {
                double sum = accumulate ? y[r * outFeatures + o] : 0;
                for (int i = 0; i < inFeatures; i++) sum += (double)x[r * inFeatures + i] * weight[o * inFeatures + i];
                y[r * outFeatures + o] = (float)sum;
            }
    }

    /// <summary>dx[rows, in] (+)= dy[rows, out]·W.</summary>
    public static void LinearBackwardInput(ReadOnlySpan<float> dy, ReadOnlySpan<float> weight, Span<float> dx, int rows, int inFeatures, int outFeatures, bool accumulate = false) =>
        MatMul(dy, rows, outFeatures, false, weight, inFeatures, dx, accumulate);

    /// <summary>dW[out, in] += dyᵀ·x.</summary>
    public static void LinearBackwardWeight(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, Span<float> dWeight, int rows, int inFeatures, int outFeatures) =>
        MatMul(dy, outFeatures, rows, true, x, inFeatures, dWeight, accumulate: true);

    /// <summary>output[i] = table[ids[i]].</summary>
    public static void Embedding(ReadOnlySpan<int> ids, ReadOnlySpan<float> table, int d, Span<float> output)
    {
        for (int i = 0; i < ids.Length; i++)
            for (int c = 0; c < d; c++) output[i * d + c] = table[ids[i] * d + c];
    }

    /// <summary>dTable[ids[i]] += dOutput[i].</summary>
    public static void EmbeddingBackward(ReadOnlySpan<int> ids, ReadOnlySpan<float> dOutput, int d, Span<float> dTable)
    {
        for (int i = 0; i < ids.Length; i++)
            for (int c = 0; c < d; c++) dTable[ids[i] * d + c] += dOutput[i * d + c];
    }

    /// <summary>y = weight·x·r, r = 1/sqrt(mean(x²) + eps) (saved).</summary>
    public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, int rows, int d, float epsilon, Span<float> y, Span<float> inverseRms)
    {
        for (int r = 0; r < rows; r++)
        {
            double squares = 0;
            for (int c = 0; c < d; c++) squares += (double)x[r * d + c] * x[r * d + c];
            float inv = (float)(1.0 / Math.Sqrt(squares / d + epsilon));
            inverseRms[r] = inv;
            for (int c = 0; c < d; c++) y[r * d + c] = weight[c] * (x[r * d + c] * inv);
        }
    }

    /// <summary>dx += r·g − x·r³·(g·x)/d with g = dy·weight; dWeight += Σ dy·x·r.</summary>
    public static void RmsNormBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> inverseRms, ReadOnlySpan<float> dy,
        int rows, int d, Span<float> dx, Span<float> dWeight)
    {
        for (int r = 0; r < rows; r++)
        {
            double inv = inverseRms[r], dot = 0;
            for (int c = 0; c < d; c++) dot += (double)dy[r * d + c] * weight[c] * x[r * d + c];
            for (int c = 0; c < d; c++)
            {
                dx[r * d + c] += (float)((double)dy[r * d + c] * weight[c] * inv - x[r * d + c] * inv * inv * inv * dot / d);
                if (!dWeight.IsEmpty) dWeight[c] += (float)((double)dy[r * d + c] * x[r * d + c] * inv);
            }
        }
    }

    /// <summary>bias[h, i, j] = table[bucket(j − i), h].</summary>
    public static void PositionBias(ReadOnlySpan<float> table, int heads, int queryLength, int keyLength, bool bidirectional, int numBuckets, int maxDistance, Span<float> bias)
    {
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < queryLength; i++)
                for (int j = 0; j < keyLength; j++)
                    bias[(h * queryLength + i) * keyLength + j] = table[RelativePosition.Bucket(j - i, bidirectional, numBuckets, maxDistance) * heads + h];
    }

    /// <summary>dTable[bucket(j − i), h] += dBias[h, i, j].</summary>
    public static void PositionBiasBackward(ReadOnlySpan<float> dBias, int heads, int queryLength, int keyLength, bool bidirectional, int numBuckets, int maxDistance, Span<float> dTable)
    {
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < queryLength; i++)
                for (int j = 0; j < keyLength; j++)
                    dTable[RelativePosition.Bucket(j - i, bidirectional, numBuckets, maxDistance) * heads + h] += dBias[(h * queryLength + i) * keyLength + j];
    }

    /// <summary>T5 attention forward (no 1/sqrt(d) scaling), as <see cref="TrainingKernels.Attention"/>.</summary>
    public static void Attention(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<float> bias, ReadOnlySpan<int> keyMask,
        bool causal, int batch, int heads, int dKv, int queryLength, int keyLength, Span<float> probs, Span<float> context, double dropout = 0, ulong dropoutKey = 0)
    {
        int inner = heads * dKv;
        uint threshold = DropoutMask.Threshold(dropout);
        float dropScale = DropoutMask.Scale(dropout);
        var scores = new double[keyLength];
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < queryLength; i++)
                {
                    double max = double.NegativeInfinity;
                    for (int j = 0; j < keyLength; j++)
                    {
                        bool masked = (causal && j > i) || (!keyMask.IsEmpty && keyMask[b * keyLength + j] == 0);
                        double s = double.NegativeInfinity;
                        if (!masked)
                        {
                            s = 0;
                            for (int c = 0; c < dKv; c++) s += (double)q[(b * queryLength + i) * inner + h * dKv + c] * k[(b * keyLength + j) * inner + h * dKv + c];
                            if (!bias.IsEmpty) s += bias[(h * queryLength + i) * keyLength + j];
                        }
                        scores[j] = s;
                        max = Math.Max(max, s);
                    }
                    double sum = 0;
                    for (int j = 0; j < keyLength; j++) sum += scores[j] = double.IsNegativeInfinity(scores[j]) ? 0 : Math.Exp(scores[j] - max);
                    int row = ((b * heads + h) * queryLength + i) * keyLength;
                    for (int j = 0; j < keyLength; j++) probs[row + j] = (float)(scores[j] / sum);
                    // The weights of v: the probabilities, or dropout(probs) as the fast kernel forms it (f32 probability × f32 scale, or 0).
                    for (int j = 0; j < keyLength; j++)
                        scores[j] = threshold == 0 ? scores[j] / sum : DropoutMask.Kept(dropoutKey, (uint)(row + j), threshold) ? probs[row + j] * dropScale : 0;
                    for (int c = 0; c < dKv; c++)
                    {
                        double acc = 0;
                        for (int j = 0; j < keyLength; j++) acc += scores[j] * v[(b * keyLength + j) * inner + h * dKv + c];
                        context[(b * queryLength + i) * inner + h * dKv + c] = (float)acc;
                    }
                }
    }

    /// <summary>Attention backward, as <see cref="TrainingKernels.AttentionBackward"/> (dScores must not alias probs here).</summary>
    public static void AttentionBackward(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<float> probs, ReadOnlySpan<float> dContext,
        int batch, int heads, int dKv, int queryLength, int keyLength, Span<float> dq, Span<float> dk, Span<float> dv, Span<float> dScores, Span<float> dBias,
        double dropout = 0, ulong dropoutKey = 0)
    {
        int inner = heads * dKv;
        uint threshold = DropoutMask.Threshold(dropout);
        float dropScale = DropoutMask.Scale(dropout);
        dk.Slice(0, batch * keyLength * inner).Clear();
        dv.Slice(0, batch * keyLength * inner).Clear();
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < queryLength; i++)
                {
                    int row = ((b * heads + h) * queryLength + i) * keyLength, qi = (b * queryLength + i) * inner + h * dKv;
                    var dp = new double[keyLength];
                    double weighted = 0;
                    for (int j = 0; j < keyLength; j++)
                    {
                        int kj = (b * keyLength + j) * inner + h * dKv;
                        // With dropout the product used m·s·P: dV takes the dropped weight, dP goes back through the mask.
                        bool kept = threshold == 0 || DropoutMask.Kept(dropoutKey, (uint)(row + j), threshold);
                        double weight = threshold == 0 ? probs[row + j] : kept ? probs[row + j] * dropScale : 0;
                        for (int c = 0; c < dKv; c++)
                        {
                            dp[j] += (double)dContext[qi + c] * v[kj + c];
                            dv[kj + c] += (float)(weight * dContext[qi + c]);
                        }
                        if (threshold != 0) dp[j] = kept ? dp[j] * dropScale : 0;
                        weighted += probs[row + j] * dp[j];
                    }
                    for (int c = 0; c < dKv; c++) dq[qi + c] = 0;
                    for (int j = 0; j < keyLength; j++)
                    {
                        double ds = probs[row + j] * (dp[j] - weighted);
                        dScores[row + j] = (float)ds;
                        if (!dBias.IsEmpty) dBias[(h * queryLength + i) * keyLength + j] += (float)ds;
                        int kj = (b * keyLength + j) * inner + h * dKv;
                        for (int c = 0; c < dKv; c++)
                        {
                            dq[qi + c] += (float)(ds * k[kj + c]);
                            dk[kj + c] += (float)(ds * q[qi + c]);
                        }
                    }
                }
    }

    /// <summary>Inverted dropout, as <see cref="TrainingKernels.Dropout"/>: one element at a time with <see cref="DropoutMask.Kept"/>.</summary>
    public static void Dropout(ReadOnlySpan<float> x, Span<float> y, double rate, ulong siteKey, bool accumulate = false)
    {
        uint threshold = DropoutMask.Threshold(rate);
        float scale = DropoutMask.Scale(rate);
        for (int i = 0; i < x.Length; i++)
        {
            float value = DropoutMask.Kept(siteKey, (uint)i, threshold) ? x[i] * scale : 0f;
            y[i] = accumulate ? y[i] + value : value;
        }
    }

    /// <summary>gelu_new (tanh form), in double.</summary>
    public static double Gelu(double x) => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));

    /// <summary>d gelu_new / dx, in double.</summary>
    public static double GeluDerivative(double x)
    {
        double c = Math.Sqrt(2 / Math.PI), t = Math.Tanh(c * (x + 0.044715 * x * x * x));
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x);
    }

    /// <summary>y = gelu_new(x).</summary>
    public static void GeluNew(ReadOnlySpan<float> x, Span<float> y) { for (int i = 0; i < x.Length; i++) y[i] = (float)Gelu(x[i]); }

    /// <summary>h = gelu_new(a)·b.</summary>
    public static void GatedGeluNew(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> h) { for (int i = 0; i < a.Length; i++) h[i] = (float)(Gelu(a[i]) * b[i]); }

    /// <summary>dx = dy·gelu_new'(x).</summary>
    public static void GeluNewBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx) { for (int i = 0; i < x.Length; i++) dx[i] = (float)(dy[i] * GeluDerivative(x[i])); }

    /// <summary>da = dh·b·gelu_new'(a), db = dh·gelu_new(a).</summary>
    public static void GatedGeluNewBackward(ReadOnlySpan<float> a, ReadOnlySpan<float> b, ReadOnlySpan<float> dh, Span<float> da, Span<float> db)
    {
        for (int i = 0; i < a.Length; i++)
        {
            da[i] = (float)(dh[i] * (double)b[i] * GeluDerivative(a[i]));
            db[i] = (float)(dh[i] * Gelu(a[i]));
        }
    }

    /// <summary>y = max(x, 0).</summary>
    public static void Relu(ReadOnlySpan<float> x, Span<float> y) { for (int i = 0; i < x.Length; i++) y[i] = x[i] > 0 ? x[i] : 0; }

    /// <summary>dx = dy where y > 0.</summary>
    public static void ReluBackward(ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx) { for (int i = 0; i < y.Length; i++) dx[i] = y[i] > 0 ? dy[i] : 0; }

    /// <summary>Summed token cross-entropy (ignore −100); optionally logits ← gradientScale·(softmax − onehot).</summary>
    public static double CrossEntropy(Span<float> logits, ReadOnlySpan<int> labels, int vocab, float gradientScale, bool writeGradient, out int count)
    {
        double total = 0;
        count = 0;
        for (int r = 0; r < labels.Length; r++)
        {
            Span<float> row = logits.Slice(r * vocab, vocab);
            if (labels[r] == -100) { if (writeGradient) row.Clear(); continue; }
            double max = double.NegativeInfinity, sum = 0;
            for (int j = 0; j < vocab; j++) max = Math.Max(max, row[j]);
            for (int j = 0; j < vocab; j++) sum += Math.Exp(row[j] - max);
            total += Math.Log(sum) - (row[labels[r]] - max);
            count++;
            if (writeGradient)
            {
                for (int j = 0; j < vocab; j++) row[j] = (float)(Math.Exp(row[j] - max) / sum * gradientScale);
                row[labels[r]] -= gradientScale;
            }
        }
        return total;
    }
}
