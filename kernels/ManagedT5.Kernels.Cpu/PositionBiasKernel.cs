// T5's relative position bias, laid out [heads, q_len, k_len]. The bias depends only on j - (offset + i), so each
// head's values are looked up once per relative position and every output row is a copy of a window of them.
using System.Runtime.CompilerServices;

namespace ManagedT5.Kernels.Cpu;

/// <summary>Relative position bias from the learned table (num_buckets, heads).</summary>
internal static unsafe class PositionBiasKernel
{
    /// <summary>output[h, i, j] = table[bucket(j - (queryOffset + i)), h].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(in WeightView table, float* output, int queryLength, int keyLength, int queryOffset,
        bool bidirectional, int numBuckets, int maxDistance)
    {
        int heads = table.Cols;
        // Relative positions run from -(queryOffset + queryLength - 1) (last query, key 0) to keyLength - 1.
        int lowest = -(queryOffset + queryLength - 1);
        int range = keyLength - lowest;
        float* byHead = Scratch.Get(ScratchSlot.Scores, (long)heads * range);   // [heads, range]
        float* row = Scratch.Get(ScratchSlot.SmallVector, heads);
        for (int p = 0; p < range; p++)
        {
            int bucket = RelativePosition.Bucket(lowest + p, bidirectional, numBuckets, maxDistance);
            WeightRows.Widen(table, bucket, 0, heads, row);
            for (int h = 0; h < heads; h++) byHead[(long)h * range + p] = row[h];
        }

        for (int h = 0; h < heads; h++)
            for (int i = 0; i < queryLength; i++)
            {
                // key j has relative position j - queryOffset - i, at index j - queryOffset - i - lowest
                float* window = byHead + (long)h * range + (queryLength - 1 - i);
                new ReadOnlySpan<float>(window, keyLength).CopyTo(new Span<float>(output + ((long)h * queryLength + i) * keyLength, keyLength));
            }
    }
}
