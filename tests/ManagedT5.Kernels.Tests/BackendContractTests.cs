// The backend contract: every backend refuses the same bad calls with the same exception and parameter name (the
// checks live once, in BackendBase), and an op a backend lacks is a NotSupportedException naming both.
using ManagedT5.Kernels.Cpu;
using ManagedT5.Kernels.Reference;

namespace ManagedT5.Kernels.Tests;

public sealed class BackendContractTests : IDisposable
{
    private readonly TensorStore _store = new();

    public void Dispose() => _store.Dispose();

    public static TheoryData<string> Backends => new() { "cpu", "reference" };

    private static BackendBase Create(string name) => name == "cpu" ? new CpuBackend(2) : new ReferenceBackend();

    private IWeight Table(IBackend backend, int rows, int cols) =>
        backend.CreateWeight(_store.Random("table", WeightFormat.F32, rows, cols, seed: 3));

    [Theory]
    [MemberData(nameof(Backends))]
    public void EmbeddingRefusesAnIdOutsideTheTable(string name)
    {
        using BackendBase backend = Create(name);
        using IWeight table = Table(backend, 4, 8);
        using IBuffer output = backend.Allocate(16);
        foreach (int id in new[] { 4, -1, int.MaxValue })
        {
            var e = Assert.Throws<ArgumentOutOfRangeException>(() => backend.Embedding(table, [0, id], output));
            Assert.Equal("ids", e.ParamName);
        }
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void OpsThatWouldReadWhatTheyOverwriteRefuseOneBufferForBoth(string name)
    {
        using BackendBase backend = Create(name);
        using IBuffer rows = backend.Allocate(8), other = backend.Allocate(8);
        Assert.Equal("destination", Assert.Throws<ArgumentException>(() => backend.GatherRows(rows, rows, [1, 0], 4)).ParamName);
        Assert.Equal("sourceRows", Assert.Throws<ArgumentOutOfRangeException>(() => backend.GatherRows(rows, other, [2, 0], 4)).ParamName);
        using IWeight weight = Table(backend, 2, 4);
        Assert.Equal("output", Assert.Throws<ArgumentException>(() => backend.Linear(rows, weight, rows, 1)).ParamName);
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void ShortBuffersAndBadRangesGiveTheSameErrorOnEveryBackend(string name)
    {
        using BackendBase backend = Create(name);
        using IBuffer small = backend.Allocate(4), large = backend.Allocate(16);
        Assert.Equal("source", Assert.Throws<ArgumentException>(() => backend.Add(small, large, 8)).ParamName);
        Assert.Equal("buffer", Assert.Throws<ArgumentException>(() => backend.Scale(small, 2f, 8)).ParamName);
        Assert.Equal("offset", Assert.Throws<ArgumentOutOfRangeException>(() => backend.Upload(new float[4], small, 2)).ParamName);
        Assert.Equal("offset", Assert.Throws<ArgumentOutOfRangeException>(() => backend.Download(small, new float[2], -1)).ParamName);
        Assert.Equal("cols", Assert.Throws<ArgumentOutOfRangeException>(() => backend.ArgMax(large, 1, 0, new int[1])).ParamName);
        Assert.Equal("position", Assert.Throws<ArgumentOutOfRangeException>(() => backend.AppendToCache(small, large, 1, 2, 4, 3, 2)).ParamName);
        Assert.Equal("length", Assert.Throws<ArgumentOutOfRangeException>(() => backend.Allocate(-1)).ParamName);
    }

    [Theory]
    [MemberData(nameof(Backends))]
    public void EveryBackendSupportsEveryForwardOp(string name)
    {
        using BackendBase backend = Create(name);
        foreach (BackendOp op in Enum.GetValues<BackendOp>()) Assert.True(backend.Supports(op), $"{name} lacks {op}");
        using var profiled = new ProfilingBackend(backend);
        Assert.True(profiled.Supports(BackendOp.Attention));
    }

    [Fact]
    public void AnOpABackendLacksSaysWhichBackendAndWhichOp()
    {
        using var backend = new WithoutArgMax();
        Assert.False(backend.Supports(BackendOp.ArgMax));
        using IBuffer logits = backend.Allocate(4);
        var e = Assert.Throws<NotSupportedException>(() => backend.ArgMax(logits, 1, 4, new int[1]));
        Assert.Contains("without-argmax", e.Message);
        Assert.Contains("ArgMax", e.Message);
    }

    /// <summary>A backend that lacks one op, as the ILGPU backend will lack the backward ops at first.</summary>
    private sealed class WithoutArgMax : BackendBase
    {
        private readonly ReferenceBackend _inner = new();
        public override string Name => "without-argmax";
        public override bool Supports(BackendOp op) => op != BackendOp.ArgMax && base.Supports(op);
        public override IWeight CreateWeight(HostTensor source, WeightFormat? format = null) => _inner.CreateWeight(source, format);
        public override void Dispose() => _inner.Dispose();
        protected override IBuffer AllocateCore(int length) => _inner.Allocate(length);
        protected override void UploadCore(ReadOnlySpan<float> source, IBuffer destination, int offset) => _inner.Upload(source, destination, offset);
        protected override void DownloadCore(IBuffer source, Span<float> destination, int offset) => _inner.Download(source, destination, offset);
        protected override void EmbeddingCore(IWeight table, ReadOnlySpan<int> ids, IBuffer output) => _inner.Embedding(table, ids, output);
        protected override void LinearCore(IBuffer input, IWeight weight, IBuffer output, int rows, bool accumulate) => _inner.Linear(input, weight, output, rows, accumulate);
        protected override void RmsNormCore(IBuffer input, IWeight weight, IBuffer output, int rows, float epsilon) => _inner.RmsNorm(input, weight, output, rows, epsilon);
        protected override void ActivateCore(IBuffer gate, IBuffer? up, ActivationKind kind, int length) => _inner.Activate(gate, up, kind, length);
        protected override void AddCore(IBuffer source, IBuffer destination, int length) => _inner.Add(source, destination, length);
        protected override void ScaleCore(IBuffer buffer, float factor, int length) => _inner.Scale(buffer, factor, length);
        protected override void PositionBiasCore(IWeight table, IBuffer output, int queryLength, int keyLength, int queryOffset,
            bool bidirectional, int numBuckets, int maxDistance) =>
            _inner.PositionBias(table, output, queryLength, keyLength, queryOffset, bidirectional, numBuckets, maxDistance);
        protected override void AttentionCore(IBuffer query, IBuffer key, IBuffer value, IBuffer output, AttentionShape shape,
            IBuffer? bias, IBuffer? keyMask) => _inner.Attention(query, key, value, output, shape, bias, keyMask);
        protected override void AppendToCacheCore(IBuffer source, IBuffer cache, int batch, int length, int capacity, int position, int rowLength) =>
            _inner.AppendToCache(source, cache, batch, length, capacity, position, rowLength);
        protected override void GatherRowsCore(IBuffer source, IBuffer destination, ReadOnlySpan<int> sourceRows, int rowLength, int rowStride) =>
            _inner.GatherRows(source, destination, sourceRows, rowLength, rowStride);
        protected override void ArgMaxCore(IBuffer input, int rows, int cols, Span<int> result) => throw NotSupported(BackendOp.ArgMax);
    }
}
