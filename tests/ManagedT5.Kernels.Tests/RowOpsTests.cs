// Parity of the row-copying ops (Embedding in every weight format, AppendToCache, GatherRows) and of ArgMax
// (first index on ties, every length 1..257 at every SIMD level, and a full 32128-logit row). These are exact.
using ManagedT5.Kernels.Cpu;
using ManagedT5.Kernels.Reference;

namespace ManagedT5.Kernels.Tests;

public sealed class RowOpsTests : IDisposable
{
    private readonly ReferenceBackend _reference = new();
    private readonly TensorStore _store = new();

    public static TheoryData<SimdLevel> Levels() => TestData.Levels();

    [Theory]
    [InlineData(WeightFormat.F32)]
    [InlineData(WeightFormat.BF16)]
    [InlineData(WeightFormat.F16)]
    [InlineData(WeightFormat.Int8)]
    public void EmbeddingMatchesReference(WeightFormat format)
    {
        using var cpu = new CpuBackend(2);
        HostTensor table = _store.Random("shared.weight", format, 100, 67, 3);
        using IWeight weight = cpu.CreateWeight(table, format);
        int[] ids = [0, 99, 5, 5, 42, 1, 0];
        using IBuffer expected = _reference.Allocate(ids.Length * 67), actual = cpu.Allocate(ids.Length * 67);
        _reference.Embedding(weight, ids, expected);
        cpu.Embedding(weight, ids, actual);
        Assert.Equal(TestData.Read(_reference, expected, ids.Length * 67), TestData.Read(cpu, actual, ids.Length * 67));
    }

    [Fact]
    public void AppendToCacheAndGatherRowsMatchReference()
    {
        using var cpu = new CpuBackend(2);
        int batch = 3, length = 2, capacity = 9, position = 4, rowLength = 11;
        float[] source = TestData.Random(batch * length * rowLength, 1);
        float[] cache = TestData.Random(batch * capacity * rowLength, 2);
        float[] Run(IBackend backend)
        {
            using IBuffer s = TestData.Buffer(backend, source), c = TestData.Buffer(backend, cache);
            backend.AppendToCache(s, c, batch, length, capacity, position, rowLength);
            using IBuffer gathered = backend.Allocate(4 * capacity * rowLength);
            backend.GatherRows(c, gathered, [2, 0, 0, 1], capacity * rowLength);
            // and the first 5 positions only, rows still capacity apart (a KV cache reordered mid-generation)
            using IBuffer prefix = TestData.Buffer(backend, TestData.Random(4 * capacity * rowLength, 3));
            backend.GatherRows(c, prefix, [1, 1, 2, 0], 5 * rowLength, capacity * rowLength);
            return [.. TestData.Read(backend, gathered, 4 * capacity * rowLength), .. TestData.Read(backend, prefix, 4 * capacity * rowLength)];
        }
        Assert.Equal(Run(_reference), Run(cpu));
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public void ArgMaxMatchesReference(SimdLevel level)
    {
        using var cpu = new CpuBackend(2, level);
        for (int cols = 1; cols <= 257; cols++)
        {
            int rows = 3;
            float[] x = TestData.Random(rows * cols, cols);
            if (cols > 5)
            {
                x[cols + 2] = 5f; x[cols + cols - 1] = 5f; // row 1: a tie, first wins
                x[2 * cols + cols - 1] = 7f;                 // row 2: the very last element
            }
            var expected = new int[rows];
            var actual = new int[rows];
            using IBuffer rb = TestData.Buffer(_reference, x), cb = TestData.Buffer(cpu, x);
            _reference.ArgMax(rb, rows, cols, expected);
            cpu.ArgMax(cb, rows, cols, actual);
            Assert.Equal(expected, actual);
        }

        float[] logits = TestData.Random(32128, 4, 20f);
        logits[31000] = 25f;
        logits[32127] = 25f;
        var one = new int[1];
        using IBuffer buffer = TestData.Buffer(cpu, logits);
        cpu.ArgMax(buffer, 1, 32128, one);
        Assert.Equal(31000, one[0]);
    }

    public void Dispose() => _store.Dispose();
}
