// Greedy decoding's last step on the device: the index of the largest logit of each row, so only the ids
// (not 32128 logits per row) cross the bus.
using ILGPU;

namespace ManagedT5.Kernels.Ilgpu.Kernels;

/// <summary>Row-wise argmax, one thread group per row.</summary>
internal static class ArgMaxKernels
{
    /// <summary>result[r] = the first index of the largest of input[r, 0..cols). Each thread scans a strided share
    /// of the row, then a shared-memory tree keeps the larger value, or the smaller index on a tie.</summary>
    public static void ArgMax(ArrayView<float> input, ArrayView<int> result, int cols)
    {
        var values = SharedMemory.Allocate<float>(GroupReduce.MaxGroupSize);
        var indices = SharedMemory.Allocate<int>(GroupReduce.MaxGroupSize);
        int thread = Group.IdxX;
        long row = (long)Grid.IdxX * cols;

        float best = float.NegativeInfinity;
        int bestIndex = int.MaxValue; // "nothing seen": loses every tie
        if (thread < cols)
        {
            best = input[row + thread];
            bestIndex = thread;
        }
        for (int j = thread + Group.DimX; j < cols; j += Group.DimX)
        {
            float v = input[row + j];
            if (v > best)
            {
                best = v;
                bestIndex = j;
            }
        }
        values[thread] = best;
        indices[thread] = bestIndex;
        Group.Barrier();
        for (int stride = Group.DimX / 2; stride > 0; stride /= 2)
        {
            if (thread < stride)
            {
                float other = values[thread + stride];
                int otherIndex = indices[thread + stride];
                if (other > values[thread] || (other == values[thread] && otherIndex < indices[thread]))
                {
                    values[thread] = other;
                    indices[thread] = otherIndex;
                }
            }
            Group.Barrier();
        }
        if (thread == 0) result[Grid.IdxX] = indices[0];
    }
}
