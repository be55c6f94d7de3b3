// AdamW against torch.optim.AdamW's algorithm transcribed in double on small vectors, its SIMD form against the scalar
// twin on odd lengths and Flan-T5 shapes (bit for bit: the same float operations in the same order), and global-norm
// clipping (clip_grad_norm_) against its definition.
namespace ManagedT5.Training.Tests;

public sealed class OptimizerTests
{
    /// <summary>torch/optim/adamw.py (_single_tensor_adamw) in double: param.mul_(1 - lr*wd); exp_avg.mul_(b1).add_(g, 1-b1);
    /// exp_avg_sq.mul_(b2).addcmul_(g, g, 1-b2); denom = sqrt(exp_avg_sq)/sqrt(bc2) + eps; param -= lr/bc1 * exp_avg/denom.</summary>
    static void TorchAdamW(double[] p, double[] g, double[] m, double[] v, int step, double lr, double b1, double b2, double eps, double wd)
    {
        double bc1 = 1 - Math.Pow(b1, step), bc2 = 1 - Math.Pow(b2, step);
        for (int i = 0; i < p.Length; i++)
        {
            p[i] *= 1 - lr * wd;
            m[i] = m[i] * b1 + (1 - b1) * g[i];
            v[i] = v[i] * b2 + (1 - b2) * g[i] * g[i];
            double denom = Math.Sqrt(v[i]) / Math.Sqrt(bc2) + eps;
            p[i] -= lr / bc1 * m[i] / denom;
        }
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.01)]
    [InlineData(0.5)]
    public void AdamW_matches_torch_formulas_in_double(double wd)
    {
        var rng = new Random(7);
        int n = 13;
        double[] p = Enumerable.Range(0, n).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
        double[] m = new double[n], v = new double[n];
        float[] pf = p.Select(x => (float)x).ToArray(), mf = new float[n], vf = new float[n];
        var o = new AdamWOptions { WeightDecay = wd };
        double[] lrs = [0.0, 5e-4, 1e-3, 8e-4, 3e-3];
        for (int step = 1; step <= lrs.Length; step++)
        {
            // Gradients of both signs and very different sizes, some zero (v stays 0 there: eps keeps the division finite).
            double[] g = Enumerable.Range(0, n).Select(i => i % 5 == 0 ? 0 : (rng.NextDouble() - 0.5) * Math.Pow(10, i % 4 - 2)).ToArray();
            float[] gf = g.Select(x => (float)x).ToArray();
            g = gf.Select(x => (double)x).ToArray();
            TorchAdamW(p, g, m, v, step, lrs[step - 1], 0.9, 0.999, 1e-8, wd);
            AdamWKernel.Update(pf, gf, mf, vf, AdamWStep.For(o, step, lrs[step - 1], decay: true));
            for (int i = 0; i < n; i++)
            {
                Assert.True(Math.Abs(pf[i] - p[i]) <= 1e-6 * Math.Max(1, Math.Abs(p[i])), $"step {step} p[{i}] {pf[i]} vs {p[i]}");
                // The moments sum gradients of both signs in float: a few float roundings relative, at most 1e-5.
                Assert.True(Math.Abs(mf[i] - m[i]) <= 1e-5 * Math.Abs(m[i]) + 1e-12, $"step {step} m[{i}] {mf[i]} vs {m[i]}");
                Assert.True(Math.Abs(vf[i] - v[i]) <= 1e-5 * Math.Abs(v[i]) + 1e-15, $"step {step} v[{i}] {vf[i]} vs {v[i]}");
            }
        }
    }

    [Fact]
    public void A_step_at_learning_rate_zero_moves_the_moments_but_not_the_parameters()
    {
        float[] p = [0.5f, -1.25f, 3f], g = [0.1f, -0.2f, 0.3f], m = new float[3], v = new float[3];
        float[] before = (float[])p.Clone();
        AdamWKernel.Update(p, g, m, v, AdamWStep.For(new AdamWOptions { WeightDecay = 0.01 }, 1, 0.0, decay: true));
        Assert.Equal(before, p);
        Assert.Equal([0.1f * 0.1f, -0.2f * 0.1f, 0.3f * 0.1f], m, (a, b) => Math.Abs(a - b) < 1e-8f);
        Assert.All(v, x => Assert.True(x > 0));
    }

    [Fact]
    public void Parameters_without_decay_are_not_shrunk()
    {
        var o = new AdamWOptions { WeightDecay = 0.5 };
        Assert.Equal(1.0, AdamWStep.For(o, 3, 1e-2, decay: false).Decay);
        Assert.Equal(1 - 1e-2 * 0.5, AdamWStep.For(o, 3, 1e-2, decay: true).Decay);
    }

    public static IEnumerable<object[]> Lengths =>
        Enumerable.Range(1, 67).Select(n => new object[] { n })
            .Concat(new[] { 512, 512 * 6 * 64, 768 * 2048 + 3, 1024 * 512, 32 * 12 }.Select(n => new object[] { n }));

    [Theory]
    [MemberData(nameof(Lengths))]
    public void AdamW_SIMD_equals_the_scalar_twin(int n)
    {
        var rng = new Random(n);
        float[] p1 = Rand(rng, n, 1), g = Rand(rng, n, 0.01f), m1 = Rand(rng, n, 0.001f), v1 = Rand(rng, n, 0.0001f).Select(Math.Abs).ToArray();
        float[] p2 = (float[])p1.Clone(), m2 = (float[])m1.Clone(), v2 = (float[])v1.Clone();
        var s = AdamWStep.For(new AdamWOptions { WeightDecay = 0.01 }, 4, 1e-3, decay: true);
        AdamWKernel.Reference(p1, g, m1, v1, s);
        AdamWKernel.Update(p2, g, m2, v2, s);
        Assert.Equal(0.0, Errors.RelativeError(p1, p2));
        Assert.Equal(0.0, Errors.RelativeError(m1, m2));
        Assert.Equal(0.0, Errors.RelativeError(v1, v2));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(37)]
    [InlineData(768 * 2048 + 3)]
    public void AdamW_with_a_gradient_scale_equals_clipping_the_gradients_first(int n)
    {
        // The trainer hands clip_grad_norm_'s coefficient to the optimizer instead of multiplying every gradient: the same
        // float products, so the same parameters and moments bit for bit, and the gradients stay as they were.
        var rng = new Random(n);
        float[] p1 = Rand(rng, n, 1), g = Rand(rng, n, 0.5f), m1 = Rand(rng, n, 0.001f), v1 = Rand(rng, n, 0.0001f).Select(Math.Abs).ToArray();
        float[] p2 = (float[])p1.Clone(), m2 = (float[])m1.Clone(), v2 = (float[])v1.Clone(), p3 = (float[])p1.Clone(), m3 = (float[])m1.Clone(), v3 = (float[])v1.Clone();
        float[] unscaled = (float[])g.Clone(), clipped = new float[n];
        const float coef = 0.3719f;
        System.Numerics.Tensors.TensorPrimitives.Multiply(g, coef, clipped);
        var s = AdamWStep.For(new AdamWOptions { WeightDecay = 0.01 }, 3, 1e-3, decay: true);
        AdamWKernel.Update(p1, clipped, m1, v1, s);
        AdamWKernel.Update(p2, g, m2, v2, s with { GradScale = coef });
        AdamWKernel.Reference(p3, g, m3, v3, s with { GradScale = coef });
        foreach ((float[] a, float[] b, float[] c) in new[] { (p1, p2, p3), (m1, m2, m3), (v1, v2, v3) })
        {
            Assert.True(a.AsSpan().SequenceEqual(b), "Update with GradScale differs from clipping first");
            Assert.True(a.AsSpan().SequenceEqual(c), "Reference with GradScale differs from clipping first");
        }
        Assert.True(g.AsSpan().SequenceEqual(unscaled), "the gradients were written");
    }

    [Fact]
    public void AdamW_refuses_tensors_of_different_lengths()
    {
        var s = AdamWStep.For(new AdamWOptions(), 1, 1e-3, true);
        Assert.Throws<ArgumentException>(() => AdamWKernel.Update(new float[4], new float[3], new float[4], new float[4], s));
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Sum_of_squares_SIMD_matches_the_scalar_twin(int n)
    {
        float[] g = Rand(new Random(n + 1), n, 3);
        double reference = GradientClipping.SumOfSquaresReference(g), fast = GradientClipping.SumOfSquares(g);
        Assert.True(Math.Abs(fast - reference) <= 1e-12 * reference, $"{fast} vs {reference}");
    }

    [Fact]
    public void The_pooled_global_norm_does_not_depend_on_the_thread_count_and_agrees_with_the_plain_one()
    {
        // Tensors below, at and well above two chunks (the pooled path), one ending in a partial chunk and a partial vector.
        var rng = new Random(3);
        float[][] grads = [Rand(rng, 100, 1), Rand(rng, 2 * GradientClipping.ChunkElements, 0.01f), Rand(rng, 5 * GradientClipping.ChunkElements + 13, 3)];
        double[] partials = GradientClipping.Partials(grads.Max(g => g.Length));
        float plain = GradientClipping.GlobalNorm(grads);
        double reference = Math.Sqrt(grads.Sum(g => GradientClipping.SumOfSquaresReference(g)));
        var norms = new List<float>();
        foreach (int threads in new[] { 1, 2, 3 })
        {
            using var pool = new ManagedT5.Kernels.Cpu.WorkerPool(threads);
            norms.Add(GradientClipping.GlobalNorm(grads, pool, partials));
        }
        Assert.All(norms, n => Assert.Equal(norms[0], n));
        Assert.True(Math.Abs(norms[0] - reference) <= 1e-6 * reference, $"pooled {norms[0]} vs the twin's {reference}");
        Assert.True(Math.Abs(norms[0] - plain) <= 1e-6 * plain, $"pooled {norms[0]} vs plain {plain}");
    }

    [Fact]
    public void Clipping_scales_by_max_norm_over_norm_plus_1e6_only_when_below_one()
    {
        float[] a = [3f, 0f], b = [0f, 4f];   // global norm 5
        float norm = GradientClipping.ClipByGlobalNorm([a, b], 1.0);
        Assert.Equal(5f, norm);
        float coef = 1f / (5f + 1e-6f);
        Assert.Equal([3f * coef, 0f], a);
        Assert.Equal([0f, 4f * coef], b);

        float[] c = [0.3f, 0.4f];              // norm 0.5: max_norm / (0.5 + 1e-6) > 1, untouched
        Assert.Equal(0.5f, GradientClipping.ClipByGlobalNorm([c], 1.0), 6);
        Assert.Equal([0.3f, 0.4f], c);
    }

    [Fact]
    public void The_global_norm_is_stable_for_large_and_tiny_values()
    {
        // A naive float sum of squares would overflow (1e20^2) or lose the small tensors entirely.
        float[] big = [1e20f, 1e20f], small = Enumerable.Repeat(1e-3f, 1000).ToArray();
        Assert.Equal((float)Math.Sqrt(2e40), GradientClipping.GlobalNorm([big]), 1e14f);
        Assert.Equal((float)Math.Sqrt(1e-3), GradientClipping.GlobalNorm([small]), 6);
    }

    static float[] Rand(Random rng, int n, float scale) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1) * scale).ToArray();

    /// <summary>The update of a large tensor split over a worker pool gives the very floats of the one-thread update
    /// (the chunks are whole vectors and the update is elementwise), including a tail that is not a whole vector.</summary>
    [Fact]
    public void PooledUpdateIsBitIdenticalToOneThread()
    {
        const int n = 3 * 65536 + 13;
        var random = new Random(7);
        float[] Fill() { var a = new float[n]; for (int i = 0; i < n; i++) a[i] = (float)(random.NextDouble() - 0.5); return a; }
        float[] value = Fill(), grad = Fill();
        var alone = new TrainedTensor("encoder.block.0.layer.0.SelfAttention.q.weight", [n], (float[])value.Clone(), (float[])grad.Clone());
        var pooled = alone with { Value = (float[])value.Clone(), Grad = (float[])grad.Clone() };
        var options = new AdamWOptions { WeightDecay = 0.01 };
        using var pool = new ManagedT5.Kernels.Cpu.WorkerPool(3);
        var one = new AdamW([alone], options);
        var many = new AdamW([pooled], options) { Pool = pool };
        for (int step = 0; step < 3; step++)
        {
            one.Update(1e-3);
            many.Update(1e-3);
        }
        Assert.Equal(alone.Value, pooled.Value);
        Assert.Equal(one.ExpAvg[0], many.ExpAvg[0]);
        Assert.Equal(one.ExpAvgSq[0], many.ExpAvgSq[0]);
    }
}
