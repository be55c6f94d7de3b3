// Parity of the fused attention and the relative position bias with the reference: encoder self-attention with
// padding, causal decoder prefill and single-token steps from a KV cache (query offset = past length),
// cross-attention, odd head sizes, rows with every key masked, at every SIMD level and on Flan-T5 shapes.
// Tolerance: max abs diff / max abs of the reference <= 1e-5 (fp32 softmax).
using ManagedT5.Kernels.Cpu;
using ManagedT5.Kernels.Reference;

namespace ManagedT5.Kernels.Tests;

public sealed class AttentionTests : IDisposable
{
    private readonly ReferenceBackend _reference = new();
    private readonly TensorStore _store = new();

    public static TheoryData<SimdLevel> Levels() => TestData.Levels();

    /// <summary>Shapes plus whether to pass a bias and a padding mask.</summary>
    private static IEnumerable<(AttentionShape Shape, bool Bias, bool Mask)> Cases()
    {
        // flan-t5-small encoder, 2 padded sequences of 13; decoder prefill; one cached decode step; cross-attention
        yield return (new AttentionShape(2, 6, 64, 13, 13, 13), true, true);
        yield return (new AttentionShape(1, 6, 64, 7, 7, 20, Causal: true), true, false);
        yield return (new AttentionShape(2, 6, 64, 1, 9, 20, Causal: true, QueryOffset: 8), true, false);
        yield return (new AttentionShape(2, 6, 64, 1, 13, 13), false, true);
        // flan-t5-base encoder (12 heads), long enough to split into query blocks
        yield return (new AttentionShape(1, 12, 64, 70, 70, 70), true, true);
        // odd head sizes and lengths: every vector tail
        yield return (new AttentionShape(3, 2, 7, 5, 17, 19), true, true);
        yield return (new AttentionShape(1, 3, 1, 3, 3, 3, Causal: true), true, false);
        yield return (new AttentionShape(2, 1, 33, 40, 40, 41, Causal: true), false, true);
        yield return (new AttentionShape(1, 4, 80, 2, 257, 260), true, true);
        // four queries at a time (AVX-512, head size a multiple of 16): a group of one at the end, a fully masked batch
        // entry, a 48-float head (32 + 16), causal queries that see different numbers of keys within one group
        yield return (new AttentionShape(3, 2, 64, 9, 9, 11), true, true);
        yield return (new AttentionShape(1, 2, 48, 6, 10, 12, Causal: true, QueryOffset: 4), true, true);
        // 16+ queries over visible keys (AVX2: two packed products): odd head sizes, a fully masked batch entry, key
        // capacity past the length, fewer keys than a panel, more keys than one 256-deep slab
        yield return (new AttentionShape(3, 2, 33, 20, 20, 23), true, true);
        yield return (new AttentionShape(2, 3, 7, 16, 5, 9), true, true);
        yield return (new AttentionShape(1, 2, 64, 17, 300, 300), true, true);
        yield return (new AttentionShape(4, 12, 64, 128, 128, 128), false, true);
        // batched decode steps (beam / batch8): enough heads to split into several claimed grains, the last one partial
        yield return (new AttentionShape(8, 6, 64, 1, 33, 40, Causal: true, QueryOffset: 32), true, false);
        yield return (new AttentionShape(5, 12, 64, 1, 21, 24), false, true);
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public void AttentionMatchesReference(SimdLevel level)
    {
        using var cpu = new CpuBackend(2, level);
        int seed = 0;
        foreach ((AttentionShape s, bool withBias, bool withMask) in Cases())
        {
            seed += 10;
            float[] q = TestData.Random(s.Batch * s.QueryLength * s.InnerDim, seed, 2f);
            float[] k = TestData.Random(s.Batch * s.KeyCapacity * s.InnerDim, seed + 1, 2f);
            float[] v = TestData.Random(s.Batch * s.KeyCapacity * s.InnerDim, seed + 2);
            float[] bias = TestData.Random(s.Heads * s.QueryLength * s.KeyLength, seed + 3, 3f);
            float[] mask = new float[s.Batch * s.KeyLength];
            for (int b = 0; b < s.Batch; b++)
                for (int j = 0; j < s.KeyLength; j++) mask[b * s.KeyLength + j] = j < s.KeyLength - 3 * b ? 1f : 0f;
            if (s.Batch > 2) Array.Clear(mask, 2 * s.KeyLength, s.KeyLength); // batch 2: every key masked

            float[] expected = Run(_reference, s, q, k, v, withBias ? bias : null, withMask ? mask : null);
            float[] actual = Run(cpu, s, q, k, v, withBias ? bias : null, withMask ? mask : null);
            TestData.AssertClose(expected, actual, $"Attention {s} bias={withBias} mask={withMask} at {cpu.Simd}");
        }
    }

    private static float[] Run(IBackend backend, AttentionShape s, float[] q, float[] k, float[] v, float[]? bias, float[]? mask)
    {
        using IBuffer bq = TestData.Buffer(backend, q), bk = TestData.Buffer(backend, k), bv = TestData.Buffer(backend, v);
        using IBuffer output = backend.Allocate(q.Length);
        using IBuffer? bb = bias is null ? null : TestData.Buffer(backend, bias);
        using IBuffer? bm = mask is null ? null : TestData.Buffer(backend, mask);
        backend.Upload(TestData.Random(q.Length, 99), output); // stale data must be overwritten
        backend.Attention(bq, bk, bv, output, s, bb, bm);
        return TestData.Read(backend, output, q.Length);
    }

    [Theory]
    [InlineData(true, 13, 13, 0)]     // encoder
    [InlineData(false, 7, 7, 0)]      // decoder prefill
    [InlineData(false, 1, 12, 11)]    // decode step from the cache: query at absolute position 11
    [InlineData(true, 200, 200, 0)]   // past max_distance: log buckets, capped
    [InlineData(false, 3, 300, 297)]
    [InlineData(true, 1, 1, 0)]
    public void PositionBiasMatchesReference(bool bidirectional, int queryLength, int keyLength, int queryOffset)
    {
        using var cpu = new CpuBackend(2);
        foreach (DType dtype in new[] { DType.F32, DType.BF16 })
        {
            HostTensor table = _store.Make("relative_attention_bias", dtype, [32, 6], TestData.Random(32 * 6, queryLength, 5f));
            using IWeight weight = cpu.CreateWeight(table);
            int length = 6 * queryLength * keyLength;
            using IBuffer expected = _reference.Allocate(length), actual = cpu.Allocate(length);
            _reference.PositionBias(weight, expected, queryLength, keyLength, queryOffset, bidirectional, 32, 128);
            cpu.PositionBias(weight, actual, queryLength, keyLength, queryOffset, bidirectional, 32, 128);
            Assert.Equal(TestData.Read(_reference, expected, length), TestData.Read(cpu, actual, length));
        }
    }

    public void Dispose() => _store.Dispose();
}
