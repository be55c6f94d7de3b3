// Reductions across one thread group through shared memory: the building block of RMS norm, softmax and argmax.
// A tree in shared memory works on every ILGPU backend (no warp shuffles, which OpenCL devices may lack).
using ILGPU;

namespace ManagedT5.Kernels.Ilgpu.Kernels;

/// <summary>Group-wide reductions. Every thread of the group must call them (they contain barriers), the group size
/// must be a power of two, and <c>scratch</c> is shared memory of at least <c>Group.DimX</c> elements.</summary>
internal static class GroupReduce
{
    /// <summary>The largest group size the kernels here are launched with (sizes their static shared memory).</summary>
    public const int MaxGroupSize = 1024;

    /// <summary>Sum of <paramref name="value"/> over the group; every thread gets the total.</summary>
    public static float Sum(float value, ArrayView<float> scratch)
    {
        int thread = Group.IdxX;
        scratch[thread] = value;
        Group.Barrier();
        for (int stride = Group.DimX / 2; stride > 0; stride /= 2)
        {
            if (thread < stride) scratch[thread] += scratch[thread + stride];
            Group.Barrier();
        }
        float total = scratch[0];
        Group.Barrier(); // nobody may overwrite scratch[0] before everyone has read it
        return total;
    }

    /// <summary>Maximum of <paramref name="value"/> over the group; every thread gets it.</summary>
    public static float Max(float value, ArrayView<float> scratch)
    {
        int thread = Group.IdxX;
        scratch[thread] = value;
        Group.Barrier();
        for (int stride = Group.DimX / 2; stride > 0; stride /= 2)
        {
            if (thread < stride) scratch[thread] = Math.Max(scratch[thread], scratch[thread + stride]);
            Group.Barrier();
        }
        float max = scratch[0];
        Group.Barrier();
        return max;
    }
}
