// Global-norm gradient clipping as torch.nn.utils.clip_grad_norm_: the L2 norm over every trained gradient (each
// tensor's sum of squares accumulated in double, so the norm does not depend on the summation order's rounding), and
// when max_norm / (norm + 1e-6) is below 1 every gradient is multiplied by it.
using System.Numerics;
using System.Runtime.InteropServices;

namespace ManagedT5.Training;

/// <summary>clip_grad_norm_ over a set of gradient tensors.</summary>
public static class GradientClipping
{
    /// <summary>Sum of squares of <paramref name="g"/> in double: the plain loop (reference twin).</summary>
    public static double SumOfSquaresReference(ReadOnlySpan<float> g)
    {
        double sum = 0;
        for (int i = 0; i < g.Length; i++) sum += (double)g[i] * g[i];
        return sum;
    }

    /// <summary>Sum of squares of <paramref name="g"/> in double, SIMD (floats widened to doubles, several lanes of
    /// partial sums). Agrees with <see cref="SumOfSquaresReference"/> to double rounding.</summary>
    public static double SumOfSquares(ReadOnlySpan<float> g)
    {
        int i = 0;
        double sum = 0;
        if (Vector.IsHardwareAccelerated && g.Length >= Vector<float>.Count)
        {
            var vg = MemoryMarshal.Cast<float, Vector<float>>(g);
            Vector<double> acc0 = Vector<double>.Zero, acc1 = Vector<double>.Zero;
            for (int k = 0; k < vg.Length; k++)
            {
                Vector.Widen(vg[k], out Vector<double> lo, out Vector<double> hi);
                acc0 += lo * lo;
                acc1 += hi * hi;
            }
            sum = Vector.Sum(acc0 + acc1);
            i = vg.Length * Vector<float>.Count;
        }
        for (; i < g.Length; i++) sum += (double)g[i] * g[i];
        return sum;
    }

    /// <summary>The global L2 norm of the gradients (as float, as PyTorch's float32 total_norm).</summary>
    public static float GlobalNorm(IReadOnlyList<float[]> gradients)
    {
        double sum = 0;
        for (int i = 0; i < gradients.Count; i++) sum += SumOfSquares(gradients[i]);   // indexed: no enumerator per step
        return (float)Math.Sqrt(sum);
    }

    /// <summary>Elements per chunk of a pooled <see cref="GlobalNorm(IReadOnlyList{float[]}, ManagedT5.Kernels.Cpu.WorkerPool?, double[])"/>.</summary>
    internal const int ChunkElements = 1 << 16;

    /// <summary>The chunk sums a pooled global norm of tensors of up to <paramref name="largest"/> elements needs.</summary>
    internal static double[] Partials(int largest) => new double[(largest + ChunkElements - 1) / ChunkElements];

    /// <summary><see cref="GlobalNorm(IReadOnlyList{float[]})"/> with each large tensor's sum of squares taken in fixed
    /// chunks across <paramref name="pool"/>'s threads (one core does not stream the gradients at the memory's rate) and
    /// the chunk sums added in order into <paramref name="partials"/>' (<see cref="Partials"/>) slots, so the norm does
    /// not depend on the thread count. Allocates nothing.</summary>
    internal static unsafe float GlobalNorm(IReadOnlyList<float[]> gradients, ManagedT5.Kernels.Cpu.WorkerPool? pool, double[] partials)
    {
        double sum = 0;
        for (int i = 0; i < gradients.Count; i++)
        {
            float[] g = gradients[i];
            if (pool is null || g.Length < 2 * ChunkElements)
            {
                sum += SumOfSquares(g);
                continue;
            }
            int chunks = (g.Length + ChunkElements - 1) / ChunkElements;
            fixed (float* gp = g)
            fixed (double* pp = partials)
            {
                var job = new SumJob { G = gp, Length = g.Length, Partials = pp };
                pool.RunRanges(ref job, chunks, 1);
            }
            for (int c = 0; c < chunks; c++) sum += partials[c];
        }
        return (float)Math.Sqrt(sum);
    }

    private unsafe struct SumJob : ManagedT5.Kernels.Cpu.IRangeJob
    {
        public float* G;
        public double* Partials;
        public int Length;

        public readonly void Execute(int first, int end)
        {
            for (int c = first; c < end; c++)
            {
                int start = c * ChunkElements;
                Partials[c] = SumOfSquares(new ReadOnlySpan<float>(G + start, Math.Min(ChunkElements, Length - start)));
            }
        }
    }

    /// <summary>The clip coefficient for a norm: max_norm / (norm + 1e-6) in float, or 1 when that is not below 1
    /// (including a non-finite norm, which the trainer reports before it gets here).</summary>
    public static float Coefficient(float norm, double maxNorm)
    {
        float coef = (float)maxNorm / (norm + 1e-6f);
        return coef < 1f ? coef : 1f;
    }

    /// <summary>clip_grad_norm_: computes the global norm, multiplies every gradient by the coefficient when it is
    /// below 1, and returns the norm before clipping (what HF logs as grad_norm).</summary>
    public static float ClipByGlobalNorm(IReadOnlyList<float[]> gradients, double maxNorm)
    {
        float norm = GlobalNorm(gradients);
        float coef = Coefficient(norm, maxNorm);
        if (coef < 1f)
            for (int i = 0; i < gradients.Count; i++) System.Numerics.Tensors.TensorPrimitives.Multiply(gradients[i], coef, gradients[i]);
        return norm;
    }
}
