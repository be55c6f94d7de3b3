// The scalar reference twin of every op: plain loops, fp32 accumulation, written to be obviously right.
// Every SIMD and GPU kernel is tested against these. Shapes use the config's names.
namespace ManagedT5.Kernels.Reference;

using ManagedT5.Kernels.Cpu;

/// <summary>Scalar reference kernels over spans.</summary>
public static class ReferenceKernels
{
    /// <summary>output[i, :] = table[ids[i], :] — table (vocab, d_model) -> output (n, d_model).</summary>
    public static void Embedding(CpuWeight table, ReadOnlySpan<int> ids, Span<float> output)
    {
        int d = table.Cols;
        for (int i = 0; i < ids.Length; i++)
            for (int c = 0; c < d; c++)
                output[i * d + c] = table.Get(ids[i], c);
    }

    /// <summary>W (out, in) @ x (rows, in) -> y (rows, out); y += when accumulating.</summary>
    public static void Linear(ReadOnlySpan<float> input, CpuWeight weight, Span<float> output, int rows, bool accumulate)
    {
        int inDim = weight.Cols, outDim = weight.Rows;
        for (int r = 0; r < rows; r++)
        {
            ReadOnlySpan<float> x = input.Slice(r * inDim, inDim);
            for (int o = 0; o < outDim; o++)
            {
                float sum = 0;
                for (int i = 0; i < inDim; i++) sum += x[i] * weight.Get(o, i);
                if (accumulate) output[r * outDim + o] += sum;
                else output[r * outDim + o] = sum;
            }
        }
    }

    /// <summary>T5LayerNorm over rows of d_model: x * rsqrt(mean(x^2) + eps) * weight.</summary>
    public static void RmsNorm(ReadOnlySpan<float> input, CpuWeight weight, Span<float> output, int rows, float epsilon)
    {
        int d = weight.Cols;
        for (int r = 0; r < rows; r++)
        {
            float sumSquares = 0;
            for (int c = 0; c < d; c++) sumSquares += input[r * d + c] * input[r * d + c];
            float inverseRms = 1f / MathF.Sqrt(sumSquares / d + epsilon);
            for (int c = 0; c < d; c++) output[r * d + c] = weight.Get(0, c) * (input[r * d + c] * inverseRms);
        }
    }

    /// <summary>The activation functions, one value at a time (<see cref="ScalarMath"/>'s formulas, which the SIMD
    /// kernels' tails use too).</summary>
    public static float Activation(float x, ActivationKind kind) => ScalarMath.Activation(x, kind);

    /// <summary>gate = act(gate) * up (or act(gate) alone).</summary>
    public static void Activate(Span<float> gate, ReadOnlySpan<float> up, ActivationKind kind, int length, bool gated)
    {
        for (int i = 0; i < length; i++)
        {
            float a = Activation(gate[i], kind);
            gate[i] = gated ? a * up[i] : a;
        }
    }

    /// <summary>The bias of every (head, query, key): table (num_buckets, heads) -> output (heads, q, k).</summary>
    public static void PositionBias(CpuWeight table, Span<float> output, int queryLength, int keyLength, int queryOffset,
        bool bidirectional, int numBuckets, int maxDistance)
    {
        int heads = table.Cols;
        for (int i = 0; i < queryLength; i++)
            for (int j = 0; j < keyLength; j++)
            {
                int bucket = RelativePosition.Bucket(j - (queryOffset + i), bidirectional, numBuckets, maxDistance);
                for (int h = 0; h < heads; h++)
                    output[(h * queryLength + i) * keyLength + j] = table.Get(bucket, h);
            }
    }

    /// <summary>
    /// Attention for every (batch, head, query): scores = q . k (no 1/sqrt(d_kv): T5 folds it into the weights)
    /// + bias; masked and future keys excluded; fp32 softmax; output = sum_j p_j v_j.
    /// q (batch, q, heads*d_kv); k, v (batch, capacity, heads*d_kv); bias (heads, q, k); mask (batch, k).
    /// </summary>
    public static void Attention(ReadOnlySpan<float> query, ReadOnlySpan<float> key, ReadOnlySpan<float> value,
        Span<float> output, AttentionShape s, ReadOnlySpan<float> bias, ReadOnlySpan<float> keyMask)
    {
        int inner = s.InnerDim;
        var scores = new float[s.KeyLength];
        for (int b = 0; b < s.Batch; b++)
            for (int h = 0; h < s.Heads; h++)
                for (int i = 0; i < s.QueryLength; i++)
                {
                    ReadOnlySpan<float> q = query.Slice((b * s.QueryLength + i) * inner + h * s.HeadDim, s.HeadDim);
                    int visible = s.Causal ? Math.Min(s.KeyLength, s.QueryOffset + i + 1) : s.KeyLength;
                    float max = float.NegativeInfinity;
                    for (int j = 0; j < visible; j++)
                    {
                        if (!keyMask.IsEmpty && keyMask[b * s.KeyLength + j] == 0f) { scores[j] = float.NegativeInfinity; continue; }
                        ReadOnlySpan<float> k = key.Slice((b * s.KeyCapacity + j) * inner + h * s.HeadDim, s.HeadDim);
                        float dot = 0;
                        for (int d = 0; d < s.HeadDim; d++) dot += q[d] * k[d];
                        if (!bias.IsEmpty) dot += bias[(h * s.QueryLength + i) * s.KeyLength + j];
                        scores[j] = dot;
                        max = MathF.Max(max, dot);
                    }
                    float sum = 0;
                    for (int j = 0; j < visible; j++)
                    {
                        float e = float.IsNegativeInfinity(scores[j]) ? 0f : MathF.Exp(scores[j] - max);
                        scores[j] = e;
                        sum += e;
                    }
                    Span<float> o = output.Slice((b * s.QueryLength + i) * inner + h * s.HeadDim, s.HeadDim);
                    o.Clear();
                    if (sum == 0) continue; // every key masked: HF would average them; no real query does this
                    for (int j = 0; j < visible; j++)
                    {
                        float p = scores[j] / sum;
                        if (p == 0) continue;
                        ReadOnlySpan<float> v = value.Slice((b * s.KeyCapacity + j) * inner + h * s.HeadDim, s.HeadDim);
                        for (int d = 0; d < s.HeadDim; d++) o[d] += p * v[d];
                    }
                }
    }

    /// <summary>In-place log-softmax of a row (fp32 result, exp and sum in double), plus <paramref name="offset"/>;
    /// a row of only -inf is left as it is.</summary>
    public static void LogSoftmax(Span<float> scores, float offset = 0)
    {
        float max = float.NegativeInfinity;
        foreach (float s in scores) max = MathF.Max(max, s);
        if (float.IsNegativeInfinity(max) || float.IsNaN(max)) return;
        double sum = 0;
        foreach (float s in scores) sum += Math.Exp(s - max);
        float logSum = (float)Math.Log(sum) + max;
        for (int i = 0; i < scores.Length; i++) scores[i] = scores[i] - logSum + offset;
    }

    /// <summary>Index of the largest value (the first on ties).</summary>
    public static int ArgMax(ReadOnlySpan<float> values) => ScalarMath.ArgMax(values);
}
