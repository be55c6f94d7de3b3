// AttentionPerRow and AppendToCachePerRow (continuous batching: one query per row against that row's own KV cache,
// with its own key count, a right-aligned shared bias and its own mask) on the CPU backend against the reference twin,
// at every SIMD level, on odd shapes (key counts 1..67, head sizes 1..33) and Flan-T5 shapes (6/8/12 heads of 64).
// Tolerance: max abs diff / max abs of the reference <= 1e-5. Each row must also equal, bit for bit, the CPU backend's
// own batch-1 Attention over the same cache: the equality continuous batching's "same tokens as alone" rests on.
using ManagedT5.Kernels.Cpu;
using ManagedT5.Kernels.Reference;

namespace ManagedT5.Kernels.Tests;

public sealed class AttentionPerRowTests
{
    public static TheoryData<SimdLevel> Levels() => TestData.Levels();

    /// <summary>(heads, head size, key count of each row, bias?, masks?).</summary>
    private static IEnumerable<(int Heads, int D, int[] Lengths, bool Bias, bool Mask)> Cases()
    {
        yield return (6, 64, [1, 5, 33, 2], true, false);                 // flan-t5-small decoder self-attention rows
        yield return (6, 64, [13, 7, 29], false, true);                   // flan-t5-small cross-attention, own encoder lengths
        yield return (8, 64, [40, 1, 17, 67, 3, 22, 9, 50], true, false); // flan-t5-large heads, a batch of 8
        yield return (12, 64, [21, 64, 2], false, true);                  // flan-t5-base cross-attention
        yield return (3, 7, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17], true, true); // every tail
        yield return (2, 33, [67, 66, 65, 31, 16, 15], true, true);
        yield return (1, 1, [1, 4], true, false);
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public void AttentionPerRowMatchesReferenceAndBatchOneAttention(SimdLevel level)
    {
        using var cpu = new CpuBackend(2, level);
        var reference = new ReferenceBackend();
        int seed = 100;
        foreach ((int heads, int d, int[] lengths, bool withBias, bool withMask) in Cases())
        {
            int rows = lengths.Length, inner = heads * d, biasLength = lengths.Max() + 3;   // bias longer than any row
            float[] q = TestData.Random(rows * inner, seed++, 2f);
            float[] bias = TestData.Random(heads * biasLength, seed++, 3f);
            var keys = new float[rows][];
            var values = new float[rows][];
            var masks = new float[rows][];
            for (int r = 0; r < rows; r++)
            {
                int capacity = lengths[r] + r % 3;                                 // caches with room past the keys
                keys[r] = TestData.Random(capacity * inner, seed++, 1f);
                values[r] = TestData.Random(capacity * inner, seed++, 1f);
                masks[r] = new float[lengths[r]];
                for (int j = 0; j < lengths[r]; j++) masks[r][j] = (j + r) % 5 == 3 ? 0f : 1f;
                if (r == 1 && withMask) Array.Clear(masks[r]);                    // a row with every key masked: zeros
            }
            string what = $"heads {heads} x {d}, lengths [{string.Join(",", lengths)}], bias {withBias}, mask {withMask}, {level}";
            float[] expected = Run(reference, q, keys, values, lengths, withBias ? bias : null, biasLength, withMask ? masks : null, inner, heads, d);
            float[] actual = Run(cpu, q, keys, values, lengths, withBias ? bias : null, biasLength, withMask ? masks : null, inner, heads, d);
            TestData.AssertClose(expected, actual, what);

            // Row by row, the CPU backend's batch-1 Attention with the row's slice of the bias gives the same floats.
            for (int r = 0; r < rows; r++)
            {
                int n = lengths[r];
                var rowBias = new float[heads * n];
                for (int h = 0; h < heads; h++) Array.Copy(bias, h * biasLength + biasLength - n, rowBias, h * n, n);
                using IBuffer qb = TestData.Buffer(cpu, q[(r * inner)..((r + 1) * inner)]), kb = TestData.Buffer(cpu, keys[r]),
                    vb = TestData.Buffer(cpu, values[r]), bb = TestData.Buffer(cpu, rowBias), mb = TestData.Buffer(cpu, masks[r]),
                    ob = cpu.Allocate(inner);
                cpu.Attention(qb, kb, vb, ob, new AttentionShape(1, heads, d, 1, n, keys[r].Length / inner), withBias ? bb : null, withMask ? mb : null);
                float[] alone = TestData.Read(cpu, ob, inner);
                Assert.True(alone.AsSpan().SequenceEqual(actual.AsSpan(r * inner, inner)), $"{what}: row {r} differs from a batch-1 Attention");
            }
        }
    }

    private static float[] Run(IBackend backend, float[] q, float[][] keys, float[][] values, int[] lengths, float[]? bias, int biasLength,
        float[][]? masks, int inner, int heads, int d)
    {
        int rows = lengths.Length;
        using IBuffer qb = TestData.Buffer(backend, q), ob = backend.Allocate(rows * inner + 5);
        IBuffer? bb = bias is null ? null : TestData.Buffer(backend, bias);
        IBuffer[] kb = keys.Select(k => TestData.Buffer(backend, k)).ToArray(), vb = values.Select(v => TestData.Buffer(backend, v)).ToArray();
        IBuffer?[] mb = masks is null ? [] : masks.Select(m => (IBuffer?)TestData.Buffer(backend, m)).ToArray();
        try
        {
            backend.AttentionPerRow(qb, kb, vb, ob, heads, d, lengths, bb, biasLength, mb);
            return TestData.Read(backend, ob, rows * inner);
        }
        finally
        {
            bb?.Dispose();
            foreach (IBuffer b in kb.Concat(vb).Concat(mb.OfType<IBuffer>())) b.Dispose();
        }
    }

    [Fact]
    public void AppendToCachePerRowWritesEachRowAtItsPosition()
    {
        foreach (IBackend backend in new IBackend[] { new ReferenceBackend(), new CpuBackend(2) })
        {
            using (backend)
            {
                const int rowLength = 5;
                int[] positions = [0, 3, 1];
                int[] capacities = [1, 4, 7];
                float[] source = TestData.Random(3 * rowLength, 7);
                IBuffer[] caches = capacities.Select(c => backend.Allocate(c * rowLength)).ToArray();
                using IBuffer sb = TestData.Buffer(backend, source);
                backend.AppendToCachePerRow(sb, caches, positions, rowLength);
                for (int r = 0; r < 3; r++)
                {
                    float[] cache = TestData.Read(backend, caches[r], capacities[r] * rowLength);
                    var expected = new float[cache.Length];
                    Array.Copy(source, r * rowLength, expected, positions[r] * rowLength, rowLength);
                    Assert.Equal(expected, cache);
                }
                // A position past a row's cache is refused before anything is written, naming the positions.
                var e = Assert.Throws<ArgumentOutOfRangeException>(() => backend.AppendToCachePerRow(sb, caches, [0, 4, 0], rowLength));
                Assert.Equal("positions", e.ParamName);
                var k = Assert.ThrowsAny<ArgumentException>(() => backend.AttentionPerRow(sb, caches, caches, backend.Allocate(3 * rowLength), 1, rowLength,
                    [1, 5, 1], null, 0, []));
                Assert.Equal("keys", k.ParamName);
                foreach (IBuffer c in caches) c.Dispose();
            }
        }
    }
}
