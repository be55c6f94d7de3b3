// Fused T5 attention for one (batch entry, head, block of queries): scores = q . k (NO 1/sqrt(d_kv) scaling)
// + position bias, masked and future keys excluded, fp32 softmax, then the probability-weighted sum of v rows.
// Scores live in per-thread scratch, so a call allocates nothing.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ManagedT5.Kernels.Cpu;

/// <summary>Attention over raw pointers, with the layouts of <see cref="AttentionShape"/>.</summary>
internal static unsafe class AttentionKernel
{
    /// <summary>Queries per work item: long encoder sequences split so both threads get work.</summary>
    public const int QueryBlock = 32;

    /// <summary>
    /// Queries [firstQuery, endQuery) of batch entry <paramref name="b"/>, head <paramref name="h"/>.
    /// q, output: [batch, q_len, heads * d_kv]; k, v: [batch, capacity, heads * d_kv]; bias: [heads, q_len, k_len]
    /// or null; keyMask: [batch, k_len] (0 = padding) or null.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(float* query, float* key, float* value, float* output, in AttentionShape s, float* bias,
        float* keyMask, int b, int h, int firstQuery, int endQuery, SimdLevel level)
    {
        int inner = s.InnerDim, d = s.HeadDim;
        float* scores = Scratch.Get(ScratchSlot.Scores, Math.Max(s.KeyLength, 1));
        float* keys = key + (long)b * s.KeyCapacity * inner + h * d;
        float* values = value + (long)b * s.KeyCapacity * inner + h * d;
        float* mask = keyMask == null ? null : keyMask + (long)b * s.KeyLength;

        for (int i = firstQuery; i < endQuery; i++)
        {
            float* q = query + ((long)b * s.QueryLength + i) * inner + h * d;
            float* o = output + ((long)b * s.QueryLength + i) * inner + h * d;
            float* biasRow = bias == null ? null : bias + ((long)h * s.QueryLength + i) * s.KeyLength;
            int visible = s.Causal ? Math.Min(s.KeyLength, s.QueryOffset + i + 1) : s.KeyLength;

            // scores[j] = q . k_j + bias; masked keys -inf
            float max = float.NegativeInfinity;
            for (int j = 0; j < visible; j++)
            {
                if (mask != null && mask[j] == 0f) { scores[j] = float.NegativeInfinity; continue; }
                float score = Dot(q, keys + (long)j * inner, d, level);
                if (biasRow != null) score += biasRow[j];
                scores[j] = score;
                max = MathF.Max(max, score);
            }

            new Span<float>(o, d).Clear();
            if (float.IsNegativeInfinity(max)) continue; // every key masked: zeros, like the reference
            float sum = ExpAndSum(scores, visible, max, level);

            // output = sum_j (e_j / sum) v_j
            for (int j = 0; j < visible; j++)
            {
                float p = scores[j] / sum;
                if (p == 0) continue;
                MultiplyAdd(o, p, values + (long)j * inner, d, level);
            }
        }
    }

    /// <summary>a . b over n floats.</summary>
    private static float Dot(float* a, float* b, int n, SimdLevel level)
    {
        int i = 0;
        float sum = 0;
        if (level >= SimdLevel.Vector512 && Vector512.IsHardwareAccelerated && n >= 16)
        {
            Vector512<float> acc = default;
            for (; i <= n - 16; i += 16) acc = Vector512.FusedMultiplyAdd(Vector512.Load(a + i), Vector512.Load(b + i), acc);
            sum += Vector512.Sum(acc);
        }
        if (level >= SimdLevel.Vector256 && Vector256.IsHardwareAccelerated && n - i >= 8)
        {
            Vector256<float> acc = default;
            for (; i <= n - 8; i += 8) acc = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), acc);
            sum += Vector256.Sum(acc);
        }
        if (level >= SimdLevel.Vector128 && Vector128.IsHardwareAccelerated && n - i >= 4)
        {
            Vector128<float> acc = default;
            for (; i <= n - 4; i += 4) acc = Vector128.FusedMultiplyAdd(Vector128.Load(a + i), Vector128.Load(b + i), acc);
            sum += Vector128.Sum(acc);
        }
        for (; i < n; i++) sum += a[i] * b[i];
        return sum;
    }

    /// <summary>scores[j] = exp(scores[j] - max) (exp(-inf) = 0), returning their sum.</summary>
    private static float ExpAndSum(float* scores, int n, float max, SimdLevel level)
    {
        int i = 0;
        float sum = 0;
        if (level >= SimdLevel.Vector512 && Vector512.IsHardwareAccelerated && n >= 16)
        {
            Vector512<float> acc = default, m = Vector512.Create(max);
            for (; i <= n - 16; i += 16)
            {
                Vector512<float> e = Vector512.Exp(Vector512.Load(scores + i) - m);
                e.Store(scores + i);
                acc += e;
            }
            sum += Vector512.Sum(acc);
        }
        if (level >= SimdLevel.Vector256 && Vector256.IsHardwareAccelerated && n - i >= 8)
        {
            Vector256<float> acc = default, m = Vector256.Create(max);
            for (; i <= n - 8; i += 8)
            {
                Vector256<float> e = Vector256.Exp(Vector256.Load(scores + i) - m);
                e.Store(scores + i);
                acc += e;
            }
            sum += Vector256.Sum(acc);
        }
        if (level >= SimdLevel.Vector128 && Vector128.IsHardwareAccelerated && n - i >= 4)
        {
            Vector128<float> acc = default, m = Vector128.Create(max);
            for (; i <= n - 4; i += 4)
            {
                Vector128<float> e = Vector128.Exp(Vector128.Load(scores + i) - m);
                e.Store(scores + i);
                acc += e;
            }
            sum += Vector128.Sum(acc);
        }
        for (; i < n; i++)
        {
            float e = float.IsNegativeInfinity(scores[i]) ? 0f : MathF.Exp(scores[i] - max);
            scores[i] = e;
            sum += e;
        }
        return sum;
    }

    /// <summary>y[i] += a * x[i] over n floats.</summary>
    private static void MultiplyAdd(float* y, float a, float* x, int n, SimdLevel level)
    {
        int i = 0;
        if (level >= SimdLevel.Vector512 && Vector512.IsHardwareAccelerated)
            for (; i <= n - 16; i += 16) Vector512.FusedMultiplyAdd(Vector512.Load(x + i), Vector512.Create(a), Vector512.Load(y + i)).Store(y + i);
        if (level >= SimdLevel.Vector256 && Vector256.IsHardwareAccelerated)
            for (; i <= n - 8; i += 8) Vector256.FusedMultiplyAdd(Vector256.Load(x + i), Vector256.Create(a), Vector256.Load(y + i)).Store(y + i);
        if (level >= SimdLevel.Vector128 && Vector128.IsHardwareAccelerated)
            for (; i <= n - 4; i += 4) Vector128.FusedMultiplyAdd(Vector128.Load(x + i), Vector128.Create(a), Vector128.Load(y + i)).Store(y + i);
        for (; i < n; i++) y[i] += a * x[i];
    }
}
