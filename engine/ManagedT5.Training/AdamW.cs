// AdamW as torch.optim.AdamW computes it: decoupled weight decay first (p *= 1 - lr*wd), then the moments, bias
// corrections and p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps). A scalar twin (plain loop) and a SIMD form of one step.
using System.Numerics;
using System.Runtime.InteropServices;

namespace ManagedT5.Training;

/// <summary>AdamW's hyperparameters (torch.optim.AdamW's names; HF TrainingArguments' defaults).</summary>
public sealed record AdamWOptions
{
    /// <summary>beta1 (HF adam_beta1): decay of the first moment.</summary>
    public double Beta1 { get; init; } = 0.9;
    /// <summary>beta2 (HF adam_beta2): decay of the second moment.</summary>
    public double Beta2 { get; init; } = 0.999;
    /// <summary>eps (HF adam_epsilon), added outside the square root of the corrected second moment.</summary>
    public double Epsilon { get; init; } = 1e-8;
    /// <summary>weight_decay, decoupled (multiplies the parameter by 1 - lr * weight_decay before the update).</summary>
    public double WeightDecay { get; init; }

    /// <summary>Throws an <see cref="ArgumentException"/> naming the HF option when a value is out of range.</summary>
    public void Validate()
    {
        if (!(Beta1 >= 0 && Beta1 < 1)) throw new ArgumentException($"adam_beta1: give a number in [0, 1) (got {Beta1}).", "adam_beta1");
        if (!(Beta2 >= 0 && Beta2 < 1)) throw new ArgumentException($"adam_beta2: give a number in [0, 1) (got {Beta2}).", "adam_beta2");
        if (!(Epsilon >= 0) || double.IsInfinity(Epsilon)) throw new ArgumentException($"adam_epsilon: give a number >= 0 (got {Epsilon}).", "adam_epsilon");
        if (!(WeightDecay >= 0) || double.IsInfinity(WeightDecay)) throw new ArgumentException($"weight_decay: give a number >= 0 (got {WeightDecay}).", "weight_decay");
    }
}

/// <summary>The per-step scalars of AdamW, computed once in double as PyTorch computes them in Python floats.</summary>
/// <param name="Decay">1 - lr * weight_decay (the tensor is multiplied by it in float).</param>
/// <param name="Beta1">beta1.</param>
/// <param name="Beta2">beta2.</param>
/// <param name="StepSize">lr / (1 - beta1^step).</param>
/// <param name="Bc2Sqrt">sqrt(1 - beta2^step).</param>
/// <param name="Epsilon">eps.</param>
public readonly record struct AdamWStep(double Decay, double Beta1, double Beta2, double StepSize, double Bc2Sqrt, double Epsilon)
{
    /// <summary>What each gradient is multiplied by (in float) before it is used: clip_grad_norm_'s coefficient, applied
    /// here instead of in a pass of its own over every gradient (the same float products). 1 leaves the gradients as
    /// they are.</summary>
    public float GradScale { get; init; } = 1f;

    /// <summary>The scalars of optimizer step <paramref name="step"/> (1-based) at learning rate <paramref name="lr"/>;
    /// <paramref name="decay"/> false for parameters excluded from weight decay (layer norms).</summary>
    public static AdamWStep For(AdamWOptions o, int step, double lr, bool decay)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(step, 1);
        double bc1 = 1 - Math.Pow(o.Beta1, step), bc2 = 1 - Math.Pow(o.Beta2, step);
        return new(decay ? 1 - lr * o.WeightDecay : 1, o.Beta1, o.Beta2, lr / bc1, Math.Sqrt(bc2), o.Epsilon);
    }
}

/// <summary>One AdamW update of a tensor, in place. <see cref="Reference"/> is the plain loop (the twin the SIMD form
/// is tested against); <see cref="Update"/> the SIMD form. Both do the same float operations in the same order.</summary>
public static class AdamWKernel
{
    /// <summary>The scalar twin: per element g *= gradScale; p *= decay; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
    /// p -= stepSize * m / (sqrt(v)/bc2sqrt + eps), every operation in float. The gradient array is not written.</summary>
    public static void Reference(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v, in AdamWStep s)
    {
        CheckLengths(p, g, m, v);
        float decay = (float)s.Decay, b1 = (float)s.Beta1, a1 = (float)(1 - s.Beta1), b2 = (float)s.Beta2, a2 = (float)(1 - s.Beta2);
        float stepSize = (float)s.StepSize, bc2 = (float)s.Bc2Sqrt, eps = (float)s.Epsilon, scale = s.GradScale;
        for (int i = 0; i < p.Length; i++)
        {
            float x = p[i] * decay, gi = g[i] * scale;
            float mi = m[i] * b1 + gi * a1;
            float vi = v[i] * b2 + gi * gi * a2;
            m[i] = mi;
            v[i] = vi;
            p[i] = x - stepSize * (mi / (MathF.Sqrt(vi) / bc2 + eps));
        }
    }

    /// <summary>The SIMD form of <see cref="Reference"/> (Vector&lt;float&gt; over the body, the same loop over the tail).</summary>
    public static void Update(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v, in AdamWStep s)
    {
        CheckLengths(p, g, m, v);
        float decay = (float)s.Decay, b1 = (float)s.Beta1, a1 = (float)(1 - s.Beta1), b2 = (float)s.Beta2, a2 = (float)(1 - s.Beta2);
        float stepSize = (float)s.StepSize, bc2 = (float)s.Bc2Sqrt, eps = (float)s.Epsilon, scale = s.GradScale;
        int n = p.Length, i = 0;
        if (Vector.IsHardwareAccelerated && n >= Vector<float>.Count)
        {
            var vp = MemoryMarshal.Cast<float, Vector<float>>(p);
            var vg = MemoryMarshal.Cast<float, Vector<float>>(g);
            var vm = MemoryMarshal.Cast<float, Vector<float>>(m);
            var vv = MemoryMarshal.Cast<float, Vector<float>>(v);
            Vector<float> d = new(decay), B1 = new(b1), A1 = new(a1), B2 = new(b2), A2 = new(a2), S = new(stepSize), C = new(bc2), E = new(eps), G = new(scale);
            for (int k = 0; k < vp.Length; k++)
            {
                Vector<float> x = vp[k] * d, gk = vg[k] * G;
                Vector<float> mi = vm[k] * B1 + gk * A1;
                Vector<float> vi = vv[k] * B2 + gk * gk * A2;
                vm[k] = mi;
                vv[k] = vi;
                vp[k] = x - S * (mi / (Vector.SquareRoot(vi) / C + E));
            }
            i = vp.Length * Vector<float>.Count;
        }
        if (i < n) Reference(p[i..], g[i..], m[i..], v[i..], s);   // the tail, element by element as the twin does
    }

    private static void CheckLengths(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v)
    {
        if (g.Length != p.Length || m.Length != p.Length || v.Length != p.Length)
            throw new ArgumentException($"AdamW: parameter ({p.Length}), gradient ({g.Length}) and moments ({m.Length}, {v.Length}) differ in length.");
    }
}

/// <summary>A tensor the optimizer updates: HF's parameter name, its shape, the live values and their gradient.</summary>
/// <param name="Name">HF named_parameters() name (LoRA: base_model.model.&lt;module&gt;.lora_A.weight).</param>
/// <param name="Shape">The tensor's shape.</param>
/// <param name="Value">The live values (updated in place).</param>
/// <param name="Grad">The accumulated gradient (same length).</param>
public sealed record TrainedTensor(string Name, int[] Shape, float[] Value, float[] Grad)
{
    /// <summary>HF Trainer's rule (and the fixtures'): no weight decay on parameters whose name contains "layer_norm".</summary>
    public bool Decays => !Name.Contains("layer_norm", StringComparison.Ordinal) && !Name.EndsWith(".bias", StringComparison.Ordinal);
}

/// <summary>torch.optim.AdamW over a set of tensors: the two moments of each (exp_avg, exp_avg_sq), sized once.</summary>
public sealed class AdamW
{
    private readonly TrainedTensor[] _tensors;

    /// <summary>The hyperparameters.</summary>
    public AdamWOptions Options { get; }
    /// <summary>exp_avg per tensor, in the tensors' order.</summary>
    public IReadOnlyList<float[]> ExpAvg { get; }
    /// <summary>exp_avg_sq per tensor, in the tensors' order.</summary>
    public IReadOnlyList<float[]> ExpAvgSq { get; }
    /// <summary>Optimizer steps taken (torch's state "step").</summary>
    public int Step { get; private set; }

    /// <summary>Zero moments for <paramref name="tensors"/>.</summary>
    public AdamW(IReadOnlyList<TrainedTensor> tensors, AdamWOptions options)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _tensors = [.. tensors];
        Options = options;
        ExpAvg = _tensors.Select(t => new float[t.Value.Length]).ToArray();
        ExpAvgSq = _tensors.Select(t => new float[t.Value.Length]).ToArray();
    }

    /// <summary>One optimizer step at learning rate <paramref name="lr"/> with the gradients times
    /// <paramref name="gradScale"/> (clip_grad_norm_'s coefficient, <see cref="GradientClipping.Coefficient"/>; the
    /// gradient arrays are left unscaled).</summary>
    public void Update(double lr, float gradScale = 1f)
    {
        Step++;
        for (int i = 0; i < _tensors.Length; i++)
        {
            TrainedTensor t = _tensors[i];
            AdamWStep step = AdamWStep.For(Options, Step, lr, t.Decays) with { GradScale = gradScale };
            if (Pool is null || t.Value.Length < 2 * ChunkElements)
            {
                AdamWKernel.Update(t.Value, t.Grad, ExpAvg[i], ExpAvgSq[i], step);
                continue;
            }
            // Large tensors in chunks across the pool's threads: the update streams seven floats an element from memory
            // (flan-t5-base's 248M parameters: ~7 GB a step), which one core alone does not saturate. Elementwise, so
            // the result does not depend on the split (chunks are whole vectors).
            unsafe
            {
                fixed (float* p = t.Value, g = t.Grad, m = ExpAvg[i], v = ExpAvgSq[i])
                {
                    var job = new ChunkJob { P = p, G = g, M = m, V = v, Length = t.Value.Length, Step = step };
                    Pool.RunRanges(ref job, (t.Value.Length + ChunkElements - 1) / ChunkElements, 1);
                }
            }
        }
    }

    /// <summary>Elements per chunk of a pooled update (a multiple of every vector width).</summary>
    private const int ChunkElements = 1 << 16;

    /// <summary>The pool <see cref="Update"/> splits large tensors over (the model's kernels' pool; null: this thread).</summary>
    internal ManagedT5.Kernels.Cpu.WorkerPool? Pool { get; set; }

    private unsafe struct ChunkJob : ManagedT5.Kernels.Cpu.IRangeJob
    {
        public float* P, G, M, V;
        public int Length;
        public AdamWStep Step;

        public readonly void Execute(int first, int end)
        {
            int start = first * ChunkElements, count = Math.Min(Length, end * ChunkElements) - start;
            AdamWKernel.Update(new Span<float>(P + start, count), new ReadOnlySpan<float>(G + start, count),
                new Span<float>(M + start, count), new Span<float>(V + start, count), Step);
        }
    }

    /// <summary>Restores the state of a checkpoint (moments copied in; <paramref name="step"/> steps taken).</summary>
    public void Restore(int step, IReadOnlyList<float[]> expAvg, IReadOnlyList<float[]> expAvgSq)
    {
        if (expAvg.Count != _tensors.Length || expAvgSq.Count != _tensors.Length)
            throw new ArgumentException($"The optimizer state has {expAvg.Count} tensors; the model trains {_tensors.Length}.");
        for (int i = 0; i < _tensors.Length; i++)
        {
            expAvg[i].CopyTo(ExpAvg[i].AsSpan());
            expAvgSq[i].CopyTo(ExpAvgSq[i].AsSpan());
        }
        Step = step;
    }
}
