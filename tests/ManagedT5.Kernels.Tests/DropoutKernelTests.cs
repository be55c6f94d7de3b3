// Training dropout (Training/Dropout.cs): the SIMD kernel equal bit for bit to its scalar twin at every tail length and
// at any thread count; the masks drop a fraction p (to within 5 standard deviations) and scale kept values by exactly
// 1/(1 - p); sites are independent; attention with dropout against its twin and the twin against finite differences.
using ManagedT5.Kernels.Cpu.Training;

namespace ManagedT5.Kernels.Tests;

public sealed class DropoutKernelTests : IDisposable
{
    private readonly TrainingKernels _fast = new(3);

    public void Dispose() => _fast.Dispose();

    private static float[] R(int length, int seed, float scale = 1f) => TestData.Random(length, seed, scale);

    public static TheoryData<int> Lengths() => [0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 67, 1000, 8191, 8192, 8193, 20011];

    [Theory, MemberData(nameof(Lengths))]
    public void FastEqualsTheTwinBitForBit(int length)
    {
        float[] x = R(length, 1), start = R(length, 2);
        foreach (double rate in new[] { 0.1, 0.5, 0.93 })
            foreach (bool accumulate in new[] { false, true })
            {
                ulong key = DropoutMask.SiteKey(DropoutMask.RunKey(42, 3, 1), 17);
                float[] twin = (float[])start.Clone(), fast = (float[])start.Clone();
                TrainingReference.Dropout(x, twin, rate, key, accumulate);
                _fast.Dropout(x, fast, rate, key, accumulate);
                Assert.Equal(twin, fast);
                if (!accumulate)
                {
                    float[] inPlace = (float[])x.Clone();
                    _fast.Dropout(inPlace, inPlace, rate, key);
                    Assert.Equal(twin, inPlace);
                }
            }
    }

    [Fact]
    public void ThreadCountDoesNotChangeTheResult()
    {
        float[] x = R(100_003, 3);
        using var one = new TrainingKernels(1);
        float[] a = new float[x.Length], b = new float[x.Length];
        one.Dropout(x, a, 0.1, 12345);
        _fast.Dropout(x, b, 0.1, 12345);
        Assert.Equal(a, b);
    }

    [Theory]
    [InlineData(0.1)]
    [InlineData(0.3)]
    [InlineData(0.5)]
    [InlineData(0.9)]
    public void DropsAFractionPAndScalesKeptValuesExactly(double rate)
    {
        const int n = 1 << 20;
        float[] x = R(n, 4, 3f), y = new float[n], other = new float[n];
        for (int i = 0; i < n; i++) if (x[i] == 0) x[i] = 1f;   // zeros in y then mean dropped
        ulong key = DropoutMask.SiteKey(DropoutMask.RunKey(7, 1, 0), 5);
        _fast.Dropout(x, y, rate, key);
        _fast.Dropout(x, other, rate, DropoutMask.SiteKey(DropoutMask.RunKey(7, 1, 0), 6));   // another site of the same pass
        float scale = (float)(1.0 / (1.0 - rate));
        int dropped = 0, both = 0;
        for (int i = 0; i < n; i++)
        {
            if (y[i] == 0) dropped++;
            else Assert.Equal(x[i] * scale, y[i]);
            if (y[i] == 0 && other[i] == 0) both++;
        }
        // Binomial(n, p): the count within 5 standard deviations; two sites drop the same element with probability p².
        double sigma = Math.Sqrt(rate * (1 - rate) / n), sigmaBoth = Math.Sqrt(rate * rate * (1 - rate * rate) / n);
        Assert.True(Math.Abs((double)dropped / n - rate) < 5 * sigma, $"dropped {(double)dropped / n:F5} of the elements at p {rate}");
        Assert.True(Math.Abs((double)both / n - rate * rate) < 5 * sigmaBoth, $"two sites dropped {(double)both / n:F5} together (p² {rate * rate:F5})");
        // Runs of consecutive indices are not correlated: each 64-element block's fraction spreads as the binomial's does.
        double sumSquares = 0;
        int blocks = n / 64;
        for (int bl = 0; bl < blocks; bl++)
        {
            int c = 0;
            for (int i = bl * 64; i < bl * 64 + 64; i++) if (y[i] == 0) c++;
            sumSquares += (c - 64 * rate) * (c - 64 * rate);
        }
        double variance = sumSquares / blocks, expected = 64 * rate * (1 - rate);
        Assert.True(Math.Abs(variance / expected - 1) < 0.05, $"per-block variance {variance:F3}, binomial {expected:F3}");
    }

    [Fact]
    public void KeysDecideTheMask()
    {
        float[] x = R(4096, 5), a = new float[x.Length], b = new float[x.Length], c = new float[x.Length];
        _fast.Dropout(x, a, 0.1, DropoutMask.SiteKey(DropoutMask.RunKey(42, 1, 0), 3));
        _fast.Dropout(x, b, 0.1, DropoutMask.SiteKey(DropoutMask.RunKey(42, 1, 0), 3));
        Assert.Equal(a, b);
        foreach (ulong other in new[] { DropoutMask.RunKey(43, 1, 0), DropoutMask.RunKey(42, 2, 0), DropoutMask.RunKey(42, 1, 1) })
        {
            _fast.Dropout(x, c, 0.1, DropoutMask.SiteKey(other, 3));
            Assert.NotEqual(a, c);
        }
        // Rate 0 copies x unchanged.
        _fast.Dropout(x, c, 0, 99);
        Assert.Equal(x, c);
        Assert.Throws<ArgumentOutOfRangeException>(() => _fast.Dropout(x, c, 1.0, 99));
    }

    private static void Close(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what, double tolerance) =>
        TrainingKernelTests.Close(expected, actual, what, tolerance);

    private static int[] Mask(int batch, int kLen) => TrainingKernelTests.Mask(batch, kLen);

    [Theory]
    [InlineData(2, 3, 5, 7, 9, "mask")]
    [InlineData(1, 6, 64, 33, 33, "causal")]
    [InlineData(2, 8, 64, 17, 67, "mask")]
    [InlineData(1, 12, 64, 5, 40, "none")]
    public void AttentionWithDropoutMatchesTwin(int batch, int heads, int dKv, int qLen, int kLen, string masking)
    {
        const double rate = 0.3;
        ulong key = DropoutMask.SiteKey(DropoutMask.RunKey(1, 2, 0), 9);
        int inner = heads * dKv;
        float[] q = R(batch * qLen * inner, 13), k = R(batch * kLen * inner, 14), v = R(batch * kLen * inner, 15);
        float[] bias = R(heads * qLen * kLen, 16), dc = R(batch * qLen * inner, 17);
        int[] mask = masking == "mask" ? Mask(batch, kLen) : [];
        bool causal = masking == "causal";
        int pSize = batch * heads * qLen * kLen;
        float[] p0 = new float[pSize], p1 = new float[pSize], pPlain = new float[pSize], c0 = new float[dc.Length], c1 = new float[dc.Length], cPlain = new float[dc.Length];
        TrainingReference.Attention(q, k, v, bias, mask, causal, batch, heads, dKv, qLen, kLen, p0, c0, rate, key);
        _fast.Attention(q, k, v, bias, mask, causal, batch, heads, dKv, qLen, kLen, p1, c1, rate, key);
        _fast.Attention(q, k, v, bias, mask, causal, batch, heads, dKv, qLen, kLen, pPlain, cPlain);
        Assert.Equal(pPlain, p1);                 // the probabilities are saved undropped
        Assert.NotEqual(cPlain, c1);              // the context used the dropped ones
        Close(p0, p1, "probs", 2e-5);
        Close(c0, c1, "context", 2e-5);
        float[] dq0 = new float[q.Length], dk0 = new float[k.Length], dv0 = new float[v.Length], ds0 = new float[pSize], db0 = new float[bias.Length];
        float[] dq1 = new float[q.Length], dk1 = new float[k.Length], dv1 = new float[v.Length], db1 = new float[bias.Length];
        TrainingReference.AttentionBackward(q, k, v, p0, dc, batch, heads, dKv, qLen, kLen, dq0, dk0, dv0, ds0, db0, rate, key);
        _fast.AttentionBackward(q, k, v, p1, dc, batch, heads, dKv, qLen, kLen, dq1, dk1, dv1, p1, db1, rate, key);
        Close(dq0, dq1, "dq", 2e-5); Close(dk0, dk1, "dk", 2e-5); Close(dv0, dv1, "dv", 2e-5); Close(ds0, p1, "dscores", 2e-5); Close(db0, db1, "dbias", 2e-5);
    }

    [Theory]
    [InlineData("mask")]
    [InlineData("causal")]
    public void AttentionTwinWithDropoutMatchesFiniteDifferences(string masking)
    {
        const double rate = 0.4;   // the same fixed mask in every evaluation of the loss
        ulong key = DropoutMask.SiteKey(DropoutMask.RunKey(3, 1, 0), 2);
        int batch = 2, heads = 2, dKv = 3, qLen = 4, kLen = masking == "causal" ? 4 : 5, inner = heads * dKv;
        float[] q = R(batch * qLen * inner, 36), k = R(batch * kLen * inner, 37), v = R(batch * kLen * inner, 38);
        float[] bias = R(heads * qLen * kLen, 39), g = R(batch * qLen * inner, 40);
        int[] mask = masking == "mask" ? Mask(batch, kLen) : [];
        bool causal = masking == "causal";
        float[] probs = new float[batch * heads * qLen * kLen], context = new float[g.Length];
        double Loss()
        {
            TrainingReference.Attention(q, k, v, bias, mask, causal, batch, heads, dKv, qLen, kLen, probs, context, rate, key);
            double s = 0;
            for (int i = 0; i < g.Length; i++) s += (double)g[i] * context[i];
            return s;
        }
        Loss();
        float[] dq = new float[q.Length], dk = new float[k.Length], dv = new float[v.Length], ds = new float[probs.Length], db = new float[bias.Length];
        TrainingReference.AttentionBackward(q, k, v, probs, g, batch, heads, dKv, qLen, kLen, dq, dk, dv, ds, db, rate, key);
        foreach (var (x, analytic, what) in new[] { (q, dq, "dq"), (k, dk, "dk"), (v, dv, "dv"), (bias, db, "dbias") })
        {
            var numeric = new float[x.Length];
            const float h = 1e-3f;
            for (int i = 0; i < x.Length; i++)
            {
                float keep = x[i];
                x[i] = keep + h; double plus = Loss();
                x[i] = keep - h; double minus = Loss();
                x[i] = keep;
                numeric[i] = (float)((plus - minus) / (2 * h));
            }
            Close(numeric, analytic, $"attention {what} with dropout vs finite differences", 2e-3);
        }
    }
}
