// GEMV: y (rows, out) (+)= x (rows, in) W^T for a handful of rows (batch-1 and small-batch decode). It is
// bandwidth-bound: each weight row is streamed once from memory, widened in registers (BF16/F16/int8 lanes),
// and dotted with every input row while it is still in L1. Four weight rows are read together so each x chunk
// load serves four FMAs. The caller splits the output rows across threads in multiples of four.
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace ManagedT5.Kernels.Cpu;

/// <summary>Matrix-vector products against a stored weight, one weight format per instantiation.</summary>
internal static unsafe class Gemv
{
    /// <summary>Weight rows read together; thread splits of the output must be multiples of this.</summary>
    public const int RowBlock = 4;

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
        float* sums = stackalloc float[RowBlock];
        for (int o = first; o < end; o += RowBlock)
        {
            int count = Math.Min(RowBlock, end - o);
            // A short last block repeats its last row: same arithmetic per row, results past count are dropped.
            byte* w0 = weights + o * rowBytes;
            byte* w1 = w0 + Math.Min(1, count - 1) * rowBytes;
            byte* w2 = w0 + Math.Min(2, count - 1) * rowBytes;
            byte* w3 = w0 + Math.Min(3, count - 1) * rowBytes;
            for (int r = 0; r < rows; r++)
            {
                Dot4<TFormat>(w0, w1, w2, w3, laidInput + (long)r * inDim, inDim, sums, level);
                float* y = output + (long)r * outDim + o;
                for (int j = 0; j < count; j++)
                {
                    float value = scales == null ? sums[j] : sums[j] * scales[o + j];
                    y[j] = accumulate ? y[j] + value : value;
                }
            }
        }
    }

    /// <summary>Four dot products of weight rows w0..w3 with one laid-out x; two accumulators per row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Dot4<TFormat>(byte* w0, byte* w1, byte* w2, byte* w3, float* x, int length, float* sums,
        SimdLevel level) where TFormat : IWeightFormat
    {
        int k = 0;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        if (level == SimdLevel.Vector512 && Vector512.IsHardwareAccelerated)
        {
            int chunk = 64 / TFormat.ElementSize;
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
            for (; k <= length - chunk; k += chunk)
            {
                long offset = (long)k * TFormat.ElementSize;
                TFormat.MultiplyAdd(w0 + offset, x + k, ref a0, ref b0);
                TFormat.MultiplyAdd(w1 + offset, x + k, ref a1, ref b1);
                TFormat.MultiplyAdd(w2 + offset, x + k, ref a2, ref b2);
                TFormat.MultiplyAdd(w3 + offset, x + k, ref a3, ref b3);
            }
            s0 = Vector512.Sum(a0 + b0); s1 = Vector512.Sum(a1 + b1); s2 = Vector512.Sum(a2 + b2); s3 = Vector512.Sum(a3 + b3);
        }
        else if (level == SimdLevel.Vector256 && Vector256.IsHardwareAccelerated)
        {
            int chunk = 32 / TFormat.ElementSize;
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
            for (; k <= length - chunk; k += chunk)
            {
                long offset = (long)k * TFormat.ElementSize;
                TFormat.MultiplyAdd(w0 + offset, x + k, ref a0, ref b0);
                TFormat.MultiplyAdd(w1 + offset, x + k, ref a1, ref b1);
                TFormat.MultiplyAdd(w2 + offset, x + k, ref a2, ref b2);
                TFormat.MultiplyAdd(w3 + offset, x + k, ref a3, ref b3);
            }
            s0 = Vector256.Sum(a0 + b0); s1 = Vector256.Sum(a1 + b1); s2 = Vector256.Sum(a2 + b2); s3 = Vector256.Sum(a3 + b3);
        }
        else if (level == SimdLevel.Vector128 && Vector128.IsHardwareAccelerated)
        {
            int chunk = 16 / TFormat.ElementSize;
            Vector128<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
            for (; k <= length - chunk; k += chunk)
            {
                long offset = (long)k * TFormat.ElementSize;
                TFormat.MultiplyAdd(w0 + offset, x + k, ref a0, ref b0);
                TFormat.MultiplyAdd(w1 + offset, x + k, ref a1, ref b1);
                TFormat.MultiplyAdd(w2 + offset, x + k, ref a2, ref b2);
                TFormat.MultiplyAdd(w3 + offset, x + k, ref a3, ref b3);
            }
            s0 = Vector128.Sum(a0 + b0); s1 = Vector128.Sum(a1 + b1); s2 = Vector128.Sum(a2 + b2); s3 = Vector128.Sum(a3 + b3);
        }

        for (; k < length; k++)
        {
            float xk = x[k];
            s0 += TFormat.Widen(w0, k) * xk;
            s1 += TFormat.Widen(w1, k) * xk;
            s2 += TFormat.Widen(w2, k) * xk;
            s3 += TFormat.Widen(w3, k) * xk;
        }
        sums[0] = s0; sums[1] = s1; sums[2] = s2; sums[3] = s3;
    }
}
