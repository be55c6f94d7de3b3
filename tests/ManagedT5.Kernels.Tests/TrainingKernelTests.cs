// The training kernels (Training/TrainingKernels.cs) against their scalar twins (Reference/TrainingReference.cs) on odd
// and real Flan-T5 shapes, and the twins' backward ops against central finite differences of their forward ops.
using ManagedT5.Kernels.Cpu;
using ManagedT5.Kernels.Cpu.Training;

namespace ManagedT5.Kernels.Tests;

public sealed class TrainingKernelTests : IDisposable
{
    private const double Tolerance = 2e-5;      // fast vs twin: relative to the largest magnitude (f32 sums in another order)
    private const double FiniteTolerance = 2e-3; // twin vs finite differences of an f32 forward (h = 1e-3)
    private readonly TrainingKernels _fast = new(3);

    public void Dispose() => _fast.Dispose();

    private static float[] R(int length, int seed, float scale = 1f) => TestData.Random(length, seed, scale);

    internal static void Close(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what, double tolerance = Tolerance)
    {
        double max = 1e-30, worst = 0;
        for (int i = 0; i < expected.Length; i++) max = Math.Max(max, Math.Abs(expected[i]));
        for (int i = 0; i < expected.Length; i++) worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]) / max);
        Assert.True(worst <= tolerance, $"{what}: worst error {worst:g3} of the largest magnitude {max:g3} (tolerance {tolerance:g3})");
    }

    public static TheoryData<int, int, int> MatMulShapes() => new()
    {
        { 1, 1, 1 }, { 7, 13, 17 }, { 6, 5, 16 }, { 67, 33, 35 }, { 13, 64, 48 }, { 49, 3, 65 },
        { 96, 512, 384 }, { 40, 768, 2048 }, { 64, 2048, 512 }, { 128, 64, 128 },
        // LoRA's narrow products (rows split into blocks), a depth past one 256-deep slab with a tail, wide and tall edges.
        { 1030, 512, 8 }, { 1024, 8, 384 }, { 301, 700, 20 }, { 8, 257, 1031 }, { 515, 129, 33 },
    };

    /// <summary>Every layout of A and B, overwrite and accumulate, at every SIMD level this machine runs (each level has
    /// its own micro-kernel and packing path).</summary>
    [Theory, MemberData(nameof(MatMulShapes))]
    public void MatMulMatchesTwin(int m, int p, int n)
    {
        float[] a = R(m * p, 1), b = R(p * n, 2), start = R(m * n, 3);
        foreach (SimdLevel level in SimdLevels.Supported())
            foreach (bool transposeA in new[] { false, true })
                foreach (bool transposeB in new[] { false, true })
                    foreach (bool accumulate in new[] { false, true })
                    {
                        float[] expected = (float[])start.Clone(), actual = (float[])start.Clone();
                        TrainingReference.MatMul(a, m, p, transposeA, b, n, transposeB, expected, accumulate);
                        _fast.Level = level;
                        _fast.MatMul(a, m, p, transposeA, b, n, transposeB, actual, accumulate);
                        Close(expected, actual, $"matmul {m}x{p}x{n} {level} transposeA={transposeA} transposeB={transposeB} accumulate={accumulate}");
                    }
        _fast.Level = SimdLevels.Best;
    }

    public static TheoryData<int, int, int> NarrowShapes() => new()
    {
        // flan-t5-small's LoRA at r 8 and 4 (1024 encoder rows, 256 decoder rows), r 16, odd and tiny shapes, a depth
        // past one slab on every side.
        { 1024, 512, 8 }, { 1024, 8, 384 }, { 8, 1024, 512 }, { 384, 1024, 8 }, { 256, 384, 4 }, { 4, 256, 512 },
        { 1024, 16, 384 }, { 16, 1024, 512 }, { 512, 1024, 16 }, { 13, 7, 5 }, { 7, 300, 3 }, { 3, 301, 29 },
        { 530, 9, 61 }, { 1, 1, 1 }, { 11, 600, 8 },
    };

    /// <summary>LoRA's narrow products (C 8 wide with A plain; C 16 wide with A transposed and B plain) take
    /// NarrowProducts, which reads the wide operand in place: its sums are the packed GEMM's, chain for chain, so the
    /// two agree to the bit in every layout (the other layouts run the packed GEMM both times), and both with the twin.</summary>
    [Theory, MemberData(nameof(NarrowShapes))]
    public void NarrowProductsAreThePackedGemmsBits(int m, int p, int n)
    {
        float[] a = R(m * p, 21), b = R(p * n, 22), start = R(m * n, 23);
        foreach (bool transposeA in new[] { false, true })
            foreach (bool transposeB in new[] { false, true })
                foreach (bool accumulate in new[] { false, true })
                {
                    float[] packed = (float[])start.Clone(), narrow = (float[])start.Clone(), twin = (float[])start.Clone();
                    string what = $"{m}x{p}x{n} transposeA={transposeA} transposeB={transposeB} accumulate={accumulate}";
                    _fast.Narrow = false;
                    _fast.MatMul(a, m, p, transposeA, b, n, transposeB, packed, accumulate);
                    _fast.Narrow = true;
                    _fast.MatMul(a, m, p, transposeA, b, n, transposeB, narrow, accumulate);
                    TrainingReference.MatMul(a, m, p, transposeA, b, n, transposeB, twin, accumulate);
                    for (int i = 0; i < packed.Length; i++)
                        Assert.True(BitConverter.SingleToInt32Bits(packed[i]) == BitConverter.SingleToInt32Bits(narrow[i]),
                            $"{what}: element {i} is {narrow[i]:R}, the packed GEMM's {packed[i]:R}");
                    Close(twin, narrow, what);
                }
    }

    /// <summary>
    /// The head's dX = dLogits·W sums over the whole vocabulary (32128). Summed as one f32 chain per element it drifts
    /// 1.6e-5 of the largest magnitude here (in the model that put every gradient ~5e-6, worst 7.5e-6, from PyTorch's,
    /// whose GEMM also sums in depth blocks); MatMul's depth blocks of 256, each added into C, keep it at 1.4e-6.
    /// Tolerance 4e-6: the single chain fails it 4x over.
    /// </summary>
    [Fact]
    public void MatMulOverTheVocabularyStaysExact()
    {
        const int rows = 12, vocab = 32128, d = 512;
        // dLogits rows as the cross-entropy writes them: softmax(logits)/rows − onehot/rows.
        float[] dLogits = R(rows * vocab, 11, 4f), w = R(vocab * d, 12, 0.05f);
        for (int r = 0; r < rows; r++)
        {
            Span<float> row = dLogits.AsSpan(r * vocab, vocab);
            float max = System.Numerics.Tensors.TensorPrimitives.Max(row);
            double sum = 0;
            for (int j = 0; j < vocab; j++) sum += Math.Exp(row[j] - max);
            for (int j = 0; j < vocab; j++) row[j] = (float)(Math.Exp(row[j] - max) / sum / rows);
            row[(r * 7919) % vocab] -= 1f / rows;
        }
        float[] expected = new float[rows * d], actual = new float[rows * d];
        TrainingReference.LinearBackwardInput(dLogits, w, expected, rows, d, vocab);
        _fast.LinearBackwardInput(dLogits, w, actual, rows, d, vocab);
        Close(expected, actual, "head dX over the vocabulary", 4e-6);
    }

    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(9, 17, 5)]
    [InlineData(33, 32, 48)]
    [InlineData(64, 512, 384)]
    [InlineData(16, 768, 2048)]
    public void LinearOpsMatchTwin(int rows, int inF, int outF)
    {
        float[] x = R(rows * inF, 4), w = R(outF * inF, 5), dy = R(rows * outF, 6);
        float[] y0 = new float[rows * outF], y1 = new float[rows * outF];
        TrainingReference.LinearForward(x, w, y0, rows, inF, outF);
        _fast.LinearForward(x, w, y1, rows, inF, outF);
        Close(y0, y1, "linear forward");
        float[] dx0 = new float[rows * inF], dx1 = new float[rows * inF];
        TrainingReference.LinearBackwardInput(dy, w, dx0, rows, inF, outF);
        _fast.LinearBackwardInput(dy, w, dx1, rows, inF, outF);
        Close(dx0, dx1, "linear dX");
        float[] dw0 = R(outF * inF, 7), dw1 = (float[])dw0.Clone();
        TrainingReference.LinearBackwardWeight(dy, x, dw0, rows, inF, outF);
        _fast.LinearBackwardWeight(dy, x, dw1, rows, inF, outF);
        Close(dw0, dw1, "linear dW");
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 7)]
    [InlineData(5, 32)]
    [InlineData(11, 67)]
    [InlineData(40, 512)]
    [InlineData(9, 768)]
    public void RmsNormMatchesTwin(int rows, int d)
    {
        float[] x = R(rows * d, 8), w = R(d, 9), dy = R(rows * d, 10);
        float[] y0 = new float[rows * d], y1 = new float[rows * d], r0 = new float[rows], r1 = new float[rows];
        TrainingReference.RmsNorm(x, w, rows, d, 1e-6f, y0, r0);
        _fast.RmsNorm(x, w, rows, d, 1e-6f, y1, r1);
        Close(y0, y1, "rmsnorm y");
        Close(r0, r1, "rmsnorm 1/rms");
        float[] dx0 = R(rows * d, 11), dx1 = (float[])dx0.Clone(), dw0 = R(d, 12), dw1 = (float[])dw0.Clone();
        TrainingReference.RmsNormBackward(x, w, r0, dy, rows, d, dx0, dw0);
        _fast.RmsNormBackward(x, w, r1, dy, rows, d, dx1, dw1);
        Close(dx0, dx1, "rmsnorm dx");
        Close(dw0, dw1, "rmsnorm dweight");
    }

    public static TheoryData<int, int, int, int, int, string> AttentionShapes() => new()
    {
        { 1, 1, 1, 1, 1, "none" }, { 2, 3, 5, 7, 9, "mask" }, { 2, 3, 5, 7, 7, "causal" }, { 1, 6, 64, 33, 33, "causal" },
        { 2, 8, 64, 17, 67, "mask" }, { 1, 12, 64, 5, 40, "none" }, { 3, 6, 8, 13, 13, "mask" },
    };

    [Theory, MemberData(nameof(AttentionShapes))]
    public void AttentionMatchesTwin(int batch, int heads, int dKv, int qLen, int kLen, string masking)
    {
        int inner = heads * dKv;
        float[] q = R(batch * qLen * inner, 13), k = R(batch * kLen * inner, 14), v = R(batch * kLen * inner, 15);
        float[] bias = R(heads * qLen * kLen, 16), dc = R(batch * qLen * inner, 17);
        int[] mask = masking == "mask" ? Mask(batch, kLen) : [];
        bool causal = masking == "causal";
        int pSize = batch * heads * qLen * kLen;
        float[] p0 = new float[pSize], p1 = new float[pSize], c0 = new float[dc.Length], c1 = new float[dc.Length];
        TrainingReference.Attention(q, k, v, bias, mask, causal, batch, heads, dKv, qLen, kLen, p0, c0);
        _fast.Attention(q, k, v, bias, mask, causal, batch, heads, dKv, qLen, kLen, p1, c1);
        Close(p0, p1, "probs");
        Close(c0, c1, "context");
        float[] dq0 = new float[q.Length], dk0 = new float[k.Length], dv0 = new float[v.Length], ds0 = new float[pSize], db0 = new float[bias.Length];
        float[] dq1 = new float[q.Length], dk1 = new float[k.Length], dv1 = new float[v.Length], db1 = new float[bias.Length];
        TrainingReference.AttentionBackward(q, k, v, p0, dc, batch, heads, dKv, qLen, kLen, dq0, dk0, dv0, ds0, db0);
        // The fast form writes dScores over the probabilities (in place), as the model uses it.
        _fast.AttentionBackward(q, k, v, p1, dc, batch, heads, dKv, qLen, kLen, dq1, dk1, dv1, p1, db1);
        Close(dq0, dq1, "dq"); Close(dk0, dk1, "dk"); Close(dv0, dv1, "dv"); Close(ds0, p1, "dscores"); Close(db0, db1, "dbias");
    }

    internal static int[] Mask(int batch, int kLen)
    {
        var mask = new int[batch * kLen];
        for (int b = 0; b < batch; b++)
            for (int j = 0; j < kLen; j++) mask[b * kLen + j] = j < Math.Max(1, kLen - 3 * b - 1) ? 1 : 0;
        return mask;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(67)]
    [InlineData(1023)]
    [InlineData(1025)]
    [InlineData(5000)]
    public void ActivationsMatchTwin(int n)
    {
        float[] a = R(n, 18, 3f), b = R(n, 19), dh = R(n, 20);
        float[] e = new float[n], f = new float[n], e2 = new float[n], f2 = new float[n];
        TrainingReference.GeluNew(a, e); _fast.GeluNew(a, f); Close(e, f, "gelu_new");
        TrainingReference.GatedGeluNew(a, b, e); _fast.GatedGeluNew(a, b, f); Close(e, f, "gated gelu_new");
        TrainingReference.GeluNewBackward(a, dh, e); _fast.GeluNewBackward(a, dh, f); Close(e, f, "gelu_new backward");
        TrainingReference.GatedGeluNewBackward(a, b, dh, e, e2); _fast.GatedGeluNewBackward(a, b, dh, f, f2);
        Close(e, f, "gated gelu_new da"); Close(e2, f2, "gated gelu_new db");
        TrainingReference.Relu(a, e); _fast.Relu(a, f); Close(e, f, "relu");
        TrainingReference.ReluBackward(e, dh, e2); _fast.ReluBackward(f, dh, f2); Close(e2, f2, "relu backward");
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(5, 33)]
    [InlineData(9, 32128)]
    public void CrossEntropyMatchesTwin(int rows, int vocab)
    {
        float[] logits = R(rows * vocab, 21, 4f);
        int[] labels = new int[rows];
        for (int r = 0; r < rows; r++) labels[r] = r % 3 == 2 ? -100 : (r * 7919) % vocab;
        float[] l0 = (float[])logits.Clone(), l1 = (float[])logits.Clone();
        double s0 = TrainingReference.CrossEntropy(l0, labels, vocab, 0.5f, true, out int n0);
        double s1 = _fast.CrossEntropy(l1, labels, vocab, 0.5f, true, out int n1);
        Assert.Equal(n0, n1);
        Assert.True(Math.Abs(s0 - s1) <= 1e-5 * Math.Max(1, Math.Abs(s0)), $"loss {s1} vs {s0}");
        Close(l0, l1, "cross-entropy gradient");
    }

    [Fact]
    public void EmbeddingAndPositionBiasMatchTwin()
    {
        int vocab = 37, d = 67;
        float[] table = R(vocab * d, 22), dOut = R(11 * d, 23);
        int[] ids = [3, 0, 36, 3, 3, 7, 1, 0, 9, 36, 2];
        float[] o0 = new float[ids.Length * d], o1 = new float[ids.Length * d];
        TrainingReference.Embedding(ids, table, d, o0); _fast.Embedding(ids, table, d, o1); Close(o0, o1, "embedding");
        float[] t0 = R(vocab * d, 24), t1 = (float[])t0.Clone();
        TrainingReference.EmbeddingBackward(ids, dOut, d, t0); _fast.EmbeddingBackward(ids, dOut, d, t1); Close(t0, t1, "embedding scatter-add");
        foreach (bool bidirectional in new[] { true, false })
        {
            int heads = 6, buckets = 32, qLen = 19, kLen = 150;
            float[] bt = R(buckets * heads, 25), b0 = new float[heads * qLen * kLen], b1 = new float[b0.Length], db = R(b0.Length, 26);
            TrainingReference.PositionBias(bt, heads, qLen, kLen, bidirectional, buckets, 128, b0);
            _fast.PositionBias(bt, heads, qLen, kLen, bidirectional, buckets, 128, b1);
            Close(b0, b1, "position bias");
            float[] g0 = new float[bt.Length], g1 = new float[bt.Length];
            TrainingReference.PositionBiasBackward(db, heads, qLen, kLen, bidirectional, buckets, 128, g0);
            _fast.PositionBiasBackward(db, heads, qLen, kLen, bidirectional, buckets, 128, g1);
            Close(g0, g1, "position bias backward");
        }
    }

    // ------------------------------------------------ the twins against central finite differences

    /// <summary>Central differences of loss(x) = Σ g ∘ f(x) over every element of <paramref name="x"/>, against the twin's gradient.</summary>
    private static void FiniteCheck(float[] x, Func<double> loss, float[] analytic, string what)
    {
        var numeric = new float[x.Length];
        const float h = 1e-3f;
        for (int i = 0; i < x.Length; i++)
        {
            float keep = x[i];
            x[i] = keep + h; double plus = loss();
            x[i] = keep - h; double minus = loss();
            x[i] = keep;
            numeric[i] = (float)((plus - minus) / (2 * h));
        }
        Close(numeric, analytic, what + " vs finite differences", FiniteTolerance);
    }

    private static double Dot(float[] g, float[] y) { double s = 0; for (int i = 0; i < g.Length; i++) s += (double)g[i] * y[i]; return s; }

    [Fact]
    public void LinearTwinMatchesFiniteDifferences()
    {
        int rows = 3, inF = 5, outF = 4;
        float[] x = R(rows * inF, 30), w = R(outF * inF, 31), g = R(rows * outF, 32), y = new float[rows * outF];
        double Loss() { TrainingReference.LinearForward(x, w, y, rows, inF, outF); return Dot(g, y); }
        float[] dx = new float[x.Length], dw = new float[w.Length];
        TrainingReference.LinearBackwardInput(g, w, dx, rows, inF, outF);
        TrainingReference.LinearBackwardWeight(g, x, dw, rows, inF, outF);
        FiniteCheck(x, Loss, dx, "linear dX");
        FiniteCheck(w, Loss, dw, "linear dW");
    }

    [Fact]
    public void RmsNormTwinMatchesFiniteDifferences()
    {
        int rows = 3, d = 7;
        float[] x = R(rows * d, 33), w = R(d, 34), g = R(rows * d, 35), y = new float[rows * d], r = new float[rows];
        double Loss() { TrainingReference.RmsNorm(x, w, rows, d, 1e-6f, y, r); return Dot(g, y); }
        Loss();
        float[] dx = new float[x.Length], dw = new float[d];
        TrainingReference.RmsNormBackward(x, w, r, g, rows, d, dx, dw);
        FiniteCheck(x, Loss, dx, "rmsnorm dx");
        FiniteCheck(w, Loss, dw, "rmsnorm dweight");
    }

    [Theory]
    [InlineData("mask")]
    [InlineData("causal")]
    public void AttentionTwinMatchesFiniteDifferences(string masking)
    {
        int batch = 2, heads = 2, dKv = 3, qLen = 4, kLen = masking == "causal" ? 4 : 5, inner = heads * dKv;
        float[] q = R(batch * qLen * inner, 36), k = R(batch * kLen * inner, 37), v = R(batch * kLen * inner, 38);
        float[] table = R(32 * heads, 39), bias = new float[heads * qLen * kLen], g = R(batch * qLen * inner, 40);
        int[] mask = masking == "mask" ? Mask(batch, kLen) : [];
        bool causal = masking == "causal";
        float[] probs = new float[batch * heads * qLen * kLen], context = new float[g.Length];
        double Loss()
        {
            TrainingReference.PositionBias(table, heads, qLen, kLen, !causal, 32, 128, bias);
            TrainingReference.Attention(q, k, v, bias, mask, causal, batch, heads, dKv, qLen, kLen, probs, context);
            return Dot(g, context);
        }
        Loss();
        float[] dq = new float[q.Length], dk = new float[k.Length], dv = new float[v.Length], ds = new float[probs.Length], db = new float[bias.Length], dt = new float[table.Length];
        TrainingReference.AttentionBackward(q, k, v, probs, g, batch, heads, dKv, qLen, kLen, dq, dk, dv, ds, db);
        TrainingReference.PositionBiasBackward(db, heads, qLen, kLen, !causal, 32, 128, dt);
        FiniteCheck(q, Loss, dq, "attention dq");
        FiniteCheck(k, Loss, dk, "attention dk");
        FiniteCheck(v, Loss, dv, "attention dv");
        FiniteCheck(table, Loss, dt, "relative_attention_bias");
    }

    [Fact]
    public void ActivationTwinsMatchFiniteDifferences()
    {
        int n = 9;
        float[] a = R(n, 41, 3f), b = R(n, 42), g = R(n, 43), y = new float[n];
        float[] da = new float[n], db = new float[n];
        TrainingReference.GatedGeluNewBackward(a, b, g, da, db);
        double Gated() { TrainingReference.GatedGeluNew(a, b, y); return Dot(g, y); }
        FiniteCheck(a, Gated, da, "gated gelu_new da");
        FiniteCheck(b, Gated, db, "gated gelu_new db");
        TrainingReference.GeluNewBackward(a, g, da);
        FiniteCheck(a, () => { TrainingReference.GeluNew(a, y); return Dot(g, y); }, da, "gelu_new");
        TrainingReference.Relu(a, y);
        TrainingReference.ReluBackward(y, g, da);
        FiniteCheck(a, () => { TrainingReference.Relu(a, y); return Dot(g, y); }, da, "relu");
    }

    [Fact]
    public void CrossEntropyTwinMatchesFiniteDifferences()
    {
        int rows = 4, vocab = 6;
        float[] logits = R(rows * vocab, 44, 2f);
        int[] labels = [2, -100, 5, 0];
        float[] grad = (float[])logits.Clone();
        TrainingReference.CrossEntropy(grad, labels, vocab, 1f / 3, true, out int count);
        Assert.Equal(3, count);
        FiniteCheck(logits, () => TrainingReference.CrossEntropy((float[])logits.Clone(), labels, vocab, 0, false, out _) / 3, grad, "cross-entropy");
    }
}
