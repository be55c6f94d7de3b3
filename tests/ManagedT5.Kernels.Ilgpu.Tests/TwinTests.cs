// Tests of the parity harness itself: an op the backend under test lacks comes out skipped with the reason
// "<backend> does not support <op>", never failed; the ops it has still run and are still checked.
using ManagedT5.Kernels.Reference;

namespace ManagedT5.Kernels.Ilgpu.Tests;

public sealed class TwinTests
{
    [Fact]
    public void AnOpTheDeviceLacksIsSkippedWithTheReason()
    {
        using var twin = new Twin(new LackingBackend(new ReferenceBackend(), BackendOp.Add));
        var source = twin.Buffer([1, 2, 3]);
        var destination = twin.Buffer([4, 5, 6]);
        bool called = false;
        var skip = Assert.Throws<Xunit.SkipException>(() => twin.Run(BackendOp.Add, (b, s) =>
        {
            called = true;
            b.Add(source[s], destination[s], 3);
        }));
        Assert.Equal("reference-without-Add does not support Add", skip.Message);
        Assert.False(called); // skipped before either side runs
    }

    [Fact]
    public void AnOpTheDeviceHasStillRunsAndIsChecked()
    {
        using var twin = new Twin(new LackingBackend(new ReferenceBackend(), BackendOp.Add));
        var buffer = twin.Buffer([1, 2, 3]);
        twin.Run(BackendOp.Scale, (b, s) => b.Scale(buffer[s], 0.5f, 3));
        twin.AssertClose(buffer, 3, "scale");
        // a wrong result on a supported op still fails: only the missing op is excused
        twin.Device.Scale(buffer.Device, 2f, 1);
        Assert.ThrowsAny<Xunit.Sdk.XunitException>(() => twin.AssertClose(buffer, 3, "scale, device changed"));
    }

    [Fact]
    public void RequireSkipsOnlyTheMissingOp()
    {
        var backend = new LackingBackend(new ReferenceBackend(), BackendOp.ArgMax);
        Twin.Require(backend, BackendOp.Linear);
        var skip = Assert.Throws<Xunit.SkipException>(() => Twin.Require(backend, BackendOp.ArgMax));
        Assert.Equal("reference-without-ArgMax does not support ArgMax", skip.Message);
    }

    /// <summary>A backend that forwards to another but reports one op unsupported, as a device without that op would.
    /// Calling the missing op anyway throws NotSupportedException, as BackendBase's contract says.</summary>
    private sealed class LackingBackend(IBackend inner, BackendOp missing) : IBackend
    {
        public string Name => $"{inner.Name}-without-{missing}";
        public bool Supports(BackendOp op) => op != missing && inner.Supports(op);

        private IBackend Has(BackendOp op) =>
            Supports(op) ? inner : throw new NotSupportedException($"The {Name} backend does not support {op}.");

        public IWeight CreateWeight(HostTensor source, WeightFormat? format = null) => inner.CreateWeight(source, format);
        public IBuffer Allocate(int length) => inner.Allocate(length);
        public void Upload(ReadOnlySpan<float> source, IBuffer destination, int offset = 0) => inner.Upload(source, destination, offset);
        public void Download(IBuffer source, Span<float> destination, int offset = 0) => inner.Download(source, destination, offset);
        public void Embedding(IWeight table, ReadOnlySpan<int> ids, IBuffer output) => Has(BackendOp.Embedding).Embedding(table, ids, output);
        public void Linear(IBuffer input, IWeight weight, IBuffer output, int rows, bool accumulate = false) =>
            Has(BackendOp.Linear).Linear(input, weight, output, rows, accumulate);
        public void Linears(IBuffer input, ReadOnlySpan<IWeight> weights, ReadOnlySpan<IBuffer> outputs, int rows) =>
            Has(BackendOp.Linears).Linears(input, weights, outputs, rows);
        public void RmsNorm(IBuffer input, IWeight weight, IBuffer output, int rows, float epsilon) =>
            Has(BackendOp.RmsNorm).RmsNorm(input, weight, output, rows, epsilon);
        public void Activate(IBuffer gate, IBuffer? up, ActivationKind kind, int length) => Has(BackendOp.Activate).Activate(gate, up, kind, length);
        public void Add(IBuffer source, IBuffer destination, int length) => Has(BackendOp.Add).Add(source, destination, length);
        public void Scale(IBuffer buffer, float factor, int length) => Has(BackendOp.Scale).Scale(buffer, factor, length);
        public void PositionBias(IWeight table, IBuffer output, int queryLength, int keyLength, int queryOffset,
            bool bidirectional, int numBuckets, int maxDistance) =>
            Has(BackendOp.PositionBias).PositionBias(table, output, queryLength, keyLength, queryOffset, bidirectional, numBuckets, maxDistance);
        public void Attention(IBuffer query, IBuffer key, IBuffer value, IBuffer output, AttentionShape shape, IBuffer? bias, IBuffer? keyMask) =>
            Has(BackendOp.Attention).Attention(query, key, value, output, shape, bias, keyMask);
        public void AppendToCache(IBuffer source, IBuffer cache, int batch, int length, int capacity, int position, int rowLength) =>
            Has(BackendOp.AppendToCache).AppendToCache(source, cache, batch, length, capacity, position, rowLength);
        public void GatherRows(IBuffer source, IBuffer destination, ReadOnlySpan<int> sourceRows, int rowLength, int rowStride = 0) =>
            Has(BackendOp.GatherRows).GatherRows(source, destination, sourceRows, rowLength, rowStride);
        public void ArgMax(IBuffer input, int rows, int cols, Span<int> result) => Has(BackendOp.ArgMax).ArgMax(input, rows, cols, result);
        public void AttentionPerRow(IBuffer query, ReadOnlySpan<IBuffer> keys, ReadOnlySpan<IBuffer> values, IBuffer output, int heads,
            int headDim, ReadOnlySpan<int> keyLengths, IBuffer? bias, int biasLength, ReadOnlySpan<IBuffer?> keyMasks) =>
            Has(BackendOp.AttentionPerRow).AttentionPerRow(query, keys, values, output, heads, headDim, keyLengths, bias, biasLength, keyMasks);
        public void AppendToCachePerRow(IBuffer source, ReadOnlySpan<IBuffer> caches, ReadOnlySpan<int> positions, int rowLength) =>
            Has(BackendOp.AppendToCachePerRow).AppendToCachePerRow(source, caches, positions, rowLength);
        public void Dispose() => inner.Dispose();
    }
}
