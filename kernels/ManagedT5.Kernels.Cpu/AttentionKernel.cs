// Fused T5 attention for one (batch entry, head, block of queries): scores = q . k (NO 1/sqrt(d_kv) scaling)
// + position bias, masked and future keys excluded, fp32 softmax, then the probability-weighted sum of v rows.
// Scores live in per-thread scratch, so a call allocates nothing.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ManagedT5.Kernels.Cpu;

/// <summary>Attention over raw pointers, with the layouts of <see cref="AttentionShape"/>.</summary>
internal static unsafe class AttentionKernel
{
    /// <summary>Queries per work item. A whole head per item when there are enough (batch, head) pairs to keep every
    /// thread busy, since each item transposes its head's keys once; otherwise the queries are split so each thread
    /// gets about two items (at least 16 queries each, so the transpose still pays).</summary>
    public static int QueryBlock(in AttentionShape s, int threads)
    {
        int pairs = s.Batch * s.Heads;
        if (pairs >= 2 * threads) return Math.Max(s.QueryLength, 1);
        int blocks = (2 * threads + pairs - 1) / pairs;
        return Math.Max(16, (s.QueryLength + blocks - 1) / blocks);
    }

    /// <summary>(batch, head, query block) units a thread claims at a time (<see cref="WorkerPool.RunRanges"/>). A decode
    /// step's head (one query over a few dozen cached keys) is less work than waking a worker and bouncing a claim
    /// counter between cores: about four claims per thread, at most 16 units each, and all units at once (the calling
    /// thread alone) below 320 query-key pairs, such as one prompt's six heads over 32 keys.</summary>
    public static int Grain(int units, int threads, int queryBlock, int keyLength)
    {
        if ((long)units * queryBlock * keyLength < 320) return Math.Max(units, 1);
        return Math.Clamp(units / (4 * Math.Max(threads, 1)), 1, 16);
    }

    /// <summary>
    /// Queries [firstQuery, endQuery) of batch entry <paramref name="b"/>, head <paramref name="h"/>.
    /// q, output: [batch, q_len, heads * d_kv]; k, v: [batch, capacity, heads * d_kv]; bias: [heads, q_len, k_len]
    /// or null; keyMask: [batch, k_len] (0 = padding) or null.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(float* query, float* key, float* value, float* output, in AttentionShape s, float* bias,
        float* keyMask, int b, int h, int firstQuery, int endQuery, SimdLevel level)
    {
        if (!s.Causal && level == SimdLevel.Vector256 && endQuery - firstQuery >= PackedQueries && s.KeyLength > 0)
        {
            RunPacked(query, key, value, output, s, bias, keyMask, b, h, firstQuery, endQuery, level);
            return;
        }
        int inner = s.InnerDim, d = s.HeadDim;
        int scoreRow = Math.Max(s.KeyLength, 1) + 16;
        float* scoreRows = Scratch.Get(ScratchSlot.Scores, 4L * scoreRow);
        float* scores = scoreRows;
        float* keys = key + (long)b * s.KeyCapacity * inner + h * d;
        float* values = value + (long)b * s.KeyCapacity * inner + h * d;
        float* mask = keyMask == null ? null : keyMask + (long)b * s.KeyLength;

        // Several queries: transpose this head's keys once (kt[c, j] = k_j[c], zero past the last key) so each
        // query's scores come out 16 keys per FMA with no horizontal sums. A few queries (decode): dot products
        // straight from the cache rows are cheaper than the transpose.
        int paddedKeys = (s.KeyLength + 15) & ~15;
        float* kt = null;
        if (endQuery - firstQuery >= 4)
        {
            kt = Scratch.Get(ScratchSlot.WeightPanels, (long)d * paddedKeys);
            if (d % 16 == 0 && level >= SimdLevel.Vector512 && Avx512F.IsSupported)
            {
                // 16 keys x 16 dimensions per register transpose; keys past the last read a zero row.
                float* zero = Scratch.Get(ScratchSlot.EdgeTile, d);
                new Span<float>(zero, d).Clear();
                float** rows = stackalloc float*[16];
                for (int j0 = 0; j0 < paddedKeys; j0 += 16)
                {
                    for (int j = 0; j < 16; j++) rows[j] = j0 + j < s.KeyLength ? keys + (long)(j0 + j) * inner : zero;
                    for (int c0 = 0; c0 < d; c0 += 16) Gemm.Transpose16x16(rows, c0, kt + (long)c0 * paddedKeys + j0, paddedKeys);
                }
            }
            else for (int c = 0; c < d; c++)
            {
                float* row = kt + (long)c * paddedKeys;
                for (int j = 0; j < s.KeyLength; j++) row[j] = keys[(long)j * inner + c];
                for (int j = s.KeyLength; j < paddedKeys; j++) row[j] = 0;
            }
        }

        if (kt != null && level >= SimdLevel.Vector512 && Vector512.IsHardwareAccelerated && d % 16 == 0)
        {
            RunFourQueries(query, values, output, s, bias, mask, b, h, firstQuery, endQuery, kt, paddedKeys, scoreRows, scoreRow, level);
            return;
        }

        for (int i = firstQuery; i < endQuery; i++)
        {
            float* q = query + ((long)b * s.QueryLength + i) * inner + h * d;
            float* o = output + ((long)b * s.QueryLength + i) * inner + h * d;
            float* biasRow = bias == null ? null : bias + ((long)h * s.QueryLength + i) * s.KeyLength;
            int visible = s.Causal ? Math.Min(s.KeyLength, s.QueryOffset + i + 1) : s.KeyLength;

            // scores[j] = q . k_j + bias; masked keys -inf
            if (kt != null && level >= SimdLevel.Vector512 && Vector512.IsHardwareAccelerated)
            {
                // Four queries at a time: each transposed key vector loaded once feeds four FMAs.
                int slot = (i - firstQuery) & 3;
                if (slot == 0)
                {
                    int last = Math.Min(i + 3, endQuery - 1);
                    int span = ((s.Causal ? Math.Min(s.KeyLength, s.QueryOffset + last + 1) : s.KeyLength) + 15) & ~15;
                    float* q1 = last >= i + 1 ? q + inner : q, q2 = last >= i + 2 ? q + 2 * inner : q, q3 = last >= i + 3 ? q + 3 * inner : q;
                    ScoresFromTransposed4(q, q1, q2, q3, kt, paddedKeys, d, span, scoreRows, scoreRow);
                }
                scores = scoreRows + (long)slot * scoreRow;
            }
            else if (kt != null)
            {
                ScoresFromTransposed(q, kt, paddedKeys, d, (visible + 15) & ~15, scores, level);
            }
            else
            {
                OneQuery(q, keys, values, o, inner, d, visible, biasRow, mask, scores, level);
                continue;
            }
            float max = AddBiasMaskAndMax(scores, biasRow, mask, visible, level);
            if (float.IsNegativeInfinity(max)) // every key masked: zeros, like the reference
            {
                new Span<float>(o, d).Clear();
                continue;
            }
            float sum = ExpAndSum(scores, visible, max, level);

            // output = (sum_j e_j v_j) / sum
            WeightedSum(o, scores, values, inner, d, visible, level);
            float inverse = 1f / sum;
            for (int c = 0; c < d; c++) o[c] *= inverse;
        }
    }

    /// <summary>Queries from which an encoder block (no causal mask) on AVX2 runs as two packed products.</summary>
    private const int PackedQueries = 16;

    /// <summary>
    /// <see cref="Run"/> for a block of queries with every key visible (the encoder, an embedder's whole batch), as
    /// matrix products with the GEMM's micro-kernel on this thread: S = Q·Kᵀ, the row softmax in place, O = S·V, each
    /// row scaled by 1/sum. One query at a time, the scores' and the weighted sum's loads each fed a single FMA (7.5%
    /// of a sentence-t5-base batch on AVX2). Each score and output element is the same FMA chain, in the same order, as
    /// one query at a time (one depth slab up to 256 keys), so the results are the same floats there.
    /// </summary>
    private static void RunPacked(float* query, float* key, float* value, float* output, in AttentionShape s, float* bias,
        float* keyMask, int b, int h, int firstQuery, int endQuery, SimdLevel level)
    {
        int inner = s.InnerDim, d = s.HeadDim, n = s.KeyLength, rows = endQuery - firstQuery;
        int ld = (n + 15) & ~15;
        float* scores = Scratch.Get(ScratchSlot.Scores, (long)rows * ld);
        float* inverse = Scratch.Get(ScratchSlot.SmallVector, rows);
        float* keys = key + (long)b * s.KeyCapacity * inner + h * d;
        float* values = value + (long)b * s.KeyCapacity * inner + h * d;
        float* mask = keyMask == null ? null : keyMask + (long)b * s.KeyLength;
        float* q = query + ((long)b * s.QueryLength + firstQuery) * inner + h * d;
        float* o = output + ((long)b * s.QueryLength + firstQuery) * inner + h * d;

        // S[rows, n] = Q[rows, d]·Kᵀ: the keys are read as a transposed operand ([n, d], rows inner apart).
        Training.MatMulGemm.Run(null, level, new Training.MatrixOperand(q, inner, false), new Training.MatrixOperand(keys, inner, true),
            scores, ld, rows, d, n, accumulate: false);
        for (int r = 0; r < rows; r++)
        {
            float* row = scores + (long)r * ld;
            float* biasRow = bias == null ? null : bias + ((long)h * s.QueryLength + firstQuery + r) * n;
            float max = AddBiasMaskAndMax(row, biasRow, mask, n, level);
            if (float.IsNegativeInfinity(max)) // every key masked: zeros, like the reference
            {
                new Span<float>(row, n).Clear();
                inverse[r] = 0;
                continue;
            }
            inverse[r] = 1f / ExpAndSum(row, n, max, level);
        }
        // O[rows, d] = P[rows, n]·V[n, d], then each row times 1/sum.
        Training.MatMulGemm.Run(null, level, new Training.MatrixOperand(scores, ld, false), new Training.MatrixOperand(values, inner, false),
            o, inner, rows, n, d, accumulate: false);
        for (int r = 0; r < rows; r++)
        {
            float* row = o + (long)r * inner;
            float scale = inverse[r];
            if (scale == 0) new Span<float>(row, d).Clear(); // all masked: exact zeros whatever v holds
            else for (int c = 0; c < d; c++) row[c] *= scale;
        }
    }

    /// <summary>
    /// One query of one head over <paramref name="visible"/> keys, dot products straight from the cache rows (a decode
    /// step): scores = q . k_j + biasRow[j] (masked keys -inf), fp32 softmax, o = sum_j p_j v_j. keys, values: rows
    /// <paramref name="inner"/> floats apart, already offset to the head; biasRow and mask may be null. Both
    /// <see cref="Run"/> (a few queries) and <see cref="RunPerRow"/> (continuous batching) compute a query with it, so a
    /// row of a batch gets the very floats a batch-1 call gives.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void OneQuery(float* q, float* keys, float* values, float* o, int inner, int d, int visible, float* biasRow,
        float* mask, float* scores, SimdLevel level)
    {
        int j4 = 0;
        for (; j4 <= visible - 4; j4 += 4) Dot4(q, keys + (long)j4 * inner, inner, d, level, scores + j4);
        for (; j4 < visible; j4++) scores[j4] = Dot(q, keys + (long)j4 * inner, d, level);
        float max = AddBiasMaskAndMax(scores, biasRow, mask, visible, level);
        if (float.IsNegativeInfinity(max)) // every key masked: zeros, like the reference
        {
            new Span<float>(o, d).Clear();
            return;
        }
        float sum = ExpAndSum(scores, visible, max, level);

        // output = (sum_j e_j v_j) / sum
        WeightedSum(o, scores, values, inner, d, visible, level);
        float inverse = 1f / sum;
        for (int c = 0; c < d; c++) o[c] *= inverse;
    }

    /// <summary>
    /// <see cref="IBackend.AttentionPerRow"/> for row <paramref name="r"/>, head <paramref name="h"/>: query row r
    /// ([rows, inner]) against keys/values [n, inner] (n = that row's key length), bias [heads, biasLength] read
    /// right-aligned (bias[h, biasLength - n + j]), mask [n] or null.
    /// </summary>
    public static void RunPerRow(float* query, float* keys, float* values, float* output, int inner, int d, int n, float* bias,
        int biasLength, float* mask, int r, int h, SimdLevel level)
    {
        float* scores = Scratch.Get(ScratchSlot.Scores, Math.Max(n, 1) + 16L);
        float* biasRow = bias == null ? null : bias + (long)h * biasLength + (biasLength - n);
        OneQuery(query + (long)r * inner + h * d, keys + h * d, values + h * d, output + (long)r * inner + h * d, inner, d, n,
            biasRow, mask, scores, level);
    }

    /// <summary>The AVX-512 body of <see cref="Run"/> for several queries (keys already transposed into kt): four
    /// queries at a time share both passes over the head's keys and values, scores from
    /// <see cref="ScoresFromTransposed4"/>, the weighted sum from <see cref="WeightedSum4"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RunFourQueries(float* query, float* values, float* output, in AttentionShape s, float* bias, float* mask,
        int b, int h, int firstQuery, int endQuery, float* kt, int paddedKeys, float* scoreRows, int scoreRow, SimdLevel level)
    {
        int inner = s.InnerDim, d = s.HeadDim;
        float* inverse = stackalloc float[4];
        for (int i0 = firstQuery; i0 < endQuery; i0 += 4)
        {
            int count = Math.Min(4, endQuery - i0);
            float* q = query + ((long)b * s.QueryLength + i0) * inner + h * d;
            float* o = output + ((long)b * s.QueryLength + i0) * inner + h * d;
            int last = i0 + count - 1;
            int widest = s.Causal ? Math.Min(s.KeyLength, s.QueryOffset + last + 1) : s.KeyLength; // the last query sees most
            ScoresFromTransposed4(q, count > 1 ? q + inner : q, count > 2 ? q + 2 * inner : q, count > 3 ? q + 3 * inner : q,
                kt, paddedKeys, d, (widest + 15) & ~15, scoreRows, scoreRow);

            // Per query: bias, mask, softmax numerators; probabilities past a query's visible keys are zero up to the
            // group's widest, so the shared weighted sum can run over the same keys for all four.
            for (int g = 0; g < count; g++)
            {
                int i = i0 + g;
                float* scores = scoreRows + (long)g * scoreRow;
                float* biasRow = bias == null ? null : bias + ((long)h * s.QueryLength + i) * s.KeyLength;
                int visible = s.Causal ? Math.Min(s.KeyLength, s.QueryOffset + i + 1) : s.KeyLength;
                float max = AddBiasMaskAndMax(scores, biasRow, mask, visible, level);
                if (float.IsNegativeInfinity(max)) // every key masked: zeros, like the reference
                {
                    new Span<float>(scores, widest).Clear();
                    inverse[g] = float.NaN;
                    continue;
                }
                inverse[g] = 1f / ExpAndSum(scores, visible, max, level);
                new Span<float>(scores + visible, widest - visible).Clear();
            }

            WeightedSum4(o, inner, count, scoreRows, scoreRow, values, inner, d, widest);
            for (int g = 0; g < count; g++)
            {
                float* row = o + (long)g * inner;
                if (float.IsNaN(inverse[g])) new Span<float>(row, d).Clear();
                else for (int c = 0; c < d; c += 16) (Vector512.Load(row + c) * inverse[g]).Store(row + c);
            }
        }
    }

    /// <summary>o_g[c] = sum_j p_g[j] v_j[c] for <paramref name="count"/> (1..4) queries g (o_g = o + g * oStride,
    /// p_g = p + g * pStride; missing queries repeat query 0 and are not stored) over n keys, d a multiple of 16: each
    /// v chunk is loaded once and multiplied with all four probability rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WeightedSum4(float* o, long oStride, int count, float* p, long pStride, float* v, long stride, int d, int n)
    {
        float* p0 = p, p1 = p + (count > 1 ? pStride : 0), p2 = p + (count > 2 ? 2 * pStride : 0), p3 = p + (count > 3 ? 3 * pStride : 0);
        int c = 0;
        for (; c <= d - 64; c += 64)
        {
            // 16 accumulators: each key's four value vectors meet four probabilities, and every chain waits 8 FMAs.
            Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
            Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
            for (int j = 0; j < n; j++)
            {
                float* row = v + j * stride + c;
                Vector512<float> v0 = Vector512.Load(row), v1 = Vector512.Load(row + 16), v2 = Vector512.Load(row + 32), v3 = Vector512.Load(row + 48);
                Vector512<float> w = Vector512.Create(p0[j]);
                a00 = Vector512.FusedMultiplyAdd(w, v0, a00); a01 = Vector512.FusedMultiplyAdd(w, v1, a01); a02 = Vector512.FusedMultiplyAdd(w, v2, a02); a03 = Vector512.FusedMultiplyAdd(w, v3, a03);
                w = Vector512.Create(p1[j]);
                a10 = Vector512.FusedMultiplyAdd(w, v0, a10); a11 = Vector512.FusedMultiplyAdd(w, v1, a11); a12 = Vector512.FusedMultiplyAdd(w, v2, a12); a13 = Vector512.FusedMultiplyAdd(w, v3, a13);
                w = Vector512.Create(p2[j]);
                a20 = Vector512.FusedMultiplyAdd(w, v0, a20); a21 = Vector512.FusedMultiplyAdd(w, v1, a21); a22 = Vector512.FusedMultiplyAdd(w, v2, a22); a23 = Vector512.FusedMultiplyAdd(w, v3, a23);
                w = Vector512.Create(p3[j]);
                a30 = Vector512.FusedMultiplyAdd(w, v0, a30); a31 = Vector512.FusedMultiplyAdd(w, v1, a31); a32 = Vector512.FusedMultiplyAdd(w, v2, a32); a33 = Vector512.FusedMultiplyAdd(w, v3, a33);
            }
            a00.Store(o + c); a01.Store(o + c + 16); a02.Store(o + c + 32); a03.Store(o + c + 48);
            if (count > 1) { float* o1 = o + oStride + c; a10.Store(o1); a11.Store(o1 + 16); a12.Store(o1 + 32); a13.Store(o1 + 48); }
            if (count > 2) { float* o2 = o + 2 * oStride + c; a20.Store(o2); a21.Store(o2 + 16); a22.Store(o2 + 32); a23.Store(o2 + 48); }
            if (count > 3) { float* o3 = o + 3 * oStride + c; a30.Store(o3); a31.Store(o3 + 16); a32.Store(o3 + 32); a33.Store(o3 + 48); }
        }
        for (; c < d; c += 16)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int j = 0; j < n; j++)
            {
                Vector512<float> v0 = Vector512.Load(v + j * stride + c);
                a0 = Vector512.FusedMultiplyAdd(Vector512.Create(p0[j]), v0, a0);
                a1 = Vector512.FusedMultiplyAdd(Vector512.Create(p1[j]), v0, a1);
                a2 = Vector512.FusedMultiplyAdd(Vector512.Create(p2[j]), v0, a2);
                a3 = Vector512.FusedMultiplyAdd(Vector512.Create(p3[j]), v0, a3);
            }
            a0.Store(o + c);
            if (count > 1) a1.Store(o + oStride + c);
            if (count > 2) a2.Store(o + 2 * oStride + c);
            if (count > 3) a3.Store(o + 3 * oStride + c);
        }
    }

    /// <summary>scores[j] = sum_c q[c] kt[c, j] for j &lt; span (a multiple of 16): q[c] broadcast against 16 keys
    /// per vector, eight vectors at a time so the FMA chains overlap.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScoresFromTransposed(float* q, float* kt, int stride, int d, int span, float* scores, SimdLevel level)
    {
        int j = 0;
        if (level >= SimdLevel.Vector512 && Vector512.IsHardwareAccelerated)
        {
            for (; j <= span - 128; j += 128)
            {
                Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
                float* column = kt + j;
                for (int c = 0; c < d; c++, column += stride)
                {
                    Vector512<float> qc = Vector512.Create(q[c]);
                    a0 = Vector512.FusedMultiplyAdd(qc, Vector512.Load(column), a0);
                    a1 = Vector512.FusedMultiplyAdd(qc, Vector512.Load(column + 16), a1);
                    a2 = Vector512.FusedMultiplyAdd(qc, Vector512.Load(column + 32), a2);
                    a3 = Vector512.FusedMultiplyAdd(qc, Vector512.Load(column + 48), a3);
                    a4 = Vector512.FusedMultiplyAdd(qc, Vector512.Load(column + 64), a4);
                    a5 = Vector512.FusedMultiplyAdd(qc, Vector512.Load(column + 80), a5);
                    a6 = Vector512.FusedMultiplyAdd(qc, Vector512.Load(column + 96), a6);
                    a7 = Vector512.FusedMultiplyAdd(qc, Vector512.Load(column + 112), a7);
                }
                a0.Store(scores + j); a1.Store(scores + j + 16); a2.Store(scores + j + 32); a3.Store(scores + j + 48);
                a4.Store(scores + j + 64); a5.Store(scores + j + 80); a6.Store(scores + j + 96); a7.Store(scores + j + 112);
            }
            for (; j < span; j += 16)
            {
                Vector512<float> a0 = default;
                float* column = kt + j;
                for (int c = 0; c < d; c++, column += stride) a0 = Vector512.FusedMultiplyAdd(Vector512.Create(q[c]), Vector512.Load(column), a0);
                a0.Store(scores + j);
            }
        }
        if (level >= SimdLevel.Vector256 && Vector256.IsHardwareAccelerated)
        {
            for (; j <= span - 64; j += 64)
            {
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
                float* column = kt + j;
                for (int c = 0; c < d; c++, column += stride)
                {
                    Vector256<float> qc = Vector256.Create(q[c]);
                    a0 = Vector256.FusedMultiplyAdd(qc, Vector256.Load(column), a0);
                    a1 = Vector256.FusedMultiplyAdd(qc, Vector256.Load(column + 8), a1);
                    a2 = Vector256.FusedMultiplyAdd(qc, Vector256.Load(column + 16), a2);
                    a3 = Vector256.FusedMultiplyAdd(qc, Vector256.Load(column + 24), a3);
                    a4 = Vector256.FusedMultiplyAdd(qc, Vector256.Load(column + 32), a4);
                    a5 = Vector256.FusedMultiplyAdd(qc, Vector256.Load(column + 40), a5);
                    a6 = Vector256.FusedMultiplyAdd(qc, Vector256.Load(column + 48), a6);
                    a7 = Vector256.FusedMultiplyAdd(qc, Vector256.Load(column + 56), a7);
                }
                a0.Store(scores + j); a1.Store(scores + j + 8); a2.Store(scores + j + 16); a3.Store(scores + j + 24);
                a4.Store(scores + j + 32); a5.Store(scores + j + 40); a6.Store(scores + j + 48); a7.Store(scores + j + 56);
            }
            for (; j < span; j += 8)
            {
                Vector256<float> a0 = default;
                float* column = kt + j;
                for (int c = 0; c < d; c++, column += stride) a0 = Vector256.FusedMultiplyAdd(Vector256.Create(q[c]), Vector256.Load(column), a0);
                a0.Store(scores + j);
            }
        }
        if (level >= SimdLevel.Vector128 && Vector128.IsHardwareAccelerated)
        {
            for (; j < span; j += 4)
            {
                Vector128<float> a0 = default;
                float* column = kt + j;
                for (int c = 0; c < d; c++, column += stride) a0 = Vector128.FusedMultiplyAdd(Vector128.Create(q[c]), Vector128.Load(column), a0);
                a0.Store(scores + j);
            }
        }
        for (; j < span; j++)
        {
            float sum = 0;
            for (int c = 0; c < d; c++) sum += q[c] * kt[(long)c * stride + j];
            scores[j] = sum;
        }
    }

    /// <summary><see cref="ScoresFromTransposed"/> for four queries at once (AVX-512): query g's scores go to
    /// scores + g * rowStride; 64 keys per pass in 16 accumulators, then 16 at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScoresFromTransposed4(float* q0, float* q1, float* q2, float* q3, float* kt, int stride, int d,
        int span, float* scores, int rowStride)
    {
        float* s0 = scores, s1 = scores + rowStride, s2 = scores + 2L * rowStride, s3 = scores + 3L * rowStride;
        int j = 0;
        for (; j <= span - 64; j += 64)
        {
            Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
            Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
            float* column = kt + j;
            for (int c = 0; c < d; c++, column += stride)
            {
                Vector512<float> k0 = Vector512.Load(column), k1 = Vector512.Load(column + 16), k2 = Vector512.Load(column + 32), k3 = Vector512.Load(column + 48);
                Vector512<float> b = Vector512.Create(q0[c]);
                a00 = Vector512.FusedMultiplyAdd(b, k0, a00); a01 = Vector512.FusedMultiplyAdd(b, k1, a01); a02 = Vector512.FusedMultiplyAdd(b, k2, a02); a03 = Vector512.FusedMultiplyAdd(b, k3, a03);
                b = Vector512.Create(q1[c]);
                a10 = Vector512.FusedMultiplyAdd(b, k0, a10); a11 = Vector512.FusedMultiplyAdd(b, k1, a11); a12 = Vector512.FusedMultiplyAdd(b, k2, a12); a13 = Vector512.FusedMultiplyAdd(b, k3, a13);
                b = Vector512.Create(q2[c]);
                a20 = Vector512.FusedMultiplyAdd(b, k0, a20); a21 = Vector512.FusedMultiplyAdd(b, k1, a21); a22 = Vector512.FusedMultiplyAdd(b, k2, a22); a23 = Vector512.FusedMultiplyAdd(b, k3, a23);
                b = Vector512.Create(q3[c]);
                a30 = Vector512.FusedMultiplyAdd(b, k0, a30); a31 = Vector512.FusedMultiplyAdd(b, k1, a31); a32 = Vector512.FusedMultiplyAdd(b, k2, a32); a33 = Vector512.FusedMultiplyAdd(b, k3, a33);
            }
            a00.Store(s0 + j); a01.Store(s0 + j + 16); a02.Store(s0 + j + 32); a03.Store(s0 + j + 48);
            a10.Store(s1 + j); a11.Store(s1 + j + 16); a12.Store(s1 + j + 32); a13.Store(s1 + j + 48);
            a20.Store(s2 + j); a21.Store(s2 + j + 16); a22.Store(s2 + j + 32); a23.Store(s2 + j + 48);
            a30.Store(s3 + j); a31.Store(s3 + j + 16); a32.Store(s3 + j + 32); a33.Store(s3 + j + 48);
        }
        for (; j < span; j += 16)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            float* column = kt + j;
            for (int c = 0; c < d; c++, column += stride)
            {
                Vector512<float> k = Vector512.Load(column);
                a0 = Vector512.FusedMultiplyAdd(Vector512.Create(q0[c]), k, a0);
                a1 = Vector512.FusedMultiplyAdd(Vector512.Create(q1[c]), k, a1);
                a2 = Vector512.FusedMultiplyAdd(Vector512.Create(q2[c]), k, a2);
                a3 = Vector512.FusedMultiplyAdd(Vector512.Create(q3[c]), k, a3);
            }
            a0.Store(s0 + j); a1.Store(s1 + j); a2.Store(s2 + j); a3.Store(s3 + j);
        }
    }

    /// <summary>o[c] = sum_j p[j] v_j[c] over n keys (v_j = v + j * stride) with the output in registers: 64 output
    /// floats per pass at AVX-512, even and odd keys in separate accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WeightedSum(float* o, float* p, float* v, long stride, int d, int n, SimdLevel level)
    {
        int c = 0;
        if (level >= SimdLevel.Vector512 && Vector512.IsHardwareAccelerated)
        {
            for (; c <= d - 64; c += 64)
            {
                Vector512<float> e0 = default, e1 = default, e2 = default, e3 = default, f0 = default, f1 = default, f2 = default, f3 = default;
                int j = 0;
                for (; j <= n - 2; j += 2)
                {
                    float* row = v + j * stride + c;
                    Vector512<float> pe = Vector512.Create(p[j]), po = Vector512.Create(p[j + 1]);
                    e0 = Vector512.FusedMultiplyAdd(pe, Vector512.Load(row), e0);
                    e1 = Vector512.FusedMultiplyAdd(pe, Vector512.Load(row + 16), e1);
                    e2 = Vector512.FusedMultiplyAdd(pe, Vector512.Load(row + 32), e2);
                    e3 = Vector512.FusedMultiplyAdd(pe, Vector512.Load(row + 48), e3);
                    f0 = Vector512.FusedMultiplyAdd(po, Vector512.Load(row + stride), f0);
                    f1 = Vector512.FusedMultiplyAdd(po, Vector512.Load(row + stride + 16), f1);
                    f2 = Vector512.FusedMultiplyAdd(po, Vector512.Load(row + stride + 32), f2);
                    f3 = Vector512.FusedMultiplyAdd(po, Vector512.Load(row + stride + 48), f3);
                }
                if (j < n)
                {
                    float* row = v + j * stride + c;
                    Vector512<float> pe = Vector512.Create(p[j]);
                    e0 = Vector512.FusedMultiplyAdd(pe, Vector512.Load(row), e0);
                    e1 = Vector512.FusedMultiplyAdd(pe, Vector512.Load(row + 16), e1);
                    e2 = Vector512.FusedMultiplyAdd(pe, Vector512.Load(row + 32), e2);
                    e3 = Vector512.FusedMultiplyAdd(pe, Vector512.Load(row + 48), e3);
                }
                (e0 + f0).Store(o + c); (e1 + f1).Store(o + c + 16); (e2 + f2).Store(o + c + 32); (e3 + f3).Store(o + c + 48);
            }
            for (; c <= d - 16; c += 16)
            {
                Vector512<float> e = default, f = default;
                int j = 0;
                for (; j <= n - 2; j += 2)
                {
                    e = Vector512.FusedMultiplyAdd(Vector512.Create(p[j]), Vector512.Load(v + j * stride + c), e);
                    f = Vector512.FusedMultiplyAdd(Vector512.Create(p[j + 1]), Vector512.Load(v + (j + 1) * stride + c), f);
                }
                if (j < n) e = Vector512.FusedMultiplyAdd(Vector512.Create(p[j]), Vector512.Load(v + j * stride + c), e);
                (e + f).Store(o + c);
            }
        }
        if (level >= SimdLevel.Vector256 && Vector256.IsHardwareAccelerated)
        {
            // 64 outputs a pass in 8 accumulators (a head of T5): each probability is broadcast once for 8 FMAs. With
            // two chains per 8 outputs, as below, the FMAs waited on each other and this took 8% of a sentence-t5 encoder.
            for (; c <= d - 64; c += 64)
            {
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
                for (int j = 0; j < n; j++)
                {
                    float* row = v + j * stride + c;
                    Vector256<float> w = Vector256.Create(p[j]);
                    a0 = Vector256.FusedMultiplyAdd(w, Vector256.Load(row), a0);
                    a1 = Vector256.FusedMultiplyAdd(w, Vector256.Load(row + 8), a1);
                    a2 = Vector256.FusedMultiplyAdd(w, Vector256.Load(row + 16), a2);
                    a3 = Vector256.FusedMultiplyAdd(w, Vector256.Load(row + 24), a3);
                    a4 = Vector256.FusedMultiplyAdd(w, Vector256.Load(row + 32), a4);
                    a5 = Vector256.FusedMultiplyAdd(w, Vector256.Load(row + 40), a5);
                    a6 = Vector256.FusedMultiplyAdd(w, Vector256.Load(row + 48), a6);
                    a7 = Vector256.FusedMultiplyAdd(w, Vector256.Load(row + 56), a7);
                }
                a0.Store(o + c); a1.Store(o + c + 8); a2.Store(o + c + 16); a3.Store(o + c + 24);
                a4.Store(o + c + 32); a5.Store(o + c + 40); a6.Store(o + c + 48); a7.Store(o + c + 56);
            }
            for (; c <= d - 8; c += 8)
            {
                Vector256<float> e = default, f = default;
                int j = 0;
                for (; j <= n - 2; j += 2)
                {
                    e = Vector256.FusedMultiplyAdd(Vector256.Create(p[j]), Vector256.Load(v + j * stride + c), e);
                    f = Vector256.FusedMultiplyAdd(Vector256.Create(p[j + 1]), Vector256.Load(v + (j + 1) * stride + c), f);
                }
                if (j < n) e = Vector256.FusedMultiplyAdd(Vector256.Create(p[j]), Vector256.Load(v + j * stride + c), e);
                (e + f).Store(o + c);
            }
        }
        if (level >= SimdLevel.Vector128 && Vector128.IsHardwareAccelerated)
            for (; c <= d - 4; c += 4)
            {
                Vector128<float> e = default, f = default;
                int j = 0;
                for (; j <= n - 2; j += 2)
                {
                    e = Vector128.FusedMultiplyAdd(Vector128.Create(p[j]), Vector128.Load(v + j * stride + c), e);
                    f = Vector128.FusedMultiplyAdd(Vector128.Create(p[j + 1]), Vector128.Load(v + (j + 1) * stride + c), f);
                }
                if (j < n) e = Vector128.FusedMultiplyAdd(Vector128.Create(p[j]), Vector128.Load(v + j * stride + c), e);
                (e + f).Store(o + c);
            }
        for (; c < d; c++)
        {
            float sum = 0;
            for (int j = 0; j < n; j++) sum += p[j] * v[j * stride + c];
            o[c] = sum;
        }
    }

    /// <summary>sums[t] = q . k_t for the four rows k_t = k + t * stride, n floats each (four independent chains).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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

    /// <summary>a . b over n floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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

    /// <summary>scores[j] += bias[j], or -inf where mask[j] == 0 (either may be null); returns the largest score.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float AddBiasMaskAndMax(float* scores, float* bias, float* mask, int n, SimdLevel level)
    {
        int i = 0;
        float max = float.NegativeInfinity;
        if (level >= SimdLevel.Vector512 && Vector512.IsHardwareAccelerated && n >= 16)
        {
            Vector512<float> m = Vector512.Create(float.NegativeInfinity);
            for (; i <= n - 16; i += 16)
            {
                Vector512<float> x = Vector512.Load(scores + i);
                if (bias != null) x += Vector512.Load(bias + i);
                if (mask != null) x = Vector512.ConditionalSelect(Vector512.Equals(Vector512.Load(mask + i), Vector512<float>.Zero), Vector512.Create(float.NegativeInfinity), x);
                x.Store(scores + i);
                m = Vector512.Max(m, x);
            }
            for (int l = 0; l < 16; l++) max = MathF.Max(max, m[l]);
        }
        if (level >= SimdLevel.Vector256 && Vector256.IsHardwareAccelerated && n - i >= 8)
        {
            Vector256<float> m = Vector256.Create(float.NegativeInfinity);
            for (; i <= n - 8; i += 8)
            {
                Vector256<float> x = Vector256.Load(scores + i);
                if (bias != null) x += Vector256.Load(bias + i);
                if (mask != null) x = Vector256.ConditionalSelect(Vector256.Equals(Vector256.Load(mask + i), Vector256<float>.Zero), Vector256.Create(float.NegativeInfinity), x);
                x.Store(scores + i);
                m = Vector256.Max(m, x);
            }
            for (int l = 0; l < 8; l++) max = MathF.Max(max, m[l]);
        }
        if (level >= SimdLevel.Vector128 && Vector128.IsHardwareAccelerated && n - i >= 4)
        {
            Vector128<float> m = Vector128.Create(float.NegativeInfinity);
            for (; i <= n - 4; i += 4)
            {
                Vector128<float> x = Vector128.Load(scores + i);
                if (bias != null) x += Vector128.Load(bias + i);
                if (mask != null) x = Vector128.ConditionalSelect(Vector128.Equals(Vector128.Load(mask + i), Vector128<float>.Zero), Vector128.Create(float.NegativeInfinity), x);
                x.Store(scores + i);
                m = Vector128.Max(m, x);
            }
            for (int l = 0; l < 4; l++) max = MathF.Max(max, m[l]);
        }
        for (; i < n; i++)
        {
            if (mask != null && mask[i] == 0f) { scores[i] = float.NegativeInfinity; continue; }
            if (bias != null) scores[i] += bias[i];
            max = MathF.Max(max, scores[i]);
        }
        return max;
    }

    /// <summary>scores[j] = exp(scores[j] - max) (exp(-inf) = 0), returning their sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float ExpAndSum(float* scores, int n, float max, SimdLevel level)
    {
        int i = 0;
        float sum = 0;
        if (level >= SimdLevel.Vector512 && Vector512.IsHardwareAccelerated && n >= 16)
        {
            Vector512<float> acc = default, m = Vector512.Create(max);
            for (; i <= n - 16; i += 16)
            {
                Vector512<float> e = VectorMath.Exp(Vector512.Load(scores + i) - m);
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
                Vector256<float> e = VectorMath.Exp(Vector256.Load(scores + i) - m);
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
                Vector128<float> e = VectorMath.Exp(Vector128.Load(scores + i) - m);
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
}
