// The backend interface: the only thing the T5 model calls to compute. It knows nothing about T5's structure;
// it offers buffers, weights and the handful of ops a T5 forward pass is made of. Implementations: Reference
// (scalar, the twin every fast kernel is tested against), Cpu (SIMD + threads), and the ILGPU backend.
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
    /// and of dispatching it; every output equals what <see cref="Linear"/> gives for its weight alone. This default
    /// calls <see cref="Linear"/> once per weight.</summary>
    void Linears(IBuffer input, ReadOnlySpan<IWeight> weights, ReadOnlySpan<IBuffer> outputs, int rows)
    {
        RequireOutputPerWeight(weights, outputs);
        for (int i = 0; i < weights.Length; i++) Linear(input, weights[i], outputs[i], rows);
    }

    /// <summary>The argument check every <see cref="Linears"/> starts with.</summary>
    internal static void RequireOutputPerWeight(ReadOnlySpan<IWeight> weights, ReadOnlySpan<IBuffer> outputs)
    {
        if (weights.Length != outputs.Length)
            throw new ArgumentException($"{weights.Length} weights but {outputs.Length} outputs; give one output per weight.", nameof(outputs));
    }

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
}
