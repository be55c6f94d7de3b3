// GEMV: y (rows, out) (+)= x (rows, in) W^T for a handful of rows (batch-1 and small-batch decode). It is
// bandwidth-bound: the weight is streamed once, front to back (one row at a time keeps the access sequential,
// which the hardware prefetchers reward; reading four rows in lockstep measured 10-40% slower), each chunk widened
// in registers (BF16/F16/int8 lanes) and dotted with every input row while the row is still in L1.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ManagedT5.Kernels.Cpu;

/// <summary>Matrix-vector products against a stored weight, one weight format per instantiation.</summary>
internal static unsafe class Gemv
{
    /// <summary>
    /// y[r, o] (+)= scale[o] * sum_i W[o, i] x[r, i] for o in [<paramref name="first"/>, <paramref name="end"/>) and
    /// r &lt; <paramref name="rows"/>. W (out, in) at <paramref name="weights"/>; <paramref name="laidInput"/> holds the
    /// rows of x in <see cref="LaneLayout"/> order for <paramref name="level"/>; <paramref name="scales"/> is null
    /// except for int8.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run<TFormat>(byte* weights, int inDim, int outDim, float* scales, float* laidInput, int rows,
        float* output, int first, int end, bool accumulate, SimdLevel level) where TFormat : IWeightFormat
    {
        long rowBytes = (long)inDim * TFormat.ElementSize;
        for (int o = first; o < end; o++)
        {
            byte* w = weights + o * rowBytes;
            for (int r = 0; r < rows; r++)
            {
                float value = Dot<TFormat>(w, laidInput + (long)r * inDim, inDim, level);
                if (scales != null) value *= scales[o];
                float* y = output + (long)r * outDim + o;
                *y = accumulate ? *y + value : value;
            }
        }
    }

    /// <summary>One dot product of a weight row with a laid-out x, two chunks per step into four accumulators.
    /// Not inlined into the row loop: the JIT then has the inlining budget to inline every MultiplyAdd here.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static float Dot<TFormat>(byte* w, float* x, int length, SimdLevel level) where TFormat : IWeightFormat
    {
        int k = 0;
        float sum = 0;
        if (level == SimdLevel.Vector512 && Vector512.IsHardwareAccelerated)
        {
            int chunk = 64 / TFormat.ElementSize;
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; k <= length - 2 * chunk; k += 2 * chunk)
            {
                long offset = (long)k * TFormat.ElementSize;
                TFormat.MultiplyAdd(w + offset, x + k, ref a0, ref a1);
                TFormat.MultiplyAdd(w + offset + 64, x + k + chunk, ref a2, ref a3);
            }
            if (k <= length - chunk) { TFormat.MultiplyAdd(w + (long)k * TFormat.ElementSize, x + k, ref a0, ref a1); k += chunk; }
            sum = Vector512.Sum((a0 + a2) + (a1 + a3));
        }
        else if (level == SimdLevel.Vector256 && Vector256.IsHardwareAccelerated)
        {
            int chunk = 32 / TFormat.ElementSize;
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; k <= length - 2 * chunk; k += 2 * chunk)
            {
                long offset = (long)k * TFormat.ElementSize;
                TFormat.MultiplyAdd(w + offset, x + k, ref a0, ref a1);
                TFormat.MultiplyAdd(w + offset + 32, x + k + chunk, ref a2, ref a3);
            }
            if (k <= length - chunk) { TFormat.MultiplyAdd(w + (long)k * TFormat.ElementSize, x + k, ref a0, ref a1); k += chunk; }
            sum = Vector256.Sum((a0 + a2) + (a1 + a3));
        }
        else if (level == SimdLevel.Vector128 && Vector128.IsHardwareAccelerated)
        {
            int chunk = 16 / TFormat.ElementSize;
            Vector128<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; k <= length - 2 * chunk; k += 2 * chunk)
            {
                long offset = (long)k * TFormat.ElementSize;
                TFormat.MultiplyAdd(w + offset, x + k, ref a0, ref a1);
                TFormat.MultiplyAdd(w + offset + 16, x + k + chunk, ref a2, ref a3);
            }
            if (k <= length - chunk) { TFormat.MultiplyAdd(w + (long)k * TFormat.ElementSize, x + k, ref a0, ref a1); k += chunk; }
            sum = Vector128.Sum((a0 + a2) + (a1 + a3));
        }
        for (; k < length; k++) sum += TFormat.Widen(w, k) * x[k];
        return sum;
    }
}
