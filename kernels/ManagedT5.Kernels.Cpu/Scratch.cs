// Per-thread scratch memory for the kernels (packed GEMM panels, attention scores, re-laid-out inputs). Pinned arrays
// that only grow (to a power of two), so after the first tokens the token loop allocates nothing.
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ManagedT5.Kernels.Cpu;

/// <summary>Independent scratch areas of one thread; an op takes each slot at most once.</summary>
internal enum ScratchSlot
{
    /// <summary>The activations prepared once for every worker: the GEMV input laid out in weight lanes, the GEMM's
    /// packed input panels, int8-quantized rows (written by the caller, read by every worker).</summary>
    PreparedInput,
    /// <summary>GEMM: packed weight panels.</summary>
    WeightPanels,
    /// <summary>Training products: a depth slab of a plainly stored B packed once by the caller's job for every
    /// worker.</summary>
    SharedPanels,
    /// <summary>GEMM: weight rows widened to fp32 before packing.</summary>
    WidenedWeightRows,
    /// <summary>GEMM: an edge tile (the output block past the last whole tile).</summary>
    EdgeTile,
    /// <summary>Attention scores, position-bias lookups.</summary>
    Scores,
    /// <summary>A widened norm weight and other small vectors.</summary>
    SmallVector,
    /// <summary>Training attention: the dropped-out probabilities of one (batch row, head).</summary>
    DroppedProbs,
    /// <summary>Number of slots.</summary>
    Count,
}

/// <summary>Thread-local, 64-byte aligned, pinned float scratch.</summary>
internal static unsafe class Scratch
{
    [ThreadStatic] private static float[]?[]? t_slots;

    /// <summary>At least <paramref name="floats"/> floats of this thread's <paramref name="slot"/>; contents are
    /// undefined. The pointer stays valid until this thread asks for the same slot again.</summary>
    public static float* Get(ScratchSlot slot, long floats)
    {
        float[]?[] slots = t_slots ??= new float[]?[(int)ScratchSlot.Count];
        float[]? array = slots[(int)slot];
        if (array is null || array.Length < floats + 16)
        {
            long size = Math.Max(4096, (long)BitOperations.RoundUpToPowerOf2((ulong)(floats + 16)));
            array = GC.AllocateUninitializedArray<float>(checked((int)size), pinned: true);
            slots[(int)slot] = array;
        }
        nint address = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array));
        return (float*)((address + 63) & ~(nint)63);
    }
}
