// Argument checks that stand between a hostile size and a kernel's pointer arithmetic: an attention width that wraps
// in 32 bits, negative sizes, thread counts that would start thousands of OS threads.
using ManagedT5.Kernels.Cpu;
using ManagedT5.Kernels.Reference;

namespace ManagedT5.Kernels.Tests;

public sealed class ArgumentCheckTests
{
    // 6 x 715827883 = 2^32 + 2, which an unchecked int multiply makes 2: two-float buffers then passed the length
    // checks and the kernel, striding by the real head size, read far outside them (AccessViolationException).
    private static readonly AttentionShape Wrapping = new(Batch: 1, Heads: 6, HeadDim: 715827883, QueryLength: 1, KeyLength: 1, KeyCapacity: 1);

    [Fact]
    public void InnerDimIsChecked()
    {
        Assert.Throws<OverflowException>(() => Wrapping.InnerDim);
        Assert.Equal(384, new AttentionShape(1, 6, 64, 1, 1, 1).InnerDim);
    }

    public static TheoryData<string, AttentionShape> BadShapes => new()
    {
        { "cpu", Wrapping }, { "reference", Wrapping },
        { "cpu", new AttentionShape(1, -2, -1, 1, 1, 1) }, { "reference", new AttentionShape(1, -2, -1, 1, 1, 1) },
        { "cpu", new AttentionShape(-1, 2, 1, 1, 1, 1) },
        { "cpu", new AttentionShape(1, 2, 1, 1, 2, 1) },
    };

    [Theory]
    [MemberData(nameof(BadShapes))]
    public void AttentionRefusesShapesBeforeTouchingBuffers(string backendName, AttentionShape shape)
    {
        using IBackend backend = backendName == "cpu" ? new CpuBackend(2) : new ReferenceBackend();
        using IBuffer q = backend.Allocate(2), k = backend.Allocate(2), v = backend.Allocate(2), o = backend.Allocate(2);
        var e = Assert.ThrowsAny<ArgumentException>(() => backend.Attention(q, k, v, o, shape, null, null));
        Assert.Equal("shape", e.ParamName);
    }

    [Fact]
    public void ThreadCountsAreCappedAtFourPerProcessor()
    {
        Assert.Equal(4 * Environment.ProcessorCount, CpuBackend.MaxThreads);
        foreach (int threads in new[] { -1, CpuBackend.MaxThreads + 1, 100_000 })
        {
            var e = Assert.Throws<ArgumentOutOfRangeException>(() => new CpuBackend(threads));
            Assert.Equal("threads", e.ParamName);
            Assert.StartsWith("threads: ", e.Message);
        }
        using var most = new CpuBackend(CpuBackend.MaxThreads);
        Assert.Equal(CpuBackend.MaxThreads, most.Threads);
    }
}
