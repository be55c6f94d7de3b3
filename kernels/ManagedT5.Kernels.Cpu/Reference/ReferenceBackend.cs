// The scalar reference backend: ReferenceKernels behind the backend contract (BackendBase checks the arguments).
// Slow and obviously right; the parity baseline.
namespace ManagedT5.Kernels.Reference;

using ManagedT5.Kernels.Cpu;

/// <summary>Scalar reference implementation of <see cref="IBackend"/>.</summary>
public sealed class ReferenceBackend : BackendBase
{
    /// <inheritdoc />
    public override string Name => "reference";

    /// <inheritdoc />
    public override IWeight CreateWeight(HostTensor source, WeightFormat? format = null) => CpuWeight.Create(source, format);

    /// <inheritdoc />
    protected override IBuffer AllocateCore(int length) => new CpuBuffer(length);

    /// <inheritdoc />
    protected override void UploadCore(ReadOnlySpan<float> source, IBuffer destination, int offset) =>
        source.CopyTo(CpuBuffer.Of(destination).Data.AsSpan(offset));

    /// <inheritdoc />
    protected override void DownloadCore(IBuffer source, Span<float> destination, int offset) =>
        CpuBuffer.Of(source).Data.AsSpan(offset, destination.Length).CopyTo(destination);

    /// <inheritdoc />
    protected override void EmbeddingCore(IWeight table, ReadOnlySpan<int> ids, IBuffer output) =>
        ReferenceKernels.Embedding(CpuWeight.Of(table), ids, CpuBuffer.Of(output).Data);

    /// <inheritdoc />
    protected override void LinearCore(IBuffer input, IWeight weight, IBuffer output, int rows, bool accumulate) =>
        ReferenceKernels.Linear(CpuBuffer.Of(input).Data, CpuWeight.Of(weight), CpuBuffer.Of(output).Data, rows, accumulate);

    /// <inheritdoc />
    protected override void RmsNormCore(IBuffer input, IWeight weight, IBuffer output, int rows, float epsilon) =>
        ReferenceKernels.RmsNorm(CpuBuffer.Of(input).Data, CpuWeight.Of(weight), CpuBuffer.Of(output).Data, rows, epsilon);

    /// <inheritdoc />
    protected override void ActivateCore(IBuffer gate, IBuffer? up, ActivationKind kind, int length) =>
        ReferenceKernels.Activate(CpuBuffer.Of(gate).Data, up is null ? default : CpuBuffer.Of(up).Data, kind, length, up is not null);

    /// <inheritdoc />
    protected override void AddCore(IBuffer source, IBuffer destination, int length)
    {
        float[] s = CpuBuffer.Of(source).Data, d = CpuBuffer.Of(destination).Data;
        for (int i = 0; i < length; i++) d[i] += s[i];
    }

    /// <inheritdoc />
    protected override void ScaleCore(IBuffer buffer, float factor, int length)
    {
        float[] d = CpuBuffer.Of(buffer).Data;
        for (int i = 0; i < length; i++) d[i] *= factor;
    }

    /// <inheritdoc />
    protected override void PositionBiasCore(IWeight table, IBuffer output, int queryLength, int keyLength, int queryOffset,
        bool bidirectional, int numBuckets, int maxDistance) =>
        ReferenceKernels.PositionBias(CpuWeight.Of(table), CpuBuffer.Of(output).Data, queryLength, keyLength, queryOffset,
            bidirectional, numBuckets, maxDistance);

    /// <inheritdoc />
    protected override void AttentionCore(IBuffer query, IBuffer key, IBuffer value, IBuffer output, AttentionShape shape,
        IBuffer? bias, IBuffer? keyMask)
    {
        ReferenceKernels.Attention(CpuBuffer.Of(query).Data, CpuBuffer.Of(key).Data, CpuBuffer.Of(value).Data,
            CpuBuffer.Of(output).Data, shape, bias is null ? default : CpuBuffer.Of(bias).Data,
            keyMask is null ? default : CpuBuffer.Of(keyMask).Data);
    }

    /// <inheritdoc />
    protected override void AppendToCacheCore(IBuffer source, IBuffer cache, int batch, int length, int capacity, int position, int rowLength)
    {
        float[] s = CpuBuffer.Of(source).Data, c = CpuBuffer.Of(cache).Data;
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < length; t++)
                Array.Copy(s, (b * length + t) * rowLength, c, (b * capacity + position + t) * rowLength, rowLength);
    }

    /// <inheritdoc />
    /// <remarks>Literally one batch-1 <see cref="ReferenceKernels.Attention"/> per row, over that row's keys, the last
    /// keyLengths[r] columns of the bias and its mask: the definition the CPU kernel is tested against.</remarks>
    protected override void AttentionPerRowCore(IBuffer query, ReadOnlySpan<IBuffer> keys, ReadOnlySpan<IBuffer> values, IBuffer output,
        int heads, int headDim, ReadOnlySpan<int> keyLengths, IBuffer? bias, int biasLength, ReadOnlySpan<IBuffer?> keyMasks)
    {
        int inner = heads * headDim;
        float[] q = CpuBuffer.Of(query).Data, o = CpuBuffer.Of(output).Data;
        for (int r = 0; r < keyLengths.Length; r++)
        {
            int n = keyLengths[r];
            float[]? rowBias = null;                                  // [heads, 1, n]
            if (bias is not null)
            {
                float[] b = CpuBuffer.Of(bias).Data;
                rowBias = new float[heads * n];
                for (int h = 0; h < heads; h++) Array.Copy(b, h * biasLength + biasLength - n, rowBias, h * n, n);
            }
            float[]? mask = keyMasks.IsEmpty || keyMasks[r] is null ? null : CpuBuffer.Of(keyMasks[r]!).Data;
            var shape = new AttentionShape(1, heads, headDim, 1, n, n);
            ReferenceKernels.Attention(q.AsSpan(r * inner, inner), CpuBuffer.Of(keys[r]).Data, CpuBuffer.Of(values[r]).Data,
                o.AsSpan(r * inner, inner), shape, rowBias, mask is null ? default : mask.AsSpan(0, n));
        }
    }

    /// <inheritdoc />
    protected override void AppendToCachePerRowCore(IBuffer source, ReadOnlySpan<IBuffer> caches, ReadOnlySpan<int> positions, int rowLength)
    {
        float[] s = CpuBuffer.Of(source).Data;
        for (int r = 0; r < positions.Length; r++)
            Array.Copy(s, r * rowLength, CpuBuffer.Of(caches[r]).Data, positions[r] * rowLength, rowLength);
    }

    /// <inheritdoc />
    protected override void GatherRowsCore(IBuffer source, IBuffer destination, ReadOnlySpan<int> sourceRows, int rowLength, int rowStride)
    {
        float[] s = CpuBuffer.Of(source).Data, d = CpuBuffer.Of(destination).Data;
        long stride = rowStride == 0 ? rowLength : rowStride;
        for (int r = 0; r < sourceRows.Length; r++)
            Array.Copy(s, sourceRows[r] * stride, d, r * stride, rowLength);
    }

    /// <inheritdoc />
    protected override void ArgMaxCore(IBuffer input, int rows, int cols, Span<int> result)
    {
        float[] x = CpuBuffer.Of(input).Data;
        for (int r = 0; r < rows; r++) result[r] = ReferenceKernels.ArgMax(x.AsSpan(r * cols, cols));
    }

    /// <inheritdoc />
    public override void Dispose() { }
}
