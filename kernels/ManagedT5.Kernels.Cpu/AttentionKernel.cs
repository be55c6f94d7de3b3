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

            // scores[j] = q . k_j + bias, four keys at a time; masked keys -inf
            int j = 0;
            for (; j <= visible - 4; j += 4) Dot4(q, keys + (long)j * inner, inner, d, level, scores + j);
            for (; j < visible; j++) scores[j] = Dot(q, keys + (long)j * inner, d, level);
            float max = float.NegativeInfinity;
            for (j = 0; j < visible; j++)
            {
                if (mask != null && mask[j] == 0f) { scores[j] = float.NegativeInfinity; continue; }
                if (biasRow != null) scores[j] += biasRow[j];
                max = MathF.Max(max, scores[j]);
            }

            new Span<float>(o, d).Clear();
            if (float.IsNegativeInfinity(max)) continue; // every key masked: zeros, like the reference
            float sum = ExpAndSum(scores, visible, max, level);

            // output = sum_j (e_j / sum) v_j, four value rows per pass over the output
            for (j = 0; j < visible; j++) scores[j] /= sum;
            for (j = 0; j <= visible - 4; j += 4) MultiplyAdd4(o, scores + j, values + (long)j * inner, inner, d, level);
            for (; j < visible; j++) MultiplyAdd(o, scores[j], values + (long)j * inner, d, level);
        }
    }

    /// <summary>sums[t] = q . k_t for the four rows k_t = k + t * stride, n floats each (four independent chains).</summary>
    private static void Dot4(float* q, float* k, long stride, int n, SimdLevel level, float* sums)
    {
        float* k1 = k + stride, k2 = k + 2 * stride, k3 = k + 3 * stride;
        int i = 0;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        if (level >= SimdLevel.Vector512 && Vector512.IsHardwareAccelerated && n >= 16)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i <= n - 16; i += 16)
            {
                Vector512<float> x = Vector512.Load(q + i);
                a0 = Vector512.FusedMultiplyAdd(x, Vector512.Load(k + i), a0);
                a1 = Vector512.FusedMultiplyAdd(x, Vector512.Load(k1 + i), a1);
                a2 = Vector512.FusedMultiplyAdd(x, Vector512.Load(k2 + i), a2);
                a3 = Vector512.FusedMultiplyAdd(x, Vector512.Load(k3 + i), a3);
            }
            s0 = Vector512.Sum(a0); s1 = Vector512.Sum(a1); s2 = Vector512.Sum(a2); s3 = Vector512.Sum(a3);
        }
        if (level >= SimdLevel.Vector256 && Vector256.IsHardwareAccelerated && n - i >= 8)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i <= n - 8; i += 8)
            {
                Vector256<float> x = Vector256.Load(q + i);
                a0 = Vector256.FusedMultiplyAdd(x, Vector256.Load(k + i), a0);
                a1 = Vector256.FusedMultiplyAdd(x, Vector256.Load(k1 + i), a1);
                a2 = Vector256.FusedMultiplyAdd(x, Vector256.Load(k2 + i), a2);
                a3 = Vector256.FusedMultiplyAdd(x, Vector256.Load(k3 + i), a3);
            }
            s0 += Vector256.Sum(a0); s1 += Vector256.Sum(a1); s2 += Vector256.Sum(a2); s3 += Vector256.Sum(a3);
        }
        if (level >= SimdLevel.Vector128 && Vector128.IsHardwareAccelerated && n - i >= 4)
        {
            Vector128<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i <= n - 4; i += 4)
            {
                Vector128<float> x = Vector128.Load(q + i);
                a0 = Vector128.FusedMultiplyAdd(x, Vector128.Load(k + i), a0);
                a1 = Vector128.FusedMultiplyAdd(x, Vector128.Load(k1 + i), a1);
                a2 = Vector128.FusedMultiplyAdd(x, Vector128.Load(k2 + i), a2);
                a3 = Vector128.FusedMultiplyAdd(x, Vector128.Load(k3 + i), a3);
            }
            s0 += Vector128.Sum(a0); s1 += Vector128.Sum(a1); s2 += Vector128.Sum(a2); s3 += Vector128.Sum(a3);
        }
        for (; i < n; i++)
        {
            s0 += q[i] * k[i]; s1 += q[i] * k1[i]; s2 += q[i] * k2[i]; s3 += q[i] * k3[i];
        }
        sums[0] = s0; sums[1] = s1; sums[2] = s2; sums[3] = s3;
    }

    /// <summary>y += p[0] v_0 + p[1] v_1 + p[2] v_2 + p[3] v_3 with v_t = v + t * stride, n floats each.</summary>
    private static void MultiplyAdd4(float* y, float* p, float* v, long stride, int n, SimdLevel level)
    {
        float* v1 = v + stride, v2 = v + 2 * stride, v3 = v + 3 * stride;
        float p0 = p[0], p1 = p[1], p2 = p[2], p3 = p[3];
        int i = 0;
        if (level >= SimdLevel.Vector512 && Vector512.IsHardwareAccelerated)
            for (; i <= n - 16; i += 16)
            {
                Vector512<float> acc = Vector512.FusedMultiplyAdd(Vector512.Load(v + i), Vector512.Create(p0), Vector512.Load(y + i));
                acc = Vector512.FusedMultiplyAdd(Vector512.Load(v1 + i), Vector512.Create(p1), acc);
                acc = Vector512.FusedMultiplyAdd(Vector512.Load(v2 + i), Vector512.Create(p2), acc);
                Vector512.FusedMultiplyAdd(Vector512.Load(v3 + i), Vector512.Create(p3), acc).Store(y + i);
            }
        if (level >= SimdLevel.Vector256 && Vector256.IsHardwareAccelerated)
            for (; i <= n - 8; i += 8)
            {
                Vector256<float> acc = Vector256.FusedMultiplyAdd(Vector256.Load(v + i), Vector256.Create(p0), Vector256.Load(y + i));
                acc = Vector256.FusedMultiplyAdd(Vector256.Load(v1 + i), Vector256.Create(p1), acc);
                acc = Vector256.FusedMultiplyAdd(Vector256.Load(v2 + i), Vector256.Create(p2), acc);
                Vector256.FusedMultiplyAdd(Vector256.Load(v3 + i), Vector256.Create(p3), acc).Store(y + i);
            }
        if (level >= SimdLevel.Vector128 && Vector128.IsHardwareAccelerated)
            for (; i <= n - 4; i += 4)
            {
                Vector128<float> acc = Vector128.FusedMultiplyAdd(Vector128.Load(v + i), Vector128.Create(p0), Vector128.Load(y + i));
                acc = Vector128.FusedMultiplyAdd(Vector128.Load(v1 + i), Vector128.Create(p1), acc);
                acc = Vector128.FusedMultiplyAdd(Vector128.Load(v2 + i), Vector128.Create(p2), acc);
                Vector128.FusedMultiplyAdd(Vector128.Load(v3 + i), Vector128.Create(p3), acc).Store(y + i);
            }
        for (; i < n; i++) y[i] += p0 * v[i] + p1 * v1[i] + p2 * v2[i] + p3 * v3[i];
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
