// The backend contract: the only thing the T5 model calls to compute. It knows nothing about T5's structure; it
// offers buffers, weights and the handful of ops a T5 forward pass is made of (IBackend, BackendOp), and checks every
// op's arguments once, with the same rules for every backend, before calling that backend's own code (BackendBase,
// in BackendBase.cs). Implementations: Reference (scalar, the twin every fast kernel is tested against), Cpu (SIMD +
// threads), and the optional ILGPU package.
namespace ManagedT5.Kernels;

/// <summary>A float buffer of activations living where the backend computes (host array, GPU memory).</summary>
public interface IBuffer : IDisposable
{
    /// <summary>Number of floats.</summary>
    int Length { get; }
}

/// <summary>A weight tensor prepared for one backend (in place, converted or uploaded).</summary>
public interface IWeight : IDisposable
{
    /// <summary>Checkpoint name, for messages.</summary>
    string Name { get; }
    /// <summary>Shape, outermost first ([out_features, in_features] for linear weights).</summary>
    IReadOnlyList<int> Shape { get; }
    /// <summary>How the backend stores the elements (may differ from the checkpoint's dtype on request).</summary>
    WeightFormat Format { get; }
    /// <summary>Bytes the backend reads when it streams the whole weight once.</summary>
    long ByteLength { get; }
}

/// <summary>How a backend keeps a weight.</summary>
public enum WeightFormat
{
    /// <summary>32-bit floats.</summary>
    F32,
    /// <summary>IEEE half precision, widened in the kernel.</summary>
    F16,
    /// <summary>bfloat16, widened in the kernel (or multiplied natively with fp32 accumulation).</summary>
    BF16,
    /// <summary>int8 weight-only quantization with one fp32 scale per output row.</summary>
    Int8,
}

/// <summary>Element-wise activations T5 checkpoints use.</summary>
public enum ActivationKind
{
    /// <summary>max(x, 0): original T5.</summary>
    Relu,
    /// <summary>gelu_new, the tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). Flan-T5 / T5 v1.1.</summary>
    GeluNew,
    /// <summary>gelu with erf: 0.5 x (1 + erf(x / sqrt 2)).</summary>
    Gelu,
    /// <summary>x * sigmoid(x) (gated-silu fine-tunes).</summary>
    Silu,
}

/// <summary>
/// Shapes for one attention call. Queries are [Batch, QueryLength, Heads * HeadDim]; keys and values are
/// [Batch, KeyCapacity, Heads * HeadDim] of which the first KeyLength rows per batch entry are valid.
/// </summary>
/// <param name="Batch">Batch entries.</param>
/// <param name="Heads">Attention heads.</param>
/// <param name="HeadDim">d_kv.</param>
/// <param name="QueryLength">Query positions in this call.</param>
/// <param name="KeyLength">Valid key positions.</param>
/// <param name="KeyCapacity">Rows reserved per batch entry in the key/value buffers (a KV cache's max length).</param>
/// <param name="Causal">When true, query i (absolute position QueryOffset + i) sees keys 0..QueryOffset + i only.</param>
/// <param name="QueryOffset">Absolute position of query 0 (the KV cache's past length).</param>
public readonly record struct AttentionShape(
    int Batch, int Heads, int HeadDim, int QueryLength, int KeyLength, int KeyCapacity,
    bool Causal = false, int QueryOffset = 0)
{
    /// <summary>Heads * HeadDim: the width of one query/key/value row (checked: a product that wraps would let a
    /// kernel index past its buffers).</summary>
    public int InnerDim => checked(Heads * HeadDim);

    /// <summary>The argument check every backend's Attention starts with: positive sizes whose products fit an int,
    /// keys within capacity. Buffer lengths are then compared against these products.</summary>
    internal void Require()
    {
        if (Batch < 1 || Heads < 1 || HeadDim < 1 || QueryLength < 0 || KeyLength < 0 || KeyCapacity < 0 || QueryOffset < 0)
            throw new ArgumentException($"Attention shape {this} has a size below its minimum (1 for batch, heads and head size; 0 otherwise).", "shape");
        if ((long)Heads * HeadDim > int.MaxValue)
            throw new ArgumentException($"Attention shape: heads {Heads} x head size {HeadDim} does not fit a buffer row.", "shape");
        if (KeyLength > KeyCapacity)
            throw new ArgumentException($"KeyLength {KeyLength} exceeds KeyCapacity {KeyCapacity}.", "shape");
    }
}

/// <summary>
/// A compute backend. Ops take buffers with explicit row counts so callers can allocate once at the largest size
/// and reuse buffers in the token loop. Every op is safe to call from several threads on distinct buffers.
/// </summary>
public interface IBackend : IDisposable
{
    /// <summary>Short name ("reference", "cpu", "ilgpu-cuda" ...).</summary>
    string Name { get; }

    /// <summary>Whether this backend implements <paramref name="op"/> (on this device). Calling an op it lacks throws
    /// a <see cref="NotSupportedException"/> naming the backend and the op.</summary>
    bool Supports(BackendOp op);

    /// <summary>Prepares a stored tensor. A CPU backend may use <paramref name="source"/>'s memory in place, so that
    /// memory must outlive the weight. <paramref name="format"/> null keeps the stored dtype (F32/F16/BF16).</summary>
    IWeight CreateWeight(HostTensor source, WeightFormat? format = null);

    /// <summary>A zeroed buffer of <paramref name="length"/> floats.</summary>
    IBuffer Allocate(int length);

    /// <summary>Copies host floats into <paramref name="destination"/> starting at <paramref name="offset"/>.</summary>
    void Upload(ReadOnlySpan<float> source, IBuffer destination, int offset = 0);

    /// <summary>Copies floats from <paramref name="source"/> (starting at <paramref name="offset"/>) to the host.</summary>
    void Download(IBuffer source, Span<float> destination, int offset = 0);

    /// <summary>output[i, :] = table[ids[i], :]. ids must be in range (the caller validates).</summary>
    void Embedding(IWeight table, ReadOnlySpan<int> ids, IBuffer output);

    /// <summary>output[r, o] (+)= sum_i input[r, i] * weight[o, i] — x W^T, for r in [0, rows).
    /// With <paramref name="accumulate"/> the product is added to output (a fused residual add).</summary>
    void Linear(IBuffer input, IWeight weight, IBuffer output, int rows, bool accumulate = false);

    /// <summary>Several Linears of one input as one op: outputs[i] = input weights[i]^T for each i (q, k and v of one
    /// normed input; wi_0 and wi_1). The weights share in_features. A backend may share the work of preparing the input
    /// and of dispatching it; every output equals what <see cref="Linear"/> gives for its weight alone.</summary>
    void Linears(IBuffer input, ReadOnlySpan<IWeight> weights, ReadOnlySpan<IBuffer> outputs, int rows);

    /// <summary>T5LayerNorm: output[r] = input[r] * rsqrt(mean(input[r]^2) + epsilon) * weight. No mean, no bias.</summary>
    void RmsNorm(IBuffer input, IWeight weight, IBuffer output, int rows, float epsilon);

    /// <summary>gate[i] = act(gate[i]) * up[i] for i &lt; length (or act(gate[i]) when <paramref name="up"/> is null).</summary>
    void Activate(IBuffer gate, IBuffer? up, ActivationKind kind, int length);

    /// <summary>destination[i] += source[i] for i &lt; length.</summary>
    void Add(IBuffer source, IBuffer destination, int length);

    /// <summary>buffer[i] *= factor for i &lt; length.</summary>
    void Scale(IBuffer buffer, float factor, int length);

    /// <summary>T5's relative position bias: output[h, i, j] = table[bucket(j - (queryOffset + i)), h],
    /// table [num_buckets, heads], output [heads, queryLength, keyLength].</summary>
    void PositionBias(IWeight table, IBuffer output, int queryLength, int keyLength, int queryOffset,
        bool bidirectional, int numBuckets, int maxDistance);

    /// <summary>
    /// Multi-head attention as T5 does it: scores = q . k (NO 1/sqrt(d_kv) scaling) + bias[h, i, j]; keys with
    /// keyMask[b, j] == 0 and (when causal) future keys are excluded; softmax in fp32; output = weights . v.
    /// bias is [Heads, QueryLength, KeyLength] shared by the batch (null: none); keyMask is [Batch, KeyLength].
    /// </summary>
    void Attention(IBuffer query, IBuffer key, IBuffer value, IBuffer output, AttentionShape shape,
        IBuffer? bias, IBuffer? keyMask);

    /// <summary>cache[b, position + t, :] = source[b, t, :] for b &lt; batch, t &lt; length (a KV-cache append);
    /// cache is [batch, capacity, rowLength].</summary>
    void AppendToCache(IBuffer source, IBuffer cache, int batch, int length, int capacity, int position, int rowLength);

    /// <summary>destination row r = source row sourceRows[r]: beam reordering, expansion. Rows start
    /// <paramref name="rowStride"/> floats apart in both buffers (0: rowLength) and the first rowLength floats of each
    /// are copied, so a KV cache reorders only the positions filled so far.</summary>
    void GatherRows(IBuffer source, IBuffer destination, ReadOnlySpan<int> sourceRows, int rowLength, int rowStride = 0);

    /// <summary>result[r] = index of the largest of input[r, 0..cols) (first index on ties).</summary>
    void ArgMax(IBuffer input, int rows, int cols, Span<int> result);

    /// <summary>
    /// One query per row against that row's own keys (continuous batching: rows of different requests, each with its
    /// own KV cache and length). query, output: [rows, heads * headDim]; keys[r], values[r]: [capacity_r, heads *
    /// headDim] of which the first keyLengths[r] rows are attended (a decoder step's query at position keyLengths[r] - 1
    /// sees every key up to it: causal by construction). T5's scoring as in <see cref="Attention"/> (no 1/sqrt(d_kv)).
    /// bias is [heads, biasLength] aligned to the right: row r's key j gets bias[h, biasLength - keyLengths[r] + j]
    /// (one decoder position bias computed for the longest row serves every shorter one, since it depends only on
    /// j - position). keyMasks[r] is [keyLengths[r]] (0 = padding) or null. Each row's result equals a batch-1
    /// <see cref="Attention"/> call over the same keys, bias and mask.
    /// </summary>
    void AttentionPerRow(IBuffer query, ReadOnlySpan<IBuffer> keys, ReadOnlySpan<IBuffer> values, IBuffer output, int heads,
        int headDim, ReadOnlySpan<int> keyLengths, IBuffer? bias, int biasLength, ReadOnlySpan<IBuffer?> keyMasks);

    /// <summary>caches[r][positions[r], :] = source[r, :] for each row r: one decoder step's keys or values appended to
    /// the rows' own KV caches ([capacity_r, rowLength] each), every row at its own position.</summary>
    void AppendToCachePerRow(IBuffer source, ReadOnlySpan<IBuffer> caches, ReadOnlySpan<int> positions, int rowLength);
}

/// <summary>The ops of <see cref="IBackend"/>, for <see cref="IBackend.Supports"/> and for messages. An op added later
/// (a backward op, say) that some backend lacks gets a member here and reports false there.</summary>
public enum BackendOp
{
    /// <summary><see cref="IBackend.Embedding"/>.</summary>
    Embedding,
    /// <summary><see cref="IBackend.Linear"/>.</summary>
    Linear,
    /// <summary><see cref="IBackend.Linears"/>.</summary>
    Linears,
    /// <summary><see cref="IBackend.RmsNorm"/>.</summary>
    RmsNorm,
    /// <summary><see cref="IBackend.Activate"/>.</summary>
    Activate,
    /// <summary><see cref="IBackend.Add"/>.</summary>
    Add,
    /// <summary><see cref="IBackend.Scale"/>.</summary>
    Scale,
    /// <summary><see cref="IBackend.PositionBias"/>.</summary>
    PositionBias,
    /// <summary><see cref="IBackend.Attention"/>.</summary>
    Attention,
    /// <summary><see cref="IBackend.AppendToCache"/>.</summary>
    AppendToCache,
    /// <summary><see cref="IBackend.GatherRows"/>.</summary>
    GatherRows,
    /// <summary><see cref="IBackend.ArgMax"/>.</summary>
    ArgMax,
    /// <summary><see cref="IBackend.AttentionPerRow"/> (continuous batching; a backend without it decodes rows one at a time).</summary>
    AttentionPerRow,
    /// <summary><see cref="IBackend.AppendToCachePerRow"/> (continuous batching, with <see cref="AttentionPerRow"/>).</summary>
    AppendToCachePerRow,
}

/// <summary>
/// The one place every op's arguments are checked: each public op checks sizes, aliasing and index ranges with the
/// same rules for every backend, then calls the backend's <c>*Core</c> method, which may assume them. A backend
/// derives from this and implements the cores; buffers and weights of another backend's type are refused there.
/// The checks are integer compares (and one pass over the ids of Embedding / GatherRows), nothing that allocates.
/// </summary>
public abstract class BackendBase : IBackend
{
    /// <inheritdoc />
    public abstract string Name { get; }

    /// <inheritdoc />
    /// <remarks>Every op of <see cref="BackendOp"/> today is one the forward pass needs, so every backend has them;
    /// a backend that lacks one (an op added later, or one its device cannot run) overrides this.</remarks>
    public virtual bool Supports(BackendOp op) => Enum.IsDefined(op);

    /// <summary>The error for an op this backend lacks: names the backend and the op.</summary>
    protected NotSupportedException NotSupported(BackendOp op) =>
        new($"The {Name} backend does not support {op}; check IBackend.Supports({nameof(BackendOp)}.{op}) and use a backend that does (\"cpu\" has every op).");

    /// <inheritdoc />
    public abstract IWeight CreateWeight(HostTensor source, WeightFormat? format = null);

    /// <inheritdoc />
    public IBuffer Allocate(int length)
    {
        if (length < 0) throw new ArgumentOutOfRangeException(nameof(length), length, "A buffer length must not be negative.");
        return AllocateCore(length);
    }

    /// <inheritdoc />
    public void Upload(ReadOnlySpan<float> source, IBuffer destination, int offset = 0)
    {
        CheckRange(destination, offset, source.Length, nameof(destination));
        UploadCore(source, destination, offset);
    }

    /// <inheritdoc />
    public void Download(IBuffer source, Span<float> destination, int offset = 0)
    {
        CheckRange(source, offset, destination.Length, nameof(source));
        DownloadCore(source, destination, offset);
    }

    /// <inheritdoc />
    /// <remarks>Every id is checked against the table's rows: a bad id would read outside the table.</remarks>
    public void Embedding(IWeight table, ReadOnlySpan<int> ids, IBuffer output)
    {
        (int rows, int cols) = Matrix(table);
        Require(output, (long)ids.Length * cols, nameof(output));
        foreach (int id in ids)
            if ((uint)id >= (uint)rows)
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"Token id outside the {rows} rows of '{table.Name}'.");
        EmbeddingCore(table, ids, output);
    }

    /// <inheritdoc />
    public void Linear(IBuffer input, IWeight weight, IBuffer output, int rows, bool accumulate = false)
    {
        CheckLinear(input, weight, output, rows, nameof(output));
        LinearCore(input, weight, output, rows, accumulate);
    }

    /// <inheritdoc />
    public void Linears(IBuffer input, ReadOnlySpan<IWeight> weights, ReadOnlySpan<IBuffer> outputs, int rows)
    {
        CheckLinears(input, weights, outputs, rows);
        LinearsCore(input, weights, outputs, rows);
    }

    /// <summary>Linears' check, for a backend's own overloads of it (chosen kernels, say).</summary>
    protected static void CheckLinears(IBuffer input, ReadOnlySpan<IWeight> weights, ReadOnlySpan<IBuffer> outputs, int rows)
    {
        if (weights.Length != outputs.Length)
            throw new ArgumentException($"{weights.Length} weights but {outputs.Length} outputs; give one output per weight.", nameof(outputs));
        for (int i = 0; i < weights.Length; i++)
        {
            CheckLinear(input, weights[i], outputs[i], rows, nameof(outputs));
            if (i > 0 && weights[i].Shape[^1] != weights[0].Shape[^1])
                throw new ArgumentException(
                    $"Weight '{weights[i].Name}' has {weights[i].Shape[^1]} in_features but '{weights[0].Name}' has {weights[0].Shape[^1]}; weights sharing an input must match.",
                    nameof(weights));
            for (int j = 0; j < i; j++)
                if (ReferenceEquals(outputs[i], outputs[j]))
                    throw new ArgumentException($"Outputs {j} and {i} are the same buffer; give each weight its own output.", nameof(outputs));
        }
    }

    /// <inheritdoc />
    public void RmsNorm(IBuffer input, IWeight weight, IBuffer output, int rows, float epsilon)
    {
        RequireCount(rows, nameof(rows));
        int d = weight.Shape.Count == 0 ? 1 : weight.Shape[^1];
        Require(input, (long)rows * d, nameof(input));
        Require(output, (long)rows * d, nameof(output));
        RmsNormCore(input, weight, output, rows, epsilon);
    }

    /// <inheritdoc />
    public void Activate(IBuffer gate, IBuffer? up, ActivationKind kind, int length)
    {
        if (!Enum.IsDefined(kind)) throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown activation.");
        RequireCount(length, nameof(length));
        Require(gate, length, nameof(gate));
        if (up is not null) Require(up, length, nameof(up));
        ActivateCore(gate, up, kind, length);
    }

    /// <inheritdoc />
    public void Add(IBuffer source, IBuffer destination, int length)
    {
        RequireCount(length, nameof(length));
        Require(source, length, nameof(source));
        Require(destination, length, nameof(destination));
        AddCore(source, destination, length);
    }

    /// <inheritdoc />
    public void Scale(IBuffer buffer, float factor, int length)
    {
        RequireCount(length, nameof(length));
        Require(buffer, length, nameof(buffer));
        ScaleCore(buffer, factor, length);
    }

    /// <inheritdoc />
    public void PositionBias(IWeight table, IBuffer output, int queryLength, int keyLength, int queryOffset,
        bool bidirectional, int numBuckets, int maxDistance)
    {
        RequireCount(queryLength, nameof(queryLength));
        RequireCount(keyLength, nameof(keyLength));
        RequireCount(queryOffset, nameof(queryOffset));
        (int buckets, int heads) = Matrix(table);
        if (numBuckets > buckets)
            throw new ArgumentException($"'{table.Name}' has {buckets} buckets but {numBuckets} were asked for.", nameof(numBuckets));
        int maxExact = (bidirectional ? numBuckets / 2 : numBuckets) / 2;
        if (maxExact < 1 || maxDistance <= maxExact)
            throw new ArgumentException($"num_buckets {numBuckets} / max_distance {maxDistance} leave no logarithmic buckets.", nameof(numBuckets));
        Require(output, (long)heads * queryLength * keyLength, nameof(output));
        PositionBiasCore(table, output, queryLength, keyLength, queryOffset, bidirectional, numBuckets, maxDistance);
    }

    /// <inheritdoc />
    public void Attention(IBuffer query, IBuffer key, IBuffer value, IBuffer output, AttentionShape shape,
        IBuffer? bias, IBuffer? keyMask)
    {
        shape.Require();
        long rows = (long)shape.Batch * shape.QueryLength * shape.InnerDim, cache = (long)shape.Batch * shape.KeyCapacity * shape.InnerDim;
        Require(query, rows, nameof(query));
        Require(output, rows, nameof(output));
        Require(key, cache, nameof(key));
        Require(value, cache, nameof(value));
        if (bias is not null) Require(bias, (long)shape.Heads * shape.QueryLength * shape.KeyLength, nameof(bias));
        if (keyMask is not null) Require(keyMask, (long)shape.Batch * shape.KeyLength, nameof(keyMask));
        if (ReferenceEquals(output, query) || ReferenceEquals(output, key) || ReferenceEquals(output, value))
            throw new ArgumentException("Attention's output must be its own buffer, not the query, key or value.", nameof(output));
        AttentionCore(query, key, value, output, shape, bias, keyMask);
    }

    /// <inheritdoc />
    public void AppendToCache(IBuffer source, IBuffer cache, int batch, int length, int capacity, int position, int rowLength)
    {
        RequireCount(batch, nameof(batch));
        RequireCount(length, nameof(length));
        RequireCount(rowLength, nameof(rowLength));
        if (position < 0 || (long)position + length > capacity)
            throw new ArgumentOutOfRangeException(nameof(position), $"Rows {position}..{(long)position + length} do not fit a cache of capacity {capacity}.");
        Require(source, (long)batch * length * rowLength, nameof(source));
        Require(cache, (long)batch * capacity * rowLength, nameof(cache));
        if (ReferenceEquals(source, cache))
            throw new ArgumentException("AppendToCache needs distinct source and cache buffers.", nameof(cache));
        AppendToCacheCore(source, cache, batch, length, capacity, position, rowLength);
    }

    /// <inheritdoc />
    /// <remarks>Source and destination must differ (an in-place reorder would overwrite rows before reading them), and
    /// every source row must lie inside the source buffer.</remarks>
    public void GatherRows(IBuffer source, IBuffer destination, ReadOnlySpan<int> sourceRows, int rowLength, int rowStride = 0)
    {
        RequireCount(rowLength, nameof(rowLength));
        if (ReferenceEquals(source, destination))
            throw new ArgumentException("GatherRows needs distinct source and destination buffers.", nameof(destination));
        if (rowStride != 0 && rowStride < rowLength)
            throw new ArgumentOutOfRangeException(nameof(rowStride), rowStride, $"Rows of {rowLength} floats cannot start {rowStride} apart.");
        long stride = rowStride == 0 ? rowLength : rowStride;
        if (!sourceRows.IsEmpty) Require(destination, (sourceRows.Length - 1) * stride + rowLength, nameof(destination));
        foreach (int row in sourceRows)
            if (row < 0 || row * stride + rowLength > source.Length)
                throw new ArgumentOutOfRangeException(nameof(sourceRows), row, $"Row outside the source buffer ({source.Length} floats, rows of {rowLength} every {stride}).");
        GatherRowsCore(source, destination, sourceRows, rowLength, rowStride);
    }

    /// <inheritdoc />
    public void ArgMax(IBuffer input, int rows, int cols, Span<int> result)
    {
        RequireCount(rows, nameof(rows));
        if (cols < 1) throw new ArgumentOutOfRangeException(nameof(cols), cols, "An argmax needs at least one column.");
        Require(input, (long)rows * cols, nameof(input));
        if (result.Length < rows) throw new ArgumentException($"result holds {result.Length} ints; {rows} rows need as many.", nameof(result));
        ArgMaxCore(input, rows, cols, result);
    }

    /// <inheritdoc />
    /// <remarks>Every row's key count is checked against its cache, its mask and the bias; rows, keys, values and masks
    /// are counted alike; the output is none of the inputs.</remarks>
    public void AttentionPerRow(IBuffer query, ReadOnlySpan<IBuffer> keys, ReadOnlySpan<IBuffer> values, IBuffer output, int heads,
        int headDim, ReadOnlySpan<int> keyLengths, IBuffer? bias, int biasLength, ReadOnlySpan<IBuffer?> keyMasks)
    {
        if (heads < 1 || headDim < 1 || (long)heads * headDim > int.MaxValue)
            throw new ArgumentException($"AttentionPerRow: {heads} heads of {headDim} do not make a row (each must be at least 1).", nameof(heads));
        int rows = keyLengths.Length, inner = heads * headDim;
        if (keys.Length != rows || values.Length != rows || (!keyMasks.IsEmpty && keyMasks.Length != rows))
            throw new ArgumentException($"AttentionPerRow: {rows} key lengths but {keys.Length} key, {values.Length} value and {keyMasks.Length} mask buffers; give one of each per row (masks may be empty).", nameof(keys));
        Require(query, (long)rows * inner, nameof(query));
        Require(output, (long)rows * inner, nameof(output));
        if (bias is not null) Require(bias, (long)heads * biasLength, nameof(bias));
        for (int r = 0; r < rows; r++)
        {
            int n = keyLengths[r];
            if (n < 0 || (bias is not null && n > biasLength))
                throw new ArgumentOutOfRangeException(nameof(keyLengths), n, $"Row {r}'s key length must be in [0, {(bias is null ? int.MaxValue : biasLength)}] (the bias length).");
            Require(keys[r], (long)n * inner, nameof(keys));
            Require(values[r], (long)n * inner, nameof(values));
            if (!keyMasks.IsEmpty && keyMasks[r] is { } mask) Require(mask, n, nameof(keyMasks));
            if (ReferenceEquals(output, keys[r]) || ReferenceEquals(output, values[r]))
                throw new ArgumentException("AttentionPerRow's output must be its own buffer, not a key or value cache.", nameof(output));
        }
        if (ReferenceEquals(output, query))
            throw new ArgumentException("AttentionPerRow's output must be its own buffer, not the query.", nameof(output));
        AttentionPerRowCore(query, keys, values, output, heads, headDim, keyLengths, bias, biasLength, keyMasks);
    }

    /// <inheritdoc />
    public void AppendToCachePerRow(IBuffer source, ReadOnlySpan<IBuffer> caches, ReadOnlySpan<int> positions, int rowLength)
    {
        RequireCount(rowLength, nameof(rowLength));
        if (caches.Length != positions.Length)
            throw new ArgumentException($"AppendToCachePerRow: {positions.Length} positions but {caches.Length} caches; give one cache per row.", nameof(caches));
        Require(source, (long)positions.Length * rowLength, nameof(source));
        for (int r = 0; r < positions.Length; r++)
        {
            if (positions[r] < 0 || ((long)positions[r] + 1) * rowLength > caches[r].Length)
                throw new ArgumentOutOfRangeException(nameof(positions), positions[r],
                    $"Row {r}'s position is outside its cache ({caches[r].Length} floats, rows of {rowLength}).");
            if (ReferenceEquals(source, caches[r]))
                throw new ArgumentException("AppendToCachePerRow needs a source distinct from every cache.", nameof(caches));
        }
        AppendToCachePerRowCore(source, caches, positions, rowLength);
    }

    /// <inheritdoc />
    public abstract void Dispose();

    /// <summary><see cref="AttentionPerRow"/>, every row's lengths checked against its buffers. This default throws
    /// <see cref="NotSupportedException"/>: a backend that has the op overrides it (and <see cref="Supports"/> with it).</summary>
    protected virtual void AttentionPerRowCore(IBuffer query, ReadOnlySpan<IBuffer> keys, ReadOnlySpan<IBuffer> values, IBuffer output,
        int heads, int headDim, ReadOnlySpan<int> keyLengths, IBuffer? bias, int biasLength, ReadOnlySpan<IBuffer?> keyMasks) =>
        throw NotSupported(BackendOp.AttentionPerRow);

    /// <summary><see cref="AppendToCachePerRow"/>, positions within the caches. This default throws
    /// <see cref="NotSupportedException"/>, as <see cref="AttentionPerRowCore"/>.</summary>
    protected virtual void AppendToCachePerRowCore(IBuffer source, ReadOnlySpan<IBuffer> caches, ReadOnlySpan<int> positions, int rowLength) =>
        throw NotSupported(BackendOp.AppendToCachePerRow);

    /// <summary><see cref="Allocate"/>, length checked.</summary>
    protected abstract IBuffer AllocateCore(int length);
    /// <summary><see cref="Upload"/>, range checked.</summary>
    protected abstract void UploadCore(ReadOnlySpan<float> source, IBuffer destination, int offset);
    /// <summary><see cref="Download"/>, range checked.</summary>
    protected abstract void DownloadCore(IBuffer source, Span<float> destination, int offset);
    /// <summary><see cref="Embedding"/>, ids in range and output large enough.</summary>
    protected abstract void EmbeddingCore(IWeight table, ReadOnlySpan<int> ids, IBuffer output);
    /// <summary><see cref="Linear"/>, sizes checked, input and output distinct.</summary>
    protected abstract void LinearCore(IBuffer input, IWeight weight, IBuffer output, int rows, bool accumulate);
    /// <summary><see cref="Linears"/>, each pair checked as for Linear, in_features shared, outputs distinct. This
    /// default runs <see cref="LinearCore"/> once per weight.</summary>
    protected virtual void LinearsCore(IBuffer input, ReadOnlySpan<IWeight> weights, ReadOnlySpan<IBuffer> outputs, int rows)
    {
        for (int i = 0; i < weights.Length; i++) LinearCore(input, weights[i], outputs[i], rows, accumulate: false);
    }
    /// <summary><see cref="RmsNorm"/>, sizes checked.</summary>
    protected abstract void RmsNormCore(IBuffer input, IWeight weight, IBuffer output, int rows, float epsilon);
    /// <summary><see cref="Activate"/>, kind known and sizes checked.</summary>
    protected abstract void ActivateCore(IBuffer gate, IBuffer? up, ActivationKind kind, int length);
    /// <summary><see cref="Add"/>, sizes checked.</summary>
    protected abstract void AddCore(IBuffer source, IBuffer destination, int length);
    /// <summary><see cref="Scale"/>, size checked.</summary>
    protected abstract void ScaleCore(IBuffer buffer, float factor, int length);
    /// <summary><see cref="PositionBias"/>, buckets within the table and output large enough.</summary>
    protected abstract void PositionBiasCore(IWeight table, IBuffer output, int queryLength, int keyLength, int queryOffset,
        bool bidirectional, int numBuckets, int maxDistance);
    /// <summary><see cref="Attention"/>, shape and sizes checked, output distinct from the inputs.</summary>
    protected abstract void AttentionCore(IBuffer query, IBuffer key, IBuffer value, IBuffer output, AttentionShape shape,
        IBuffer? bias, IBuffer? keyMask);
    /// <summary><see cref="AppendToCache"/>, rows within capacity and sizes checked.</summary>
    protected abstract void AppendToCacheCore(IBuffer source, IBuffer cache, int batch, int length, int capacity, int position, int rowLength);
    /// <summary><see cref="GatherRows"/>, buffers distinct and every row inside them.</summary>
    protected abstract void GatherRowsCore(IBuffer source, IBuffer destination, ReadOnlySpan<int> sourceRows, int rowLength, int rowStride);
    /// <summary><see cref="ArgMax"/>, sizes checked.</summary>
    protected abstract void ArgMaxCore(IBuffer input, int rows, int cols, Span<int> result);

    /// <summary>(rows, cols) of a weight: the last dimension and the product of the others.</summary>
    private static (int Rows, int Cols) Matrix(IWeight weight)
    {
        IReadOnlyList<int> shape = weight.Shape;
        if (shape.Count == 0) return (1, 1);
        long rows = 1;
        for (int i = 0; i < shape.Count - 1; i++) rows *= shape[i];
        return ((int)Math.Min(rows, int.MaxValue), shape[^1]);
    }

    /// <summary>Linear's check, for a backend's own overloads of it (a chosen kernel, say).</summary>
    protected static void CheckLinear(IBuffer input, IWeight weight, IBuffer output, int rows, string outputName)
    {
        RequireCount(rows, nameof(rows));
        (int outFeatures, int inFeatures) = Matrix(weight);
        Require(input, (long)rows * inFeatures, nameof(input));
        Require(output, (long)rows * outFeatures, outputName);
        if (ReferenceEquals(input, output))
            throw new ArgumentException($"Linear with '{weight.Name}' reads its input while writing its output; give them distinct buffers.", outputName);
    }

    private static void RequireCount(int count, string name)
    {
        if (count < 0) throw new ArgumentOutOfRangeException(name, count, $"{name} must not be negative.");
    }

    private static void Require(IBuffer buffer, long floats, string name)
    {
        if (buffer.Length < floats)
            throw new ArgumentException($"Buffer '{name}' holds {buffer.Length} floats but the op needs {floats}; allocate it at the largest size used.", name);
    }

    private static void CheckRange(IBuffer buffer, int offset, int length, string name)
    {
        if (offset < 0 || (long)offset + length > buffer.Length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"{length} floats at offset {offset} do not fit {name} ({buffer.Length} floats).");
    }
}
