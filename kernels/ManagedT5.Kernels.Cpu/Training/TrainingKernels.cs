// The training ops of T5 on the CPU, forward-with-saves and backward: Linear (x·Wᵀ, dX = dY·W, dW += dYᵀ·X), embedding
// gather / scatter-add, RMSNorm, relative position bias, attention, gelu_new / ReLU, cross-entropy. SIMD + worker pool;
// each op has its plain scalar twin in Reference/TrainingReference.cs with the same signature.
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ManagedT5.Kernels.Cpu.Training;

/// <summary>
/// T5's training kernels. All tensors are row-major f32 spans with their shapes in the parameter docs. An instance owns a
/// worker pool: use it from one thread at a time (ops run in parallel on the pool inside). Outputs never alias inputs
/// unless a method says so. Nothing is allocated per call once the threads' packing scratch has grown to the largest
/// shapes seen.
/// </summary>
public sealed unsafe partial class TrainingKernels : IDisposable
{
    private readonly WorkerPool _pool;

    /// <summary>Kernels running on <paramref name="threads"/> threads (the caller included); 0 = processor count.</summary>
    public TrainingKernels(int threads = 0)
    {
        if (threads < 0) throw new ArgumentOutOfRangeException(nameof(threads), threads, "threads: must be 0 (all processors) or positive.");
        _pool = new WorkerPool(threads == 0 ? Environment.ProcessorCount : threads);
    }

    /// <summary>Threads an op runs on.</summary>
    public int Threads => _pool.Threads;

    /// <summary>The worker pool, for the optimizer's update (ManagedT5.Training).</summary>
    internal WorkerPool Pool => _pool;

    /// <summary>Ops that run their scalar twin (<see cref="TrainingReference"/>, double accumulation) instead of the
    /// fast kernel: for tests that find which op a difference from PyTorch comes from. Slow, and allocates.</summary>
    internal TrainingOps Twins { get; set; }

    // ---------------------------------------------------------------- matrix products

    /// <summary>
    /// C[m, n] (+)= A·B with B [p, n] row-major and A either [m, p] row-major or, with <paramref name="transposeA"/>,
    /// stored [p, m] (then A = storedᵀ). Overwrites C unless <paramref name="accumulate"/>. Each C element is a
    /// sequential f32 sum over p in blocks of 256, each added into C (which keeps sums over a vocabulary near f32's
    /// rounding: the head's dX sums 32,128 products; as one f32 chain it drifted ~1e-5 of the result's largest, as
    /// 126 block sums added into C ~1e-6).
    /// </summary>
    public void MatMul(ReadOnlySpan<float> a, int m, int p, bool transposeA, ReadOnlySpan<float> b, int n, Span<float> c, bool accumulate) =>
        MatMul(a, m, p, transposeA, b, n, transposeB: false, c, accumulate);

    /// <summary>
    /// <see cref="MatMul(ReadOnlySpan{float}, int, int, bool, ReadOnlySpan{float}, int, Span{float}, bool)"/> with B
    /// stored [n, p] when <paramref name="transposeB"/> (then B = storedᵀ: a weight [out, in] as HF stores it).
    /// </summary>
    public void MatMul(ReadOnlySpan<float> a, int m, int p, bool transposeA, ReadOnlySpan<float> b, int n, bool transposeB, Span<float> c, bool accumulate)
    {
        if ((Twins & TrainingOps.MatMul) != 0) { TrainingReference.MatMul(a, m, p, transposeA, b, n, transposeB, c, accumulate); return; }
        Check(a, (long)m * p, nameof(a)); Check(b, (long)p * n, nameof(b)); Check(c, (long)m * n, nameof(c));
        fixed (float* pa = a, pb = b, pc = c)
            MatMulGemm.Run(_pool, Level, pa, transposeA, pb, transposeB, pc, m, p, n, accumulate, Narrow);
    }

    /// <summary>Whether products with a side of 16 or fewer take <see cref="NarrowProducts"/> (tests turn it off to
    /// compare with the packed GEMM).</summary>
    internal bool Narrow { get; set; } = true;

    /// <summary>Widest SIMD path the matrix products take (the hardware's best unless a test forces a narrower one).</summary>
    internal SimdLevel Level { get; set; } = SimdLevels.Best;

    /// <summary>Linear forward y[rows, out] (+)= x[rows, in] · Wᵀ with W [out, in] as HF stores it.</summary>
    public void LinearForward(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, Span<float> y, int rows, int inFeatures, int outFeatures, bool accumulate = false) =>
        MatMul(x, rows, inFeatures, false, weight, outFeatures, transposeB: true, y, accumulate);

    /// <summary>Linear backward to the input: dx[rows, in] (+)= dy[rows, out] · W[out, in].</summary>
    public void LinearBackwardInput(ReadOnlySpan<float> dy, ReadOnlySpan<float> weight, Span<float> dx, int rows, int inFeatures, int outFeatures, bool accumulate = false) =>
        MatMul(dy, rows, outFeatures, false, weight, inFeatures, dx, accumulate);

    /// <summary>Linear backward to the weight: dW[out, in] += dyᵀ · x over the rows (dy [rows, out], x [rows, in]).</summary>
    public void LinearBackwardWeight(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, Span<float> dWeight, int rows, int inFeatures, int outFeatures) =>
        MatMul(dy, outFeatures, rows, true, x, inFeatures, dWeight, accumulate: true);

    // ---------------------------------------------------------------- embedding

    /// <summary>output[i, :] = table[ids[i], :] (table [vocab, d]).</summary>
    public void Embedding(ReadOnlySpan<int> ids, ReadOnlySpan<float> table, int d, Span<float> output)
    {
        Check(output, (long)ids.Length * d, nameof(output));
        int vocab = table.Length / d;
        for (int i = 0; i < ids.Length; i++)
        {
            if ((uint)ids[i] >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(ids), ids[i], $"ids: token id {ids[i]} at {i} is outside the vocabulary (0..{vocab - 1}).");
            table.Slice(ids[i] * d, d).CopyTo(output.Slice(i * d, d));
        }
    }

    /// <summary>Scatter-add: dTable[ids[i], :] += dOutput[i, :] (repeated ids add up). Parallel over columns.</summary>
    public void EmbeddingBackward(ReadOnlySpan<int> ids, ReadOnlySpan<float> dOutput, int d, Span<float> dTable)
    {
        Check(dOutput, (long)ids.Length * d, nameof(dOutput));
        int vocab = dTable.Length / d;
        foreach (int id in ids)
            if ((uint)id >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(ids), id, $"ids: token id {id} is outside the vocabulary (0..{vocab - 1}).");
        fixed (int* pi = ids) fixed (float* g = dOutput, t = dTable)
        {
            var job = new ScatterJob { Ids = pi, Count = ids.Length, D = d, Grad = g, Table = t };
            _pool.RunRanges(ref job, (d + 15) / 16, 1);
        }
    }

    // ---------------------------------------------------------------- RMSNorm (T5LayerNorm)

    /// <summary>y = weight * x * r per row, r = 1/sqrt(mean(x²) + eps) saved in <paramref name="inverseRms"/> [rows].</summary>
    public void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, int rows, int d, float epsilon, Span<float> y, Span<float> inverseRms)
    {
        if ((Twins & TrainingOps.RmsNorm) != 0) { TrainingReference.RmsNorm(x, weight, rows, d, epsilon, y, inverseRms); return; }
        Check(x, (long)rows * d, nameof(x)); Check(y, (long)rows * d, nameof(y)); Check(weight, d, nameof(weight)); Check(inverseRms, rows, nameof(inverseRms));
        fixed (float* px = x, pw = weight, py = y, pr = inverseRms)
        {
            var job = new RmsNormJob { X = px, W = pw, Y = py, R = pr, D = d, Epsilon = epsilon };
            _pool.RunRanges(ref job, rows, 8);
        }
    }

    /// <summary>
    /// RMSNorm backward: with g = dy * weight, dx += r·g − x·r³·(g·x)/d per row (ADDED into <paramref name="dx"/>, the
    /// residual stream's gradient), and dWeight += Σ_rows dy * x * r.
    /// </summary>
    public void RmsNormBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> inverseRms, ReadOnlySpan<float> dy,
        int rows, int d, Span<float> dx, Span<float> dWeight)
    {
        if ((Twins & TrainingOps.RmsNormBackward) != 0) { TrainingReference.RmsNormBackward(x, weight, inverseRms, dy, rows, d, dx, dWeight); return; }
        Check(x, (long)rows * d, nameof(x)); Check(dy, (long)rows * d, nameof(dy)); Check(dx, (long)rows * d, nameof(dx));
        Check(weight, d, nameof(weight)); Check(inverseRms, rows, nameof(inverseRms));
        fixed (float* px = x, pw = weight, pr = inverseRms, pdy = dy, pdx = dx, pdw = dWeight)
        {
            var job = new RmsNormBackwardJob { X = px, W = pw, R = pr, Dy = pdy, Dx = pdx, D = d };
            _pool.RunRanges(ref job, rows, 8);
            if (!dWeight.IsEmpty)
            {
                Check(dWeight, d, nameof(dWeight));
                var weightJob = new RmsNormWeightJob { X = px, R = pr, Dy = pdy, Dw = pdw, D = d, Rows = rows };
                _pool.RunRanges(ref weightJob, (d + 7) / 8, 1);
            }
        }
    }

    // ---------------------------------------------------------------- relative position bias

    /// <summary>bias[h, i, j] = table[bucket(j − i), h] (table [buckets, heads]); T5's buckets (<see cref="RelativePosition"/>).</summary>
    public void PositionBias(ReadOnlySpan<float> table, int heads, int queryLength, int keyLength, bool bidirectional, int numBuckets, int maxDistance, Span<float> bias)
    {
        Check(table, (long)numBuckets * heads, nameof(table)); Check(bias, (long)heads * queryLength * keyLength, nameof(bias));
        for (int i = 0; i < queryLength; i++)
            for (int j = 0; j < keyLength; j++)
            {
                int bucket = RelativePosition.Bucket(j - i, bidirectional, numBuckets, maxDistance);
                for (int h = 0; h < heads; h++) bias[(h * queryLength + i) * keyLength + j] = table[bucket * heads + h];
            }
    }

    /// <summary>dTable[bucket(j − i), h] += dBias[h, i, j].</summary>
    public void PositionBiasBackward(ReadOnlySpan<float> dBias, int heads, int queryLength, int keyLength, bool bidirectional, int numBuckets, int maxDistance, Span<float> dTable)
    {
        Check(dTable, (long)numBuckets * heads, nameof(dTable)); Check(dBias, (long)heads * queryLength * keyLength, nameof(dBias));
        for (int i = 0; i < queryLength; i++)
            for (int j = 0; j < keyLength; j++)
            {
                int bucket = RelativePosition.Bucket(j - i, bidirectional, numBuckets, maxDistance);
                for (int h = 0; h < heads; h++) dTable[bucket * heads + h] += dBias[(h * queryLength + i) * keyLength + j];
            }
    }

    // ---------------------------------------------------------------- attention

    /// <summary>
    /// T5 attention forward, per batch row b and head h: scores = q·kᵀ (NO 1/sqrt(d_kv) scaling in T5) + bias[h]
    /// (optional, [heads, qLen, kLen]); keys with keyMask[b, j] == 0 (optional, [batch, kLen]) and, when
    /// <paramref name="causal"/>, keys j > i are left out; probs = softmax (saved [batch, heads, qLen, kLen]);
    /// context = probs·v. q [batch, qLen, heads·dKv], k and v [batch, kLen, heads·dKv], context [batch, qLen, heads·dKv].
    /// With <paramref name="dropout"/> above 0 (training, as HF's T5Attention), context = dropout(probs)·v with the mask of
    /// <see cref="DropoutMask"/> at <paramref name="dropoutKey"/> over the probs' element index; probs are saved undropped.
    /// </summary>
    public void Attention(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<float> bias, ReadOnlySpan<int> keyMask,
        bool causal, int batch, int heads, int dKv, int queryLength, int keyLength, Span<float> probs, Span<float> context, double dropout = 0, ulong dropoutKey = 0)
    {
        if (!(dropout is >= 0 and < 1)) throw new ArgumentOutOfRangeException(nameof(dropout), dropout, "dropout: the probability must be in [0, 1).");
        if ((Twins & TrainingOps.Attention) != 0) { TrainingReference.Attention(q, k, v, bias, keyMask, causal, batch, heads, dKv, queryLength, keyLength, probs, context, dropout, dropoutKey); return; }
        int inner = heads * dKv;
        Check(q, (long)batch * queryLength * inner, nameof(q)); Check(k, (long)batch * keyLength * inner, nameof(k)); Check(v, (long)batch * keyLength * inner, nameof(v));
        Check(probs, (long)batch * heads * queryLength * keyLength, nameof(probs)); Check(context, (long)batch * queryLength * inner, nameof(context));
        if (!bias.IsEmpty) Check(bias, (long)heads * queryLength * keyLength, nameof(bias));
        if (!keyMask.IsEmpty) Check(keyMask, (long)batch * keyLength, nameof(keyMask));
        fixed (float* pq = q, pk = k, pv = v, pb = bias, pp = probs, pc = context) fixed (int* pm = keyMask)
        {
            var job = new AttentionJob
            {
                Q = pq, K = pk, V = pv, Bias = pb, Mask = pm, Probs = pp, Context = pc, Causal = causal,
                Heads = heads, DKv = dKv, QLen = queryLength, KLen = keyLength, Level = Level,
                DropKey = dropoutKey, DropThreshold = DropoutMask.Threshold(dropout), DropScale = DropoutMask.Scale(dropout),
            };
            _pool.RunRanges(ref job, batch * heads, 1);
        }
    }

    /// <summary>
    /// Attention backward from dContext: dV = probsᵀ·dContext, dP = dContext·vᵀ, dScores = P ∘ (dP − rowsum(dP ∘ P)),
    /// dQ = dScores·k, dK = dScoresᵀ·q (dq, dk, dv overwritten, layouts as the inputs). dScores [batch, heads, qLen, kLen]
    /// is written to <paramref name="dScores"/>, which may be the <paramref name="probs"/> buffer itself (in place).
    /// When <paramref name="dBias"/> is not empty, dBias[h] += Σ_b dScores[b, h] (the bias is shared over the batch).
    /// With <paramref name="dropout"/> (the forward's rate and key) the mask is regenerated: dV = dropout(P)ᵀ·dContext and
    /// dP = dropout(dContext·vᵀ) before the softmax's backward.
    /// </summary>
    public void AttentionBackward(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<float> probs, ReadOnlySpan<float> dContext,
        int batch, int heads, int dKv, int queryLength, int keyLength, Span<float> dq, Span<float> dk, Span<float> dv, Span<float> dScores, Span<float> dBias,
        double dropout = 0, ulong dropoutKey = 0)
    {
        if (!(dropout is >= 0 and < 1)) throw new ArgumentOutOfRangeException(nameof(dropout), dropout, "dropout: the probability must be in [0, 1).");
        if ((Twins & TrainingOps.AttentionBackward) != 0)
        {
            TrainingReference.AttentionBackward(q, k, v, probs.ToArray(), dContext, batch, heads, dKv, queryLength, keyLength, dq, dk, dv, dScores, dBias, dropout, dropoutKey);
            return;
        }
        int inner = heads * dKv;
        if (keyLength > MaxKeyLength) throw new ArgumentOutOfRangeException(nameof(keyLength), keyLength, $"keyLength: at most {MaxKeyLength} keys.");
        long qSize = (long)batch * queryLength * inner, kSize = (long)batch * keyLength * inner, pSize = (long)batch * heads * queryLength * keyLength;
        Check(q, qSize, nameof(q)); Check(k, kSize, nameof(k)); Check(v, kSize, nameof(v)); Check(probs, pSize, nameof(probs));
        Check(dContext, qSize, nameof(dContext)); Check(dq, qSize, nameof(dq)); Check(dk, kSize, nameof(dk)); Check(dv, kSize, nameof(dv)); Check(dScores, pSize, nameof(dScores));
        fixed (float* pq = q, pk = k, pv = v, pp = probs, pdc = dContext, pdq = dq, pdk = dk, pdv = dv, pds = dScores, pdb = dBias)
        {
            var job = new AttentionBackwardJob
            {
                Q = pq, K = pk, V = pv, Probs = pp, DContext = pdc, Dq = pdq, Dk = pdk, Dv = pdv, DScores = pds,
                Heads = heads, DKv = dKv, QLen = queryLength, KLen = keyLength, Level = Level,
                DropKey = dropoutKey, DropThreshold = DropoutMask.Threshold(dropout), DropScale = DropoutMask.Scale(dropout),
            };
            _pool.RunRanges(ref job, batch * heads, 1);
            if (!dBias.IsEmpty)
            {
                Check(dBias, (long)heads * queryLength * keyLength, nameof(dBias));
                var sum = new BatchSumJob { Source = pds, Destination = pdb, Batch = batch, Size = (long)heads * queryLength * keyLength };
                _pool.RunRanges(ref sum, (int)((sum.Size + 1023) / 1024), 1);
            }
        }
    }

    /// <summary>The longest key length <see cref="AttentionBackward"/> takes.</summary>
    public const int MaxKeyLength = 16384;

    // ---------------------------------------------------------------- feed-forward activations

    /// <summary>gelu_new (tanh form): y = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).</summary>
    public void GeluNew(ReadOnlySpan<float> x, Span<float> y) => Elementwise(x, default, default, y, ElementOp.Gelu);

    /// <summary>Gated gelu: h = gelu_new(a) ∘ b (a = wi_0 output, b = wi_1 output).</summary>
    public void GatedGeluNew(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> h) => Elementwise(a, b, default, h, ElementOp.GatedGelu);

    /// <summary>dx = dy · gelu_new'(x).</summary>
    public void GeluNewBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx) => Elementwise(x, dy, default, dx, ElementOp.GeluBackward);

    /// <summary>Gated gelu backward: da = dh ∘ b ∘ gelu_new'(a), db = dh ∘ gelu_new(a).</summary>
    public void GatedGeluNewBackward(ReadOnlySpan<float> a, ReadOnlySpan<float> b, ReadOnlySpan<float> dh, Span<float> da, Span<float> db)
    {
        Check(db, a.Length, nameof(db));
        fixed (float* pdb = db) Elementwise(a, b, dh, da, ElementOp.GatedGeluBackward, pdb);
    }

    /// <summary>y = max(x, 0).</summary>
    public void Relu(ReadOnlySpan<float> x, Span<float> y) { Check(y, x.Length, nameof(y)); TensorPrimitives.Max(x, 0f, y); }

    /// <summary>dx = dy where y > 0, else 0 (y = the ReLU's output).</summary>
    public void ReluBackward(ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx) => Elementwise(y, dy, default, dx, ElementOp.ReluBackward);

    // ---------------------------------------------------------------- loss

    /// <summary>
    /// Token cross-entropy over logits [rows, vocab] with labels [rows] (−100 = ignored): returns the sum of the rows'
    /// −log softmax(logits)[label] (log-sum-exp after subtracting the row max) and the number of counted rows in
    /// <paramref name="count"/>. With <paramref name="gradientScale"/> non-zero the logits are overwritten IN PLACE by
    /// gradientScale · (softmax − onehot) (0 for ignored rows): the gradient of gradientScale · the summed loss.
    /// </summary>
    public double CrossEntropy(Span<float> logits, ReadOnlySpan<int> labels, int vocab, float gradientScale, bool writeGradient, out int count)
    {
        if ((Twins & TrainingOps.CrossEntropy) != 0) return TrainingReference.CrossEntropy(logits, labels, vocab, gradientScale, writeGradient, out count);
        Check(logits, (long)labels.Length * vocab, nameof(logits));
        foreach (int label in labels)
            if (label != -100 && (uint)label >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(labels), label, $"labels: label {label} is outside the vocabulary (0..{vocab - 1}) and not the ignore index -100.");
        double total = 0;
        count = 0;
        fixed (float* pl = logits) fixed (int* plab = labels)
        {
            var job = new CrossEntropyJob { Logits = pl, Labels = plab, Vocab = vocab, Scale = gradientScale, Write = writeGradient };
            int rows = labels.Length;
            // Each row's loss goes to a per-row slot so the sum is taken in row order whatever the split.
            double[] slots = _lossSlots.Length >= rows ? _lossSlots : (_lossSlots = new double[rows]);
            fixed (double* ps = slots)
            {
                job.Losses = ps;
                _pool.RunRanges(ref job, rows, 4);
            }
            for (int r = 0; r < rows; r++)
                if (labels[r] != -100) { total += slots[r]; count++; }
        }
        return total;
    }

    private double[] _lossSlots = [];

    /// <summary>Stops the worker threads.</summary>
    public void Dispose() => _pool.Dispose();

    // ---------------------------------------------------------------- jobs

    private static void Check<T>(ReadOnlySpan<T> span, long length, string name)
    {
        if (span.Length < length) throw new ArgumentException($"{name}: holds {span.Length} elements, the shape needs {length}.", name);
    }

    private static void Check<T>(Span<T> span, long length, string name) => Check((ReadOnlySpan<T>)span, length, name);

    private enum ElementOp { Gelu, GatedGelu, GeluBackward, GatedGeluBackward, ReluBackward }

    private void Elementwise(ReadOnlySpan<float> a, ReadOnlySpan<float> b, ReadOnlySpan<float> c, Span<float> output, ElementOp op, float* second = null)
    {
        Check(output, a.Length, nameof(output));
        if ((Twins & TrainingOps.Gelu) != 0 && op != ElementOp.ReluBackward)
        {
            switch (op)
            {
                case ElementOp.Gelu: TrainingReference.GeluNew(a, output); break;
                case ElementOp.GatedGelu: TrainingReference.GatedGeluNew(a, b, output); break;
                case ElementOp.GeluBackward: TrainingReference.GeluNewBackward(a, b, output); break;
                default: TrainingReference.GatedGeluNewBackward(a, b, c, output, new Span<float>(second, a.Length)); break;
            }
            return;
        }
        if (op != ElementOp.Gelu) Check(b, a.Length, op == ElementOp.GatedGelu || op == ElementOp.GatedGeluBackward ? "b" : "dy");
        if (op == ElementOp.GatedGeluBackward) Check(c, a.Length, "dh");
        fixed (float* pa = a, pb = b, pc = c, po = output)
        {
            var job = new ElementJob { A = pa, B = pb, C = pc, Output = po, Second = second, Op = op, Length = a.Length };
            _pool.RunRanges(ref job, (a.Length + 1023) / 1024, 1);
        }
    }

    private struct ElementJob : IRangeJob
    {
        public float* A, B, C, Output, Second;
        public ElementOp Op;
        public long Length;

        public void Execute(int first, int end)
        {
            const float c = 0.7978845608028654f; // sqrt(2/pi)
            float* u = stackalloc float[1024];
            float* t = stackalloc float[1024];
            for (int unit = first; unit < end; unit++)
            {
                long e0 = unit * 1024L;
                int n = (int)Math.Min(1024, Length - e0);
                var x = new ReadOnlySpan<float>(A + e0, n);
                var output = new Span<float>(Output + e0, n);
                if (Op == ElementOp.ReluBackward)
                {
                    for (int e = 0; e < n; e++) output[e] = x[e] > 0 ? B[e0 + e] : 0f;
                    continue;
                }
                // tanh(√(2/π)·(x + 0.044715·x³)) for the block, vectorised by TensorPrimitives.
                var us = new Span<float>(u, n); var ts = new Span<float>(t, n);
                TensorPrimitives.Multiply(x, x, us);
                TensorPrimitives.Multiply(us, 0.044715f, us);
                TensorPrimitives.Add(us, 1f, us);
                TensorPrimitives.Multiply(us, x, us);
                TensorPrimitives.Multiply(us, c, us);
                TensorPrimitives.Tanh(us, ts);
                int start = Vector256.IsHardwareAccelerated ? Vectorized(e0, n, t) : 0;
                for (int e = start; e < n; e++)
                {
                    float xe = x[e], te = t[e];
                    float gelu = 0.5f * xe * (1f + te);
                    float derivative = 0.5f * (1f + te) + 0.5f * xe * (1f - te * te) * c * (1f + 3f * 0.044715f * xe * xe);
                    switch (Op)
                    {
                        case ElementOp.Gelu: output[e] = gelu; break;
                        case ElementOp.GatedGelu: output[e] = gelu * B[e0 + e]; break;
                        case ElementOp.GeluBackward: output[e] = B[e0 + e] * derivative; break;
                        default: // gated backward: da = dh·b·gelu'(a) into Output, db = dh·gelu(a) into Second
                            float dh = C[e0 + e];
                            output[e] = dh * B[e0 + e] * derivative;
                            Second[e0 + e] = dh * gelu;
                            break;
                    }
                }
            }
        }

        /// <summary>The scalar loop's formulas eight elements at a time, operation for operation (no fused
        /// multiply-adds), so every element is the scalar loop's to the bit; returns the first element left.</summary>
        private readonly int Vectorized(long e0, int n, float* t)
        {
            const float c = 0.7978845608028654f;
            Vector256<float> half = Vector256.Create(0.5f), one = Vector256.Create(1f), vc = Vector256.Create(c), cubic = Vector256.Create(3f * 0.044715f);
            float* x = A + e0, b = B + e0, dhs = C + e0, output = Output + e0, second = Second + e0;
            int e = 0;
            for (; e + 8 <= n; e += 8)
            {
                Vector256<float> xe = Vector256.Load(x + e), te = Vector256.Load(t + e);
                Vector256<float> gelu = half * xe * (one + te);
                switch (Op)
                {
                    case ElementOp.Gelu: gelu.Store(output + e); continue;
                    case ElementOp.GatedGelu: (gelu * Vector256.Load(b + e)).Store(output + e); continue;
                }
                Vector256<float> derivative = half * (one + te) + half * xe * (one - te * te) * vc * (one + cubic * xe * xe);
                if (Op == ElementOp.GeluBackward) { (Vector256.Load(b + e) * derivative).Store(output + e); continue; }
                Vector256<float> dh = Vector256.Load(dhs + e);
                (dh * Vector256.Load(b + e) * derivative).Store(output + e);
                (dh * gelu).Store(second + e);
            }
            return e;
        }
    }

    private struct ScatterJob : IRangeJob
    {
        public int* Ids;
        public int Count, D;
        public float* Grad, Table;

        public void Execute(int first, int end)
        {
            int c0 = first * 16, c1 = Math.Min(end * 16, D);
            for (int i = 0; i < Count; i++)
            {
                float* g = Grad + (long)i * D, t = Table + (long)Ids[i] * D;
                for (int c = c0; c < c1; c++) t[c] += g[c];
            }
        }
    }

    private struct RmsNormJob : IRangeJob
    {
        public float* X, W, Y, R;
        public int D;
        public float Epsilon;

        public void Execute(int first, int end)
        {
            for (int row = first; row < end; row++)
            {
                var x = new ReadOnlySpan<float>(X + (long)row * D, D);
                var y = new Span<float>(Y + (long)row * D, D);
                // HF: variance = mean(x²) in f32; x * rsqrt(variance + eps); weight * that.
                float r = 1f / MathF.Sqrt(TensorPrimitives.SumOfSquares(x) / D + Epsilon);
                R[row] = r;
                TensorPrimitives.Multiply(x, r, y);
                TensorPrimitives.Multiply(y, new ReadOnlySpan<float>(W, D), y);
            }
        }
    }

    private struct RmsNormBackwardJob : IRangeJob
    {
        public float* X, W, R, Dy, Dx;
        public int D;

        public void Execute(int first, int end)
        {
            for (int row = first; row < end; row++)
            {
                float* x = X + (long)row * D, dy = Dy + (long)row * D, dx = Dx + (long)row * D;
                float r = R[row];
                float dot = 0; // Σ dy·w·x
                int i = 0;
                if (Vector256.IsHardwareAccelerated)
                {
                    Vector256<float> acc = default;
                    for (; i + 8 <= D; i += 8) acc = Vector256.FusedMultiplyAdd(Vector256.Load(dy + i) * Vector256.Load(W + i), Vector256.Load(x + i), acc);
                    dot = Vector256.Sum(acc);
                }
                for (; i < D; i++) dot += dy[i] * W[i] * x[i];
                float coefficient = dot * r * r * r / D;
                i = 0;
                if (Vector256.IsHardwareAccelerated)
                {
                    var vr = Vector256.Create(r); var vc = Vector256.Create(coefficient);
                    for (; i + 8 <= D; i += 8)
                        (Vector256.Load(dx + i) + Vector256.Load(dy + i) * Vector256.Load(W + i) * vr - Vector256.Load(x + i) * vc).Store(dx + i);
                }
                for (; i < D; i++) dx[i] += dy[i] * W[i] * r - x[i] * coefficient;
            }
        }
    }

    private struct RmsNormWeightJob : IRangeJob
    {
        public float* X, R, Dy, Dw;
        public int D, Rows;

        public void Execute(int first, int end)
        {
            int c0 = first * 8, c1 = Math.Min(end * 8, D);
            if (c1 - c0 == 8 && Vector256.IsHardwareAccelerated)
            {
                Vector256<float> acc = default;
                for (int row = 0; row < Rows; row++)
                    acc = Vector256.FusedMultiplyAdd(Vector256.Load(Dy + (long)row * D + c0) * Vector256.Load(X + (long)row * D + c0), Vector256.Create(R[row]), acc);
                (Vector256.Load(Dw + c0) + acc).Store(Dw + c0);
                return;
            }
            for (int c = c0; c < c1; c++)
            {
                float sum = 0;
                for (int row = 0; row < Rows; row++) sum += Dy[(long)row * D + c] * X[(long)row * D + c] * R[row];
                Dw[c] += sum;
            }
        }
    }

    /// <summary>One (batch row, head) per unit: scores = q·kᵀ as a packed product on this thread, bias, masks and the
    /// softmax a row at a time, then context = probs·v (the head's columns of the q/k/v rows, read in place).</summary>
    private struct AttentionJob : IRangeJob
    {
        public float* Q, K, V, Bias, Probs, Context;
        public int* Mask;
        public bool Causal;
        public int Heads, DKv, QLen, KLen;
        public SimdLevel Level;
        public ulong DropKey;          // dropout on the probs (DropThreshold 0: none)
        public uint DropThreshold;
        public float DropScale;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int first, int end)
        {
            int inner = Heads * DKv;
            for (int unit = first; unit < end; unit++)
            {
                int b = unit / Heads, h = unit % Heads;
                float* probs = Probs + (long)unit * QLen * KLen;
                float* q = Q + (long)b * QLen * inner + h * DKv, k = K + (long)b * KLen * inner + h * DKv;
                MatMulGemm.Run(null, Level, new MatrixOperand(q, inner, false), new MatrixOperand(k, inner, true), probs, KLen,
                    QLen, DKv, KLen, accumulate: false);
                for (int i = 0; i < QLen; i++)
                {
                    var row = new Span<float>(probs + (long)i * KLen, KLen);
                    if (Bias != null) TensorPrimitives.Add(row, new ReadOnlySpan<float>(Bias + ((long)h * QLen + i) * KLen, KLen), row);
                    if (Causal) row[Math.Min(i + 1, KLen)..].Fill(float.NegativeInfinity);
                    if (Mask != null)
                        for (int j = 0; j < KLen; j++)
                            if (Mask[(long)b * KLen + j] == 0) row[j] = float.NegativeInfinity;
                    float max = TensorPrimitives.Max(row);
                    if (float.IsNegativeInfinity(max)) { row.Clear(); continue; }   // every key left out: no weights
                    TensorPrimitives.Subtract(row, max, row);
                    TensorPrimitives.Exp(row, row);                                   // exp(-inf) = 0 for the left-out keys
                    TensorPrimitives.Multiply(row, 1f / TensorPrimitives.Sum(row), row);
                }
                float* v = V + (long)b * KLen * inner + h * DKv, context = Context + (long)b * QLen * inner + h * DKv;
                float* weights = probs;
                if (DropThreshold != 0)
                {
                    // context = dropout(probs)·v; the probs stay undropped for the backward pass, which regenerates the mask.
                    weights = Scratch.Get(ScratchSlot.DroppedProbs, (long)QLen * KLen);
                    DropoutMask.Apply(probs, weights, QLen * KLen, (uint)((long)unit * QLen * KLen), DropKey, DropThreshold, DropScale, accumulate: false);
                }
                MatMulGemm.Run(null, Level, new MatrixOperand(weights, KLen, false), new MatrixOperand(v, inner, false), context, inner,
                    QLen, KLen, DKv, accumulate: false);
            }
        }
    }

    /// <summary>One (batch row, head) per unit, each product packed on this thread: dV = Pᵀ·dC, dP = dC·vᵀ (scratch),
    /// dS = P ∘ (dP − rowsum(P ∘ dP)) (may overwrite P: dV has used it), dQ = dS·k, dK = dSᵀ·q.</summary>
    private struct AttentionBackwardJob : IRangeJob
    {
        public float* Q, K, V, Probs, DContext, Dq, Dk, Dv, DScores;
        public int Heads, DKv, QLen, KLen;
        public SimdLevel Level;
        public ulong DropKey;          // the forward's dropout on the probs (DropThreshold 0: none)
        public uint DropThreshold;
        public float DropScale;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public readonly void Execute(int first, int end)
        {
            int inner = Heads * DKv;
            float* dp = Scratch.Get(ScratchSlot.Scores, (long)QLen * KLen);
            for (int unit = first; unit < end; unit++)
            {
                int b = unit / Heads, h = unit % Heads;
                float* probs = Probs + (long)unit * QLen * KLen, ds = DScores + (long)unit * QLen * KLen;
                long queryOffset = (long)b * QLen * inner + h * DKv, keyOffset = (long)b * KLen * inner + h * DKv;
                var dc = new MatrixOperand(DContext + queryOffset, inner, false);
                float* weights = probs;
                uint dropFirst = (uint)((long)unit * QLen * KLen);
                if (DropThreshold != 0)
                {
                    weights = Scratch.Get(ScratchSlot.DroppedProbs, (long)QLen * KLen);   // the forward's dropout(P), regenerated
                    DropoutMask.Apply(probs, weights, QLen * KLen, dropFirst, DropKey, DropThreshold, DropScale, accumulate: false);
                }
                MatMulGemm.Run(null, Level, new MatrixOperand(weights, KLen, true), dc, Dv + keyOffset, inner, KLen, QLen, DKv, accumulate: false);
                MatMulGemm.Run(null, Level, dc, new MatrixOperand(V + keyOffset, inner, true), dp, KLen, QLen, DKv, KLen, accumulate: false);
                if (DropThreshold != 0) DropoutMask.Apply(dp, dp, QLen * KLen, dropFirst, DropKey, DropThreshold, DropScale, accumulate: false);   // dP through the mask
                for (int i = 0; i < QLen; i++)
                {
                    var p = new ReadOnlySpan<float>(probs + (long)i * KLen, KLen);
                    var dpRow = new Span<float>(dp + (long)i * KLen, KLen);
                    float weighted = TensorPrimitives.Dot(p, dpRow);
                    TensorPrimitives.Subtract(dpRow, weighted, dpRow);
                    TensorPrimitives.Multiply(p, dpRow, new Span<float>(ds + (long)i * KLen, KLen));   // ds may be p: elementwise
                }
                var dScores = new MatrixOperand(ds, KLen, false);
                MatMulGemm.Run(null, Level, dScores, new MatrixOperand(K + keyOffset, inner, false), Dq + queryOffset, inner, QLen, KLen, DKv, accumulate: false);
                MatMulGemm.Run(null, Level, new MatrixOperand(ds, KLen, true), new MatrixOperand(Q + queryOffset, inner, false), Dk + keyOffset, inner,
                    KLen, QLen, DKv, accumulate: false);
            }
        }
    }

    private struct BatchSumJob : IRangeJob
    {
        public float* Source, Destination;
        public int Batch;
        public long Size;

        public void Execute(int first, int end)
        {
            long e0 = first * 1024L, e1 = Math.Min(end * 1024L, Size);
            for (int b = 0; b < Batch; b++)
            {
                float* s = Source + b * Size;
                for (long e = e0; e < e1; e++) Destination[e] += s[e];
            }
        }
    }

    private struct CrossEntropyJob : IRangeJob
    {
        public float* Logits;
        public int* Labels;
        public double* Losses;
        public int Vocab;
        public float Scale;
        public bool Write;

        public void Execute(int first, int end)
        {
            for (int r = first; r < end; r++)
            {
                var row = new Span<float>(Logits + (long)r * Vocab, Vocab);
                int label = Labels[r];
                if (label == -100)
                {
                    Losses[r] = 0;
                    if (Write) row.Clear();
                    continue;
                }
                // log-softmax after subtracting the row max: loss = log Σ exp(x − max) − (x[label] − max).
                float max = TensorPrimitives.Max(row);
                float target = row[label] - max;
                if (Write)
                {
                    TensorPrimitives.Subtract(row, max, row);
                    TensorPrimitives.Exp(row, row);                 // the row now holds exp(x − max)
                    float sum = TensorPrimitives.Sum(row);
                    Losses[r] = MathF.Log(sum) - target;
                    TensorPrimitives.Multiply(row, Scale / sum, row);
                    row[label] -= Scale;
                }
                else
                {
                    float sum = 0;
                    for (int j = 0; j < Vocab; j++) sum += MathF.Exp(row[j] - max);
                    Losses[r] = MathF.Log(sum) - target;
                }
            }
        }
    }
}

/// <summary>The training kernels' op families, for <see cref="TrainingKernels.Twins"/>.</summary>
[Flags]
internal enum TrainingOps
{
    /// <summary>None: every op fast.</summary>
    None = 0,
    /// <summary>MatMul and the Linear ops built on it.</summary>
    MatMul = 1,
    /// <summary>RMSNorm forward.</summary>
    RmsNorm = 2,
    /// <summary>RMSNorm backward.</summary>
    RmsNormBackward = 4,
    /// <summary>Attention forward.</summary>
    Attention = 8,
    /// <summary>Attention backward.</summary>
    AttentionBackward = 16,
    /// <summary>gelu_new and gated gelu, forward and backward.</summary>
    Gelu = 32,
    /// <summary>Cross-entropy.</summary>
    CrossEntropy = 64,
    /// <summary>Dropout.</summary>
    Dropout = 128,
    /// <summary>Every op.</summary>
    All = 255,
}
