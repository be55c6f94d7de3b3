// T5ForConditionalGeneration's forward pass, read like modeling_t5.py: T5Stack encoder and decoder of T5Blocks,
// each a pre-norm residual sublayer x = x + Sublayer(T5LayerNorm(x)). All arithmetic goes through IBackend.
using ManagedT5.Kernels;
using ManagedT5.Loading;

namespace ManagedT5.Model;

/// <summary>Options for loading a model.</summary>
public sealed record T5ModelOptions
{
    /// <summary>How matrices are kept (null: as stored — F32 checkpoints stay F32, BF16 stay BF16).</summary>
    public WeightFormat? WeightFormat { get; init; }
}

/// <summary>
/// A loaded T5 / Flan-T5 model on one backend. Immutable after loading: any number of threads may encode and decode
/// at once, each with its own <see cref="EncoderOutput"/> and <see cref="DecoderState"/>.
/// </summary>
public sealed class T5Model : IDisposable
{
    private readonly Checkpoint? _checkpoint;   // the memory map the CPU weights point into
    private readonly bool _ownsBackend;
    internal readonly T5Weights Weights;

    /// <summary>The architecture.</summary>
    public T5Config Config { get; }
    /// <summary>The backend every op runs on.</summary>
    public IBackend Backend { get; }
    /// <summary>Checkpoint tensors no module uses (reported, not fatal).</summary>
    public IReadOnlyList<string> UnexpectedTensors => Weights.UnexpectedTensors;
    /// <summary>Bytes of weights as the backend keeps them.</summary>
    public long WeightBytes => Weights.ByteLength;

    // HF module paths, made once ("encoder.block.3", "encoder.block.3.layer.").
    private readonly string[] EncoderBlockNames, EncoderLayerPrefixes, DecoderBlockNames, DecoderLayerPrefixes;

    private T5Model(T5Config config, IBackend backend, bool ownsBackend, Checkpoint? checkpoint, T5Weights weights)
    {
        EncoderBlockNames = Enumerable.Range(0, config.NumLayers).Select(i => $"encoder.block.{i}").ToArray();
        EncoderLayerPrefixes = EncoderBlockNames.Select(n => n + ".layer.").ToArray();
        DecoderBlockNames = Enumerable.Range(0, config.NumDecoderLayers).Select(i => $"decoder.block.{i}").ToArray();
        DecoderLayerPrefixes = DecoderBlockNames.Select(n => n + ".layer.").ToArray();
        Config = config;
        Backend = backend;
        _ownsBackend = ownsBackend;
        _checkpoint = checkpoint;
        Weights = weights;
    }

    /// <summary>Loads config.json and the safetensors weights of <paramref name="directory"/> onto <paramref name="backend"/>.</summary>
    public static T5Model Load(string directory, IBackend backend, T5ModelOptions? options = null, bool ownsBackend = false)
    {
        if (!Directory.Exists(directory))
            throw new ModelLoadException($"Model folder '{directory}' does not exist.", directory);
        T5Config config = T5Config.Load(Path.Combine(directory, "config.json"));
        Checkpoint checkpoint = Checkpoint.Open(directory);
        try
        {
            return FromCheckpoint(config, checkpoint, backend, options, ownsBackend);
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    /// <summary>Builds a model from an open checkpoint, which the model then owns.</summary>
    public static T5Model FromCheckpoint(T5Config config, Checkpoint checkpoint, IBackend backend,
        T5ModelOptions? options = null, bool ownsBackend = false)
    {
        T5Weights weights = T5Weights.Bind(checkpoint, config, backend, options?.WeightFormat);
        return new T5Model(config, backend, ownsBackend, checkpoint, weights);
    }

    // ---------------------------------------------------------------- encoder

    /// <summary>
    /// Runs the encoder. inputIds and attentionMask are [batch, seq] row-major (mask 1 = token, 0 = padding).
    /// </summary>
    public EncoderOutput Encode(ReadOnlySpan<int> inputIds, ReadOnlySpan<int> attentionMask, int batch,
        ITensorObserver? observer = null)
    {
        int seq = ValidateBatch(inputIds, attentionMask, batch);
        T5Config c = Config;
        if (RequestSizes.Encoder(c, batch, seq).Check() is string tooBig)
            throw new ArgumentException($"inputIds: {batch} row(s) of {seq} tokens: {tooBig}. Encode fewer or shorter rows.", nameof(inputIds));
        int rows = batch * seq;                                                   // fits: checked just above
        IBuffer hidden = Backend.Allocate(checked(rows * c.DModel));
        IBuffer mask = Backend.Allocate(rows);
        using var work = new Workspace(Backend, c, rows, checked(seq * seq), withLogits: false);

        UploadMask(attentionMask, mask);
        Backend.Embedding(Weights.Shared, inputIds, hidden);                       // x: [batch, seq, d_model]
        Observe(observer, "encoder.embed_tokens", "", hidden, batch, seq, c.DModel);

        // Only block 0 owns relative_attention_bias; every block reuses the bias it makes (bidirectional buckets).
        Backend.PositionBias(Weights.EncoderRelativeBias, work.Bias, seq, seq, 0, bidirectional: true,
            c.RelativeAttentionNumBuckets, c.RelativeAttentionMaxDistance);       // bias: [heads, seq, seq]
        Observe(observer, "encoder.block.0.layer.0.SelfAttention.position_bias", "", work.Bias, c.NumHeads, seq, seq);

        var shape = new AttentionShape(batch, c.NumHeads, c.DKv, seq, seq, seq);
        for (int i = 0; i < Weights.Encoder.Length; i++)
        {
            EncoderBlockWeights block = Weights.Encoder[i];
            string p = EncoderLayerPrefixes[i];
            // layer.0: x = x + o(Attention(q, k, v)) over LayerNorm(x)
            Backend.RmsNorm(hidden, block.SelfAttentionNorm, work.Normed, rows, c.LayerNormEpsilon);
            Observe(observer, p, "0.layer_norm", work.Normed, batch, seq, c.DModel);
            SelfAttention(block.SelfAttention, work, rows, shape, work.Key, work.Value, work.Bias, mask, observer, p, "0.SelfAttention");
            Backend.Linear(work.Attention, block.SelfAttention.O, hidden, rows, accumulate: true);
            // layer.1: x = x + FFN(LayerNorm(x))
            Backend.RmsNorm(hidden, block.FeedForwardNorm, work.Normed, rows, c.LayerNormEpsilon);
            Observe(observer, p, "1.layer_norm", work.Normed, batch, seq, c.DModel);
            FeedForward(block.FeedForward, work, hidden, rows, observer, p, "1.DenseReluDense");
            if (i < Weights.Encoder.Length - 1) Observe(observer, EncoderBlockNames[i], "", hidden, batch, seq, c.DModel);
        }

        Backend.RmsNorm(hidden, Weights.EncoderFinalNorm, hidden, rows, c.LayerNormEpsilon);
        Observe(observer, "encoder.final_layer_norm", "", hidden, batch, seq, c.DModel);
        return new EncoderOutput(batch, seq, c.DModel, hidden, mask);
    }

    // ---------------------------------------------------------------- decoder

    /// <summary>
    /// Starts decoding over <paramref name="encoder"/>: allocates the KV cache for <paramref name="capacity"/> positions
    /// and computes every layer's cross-attention K/V once. <paramref name="expand"/> repeats each batch row that many
    /// times (beam search: prompts x beams rows, prompt-major).
    /// </summary>
    public DecoderState StartDecoder(EncoderOutput encoder, int capacity, int expand = 1, int maxTokensPerCall = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(expand, 1);
        T5Config c = Config;
        int tokensPerCall = Math.Max(1, Math.Min(maxTokensPerCall, capacity));
        long rowCount = (long)encoder.Batch * expand;
        string? tooBig = rowCount > int.MaxValue ? $"{rowCount:N0} rows are more than a batch can hold"
            : RequestSizes.Decoder(c, (int)rowCount, encoder.SequenceLength, capacity, tokensPerCall, expand > 1).Check();
        if (tooBig is not null)
            throw new ArgumentException($"expand: {encoder.Batch} row(s) x {expand} with a capacity of {capacity}: {tooBig}. " +
                "Use fewer rows or a smaller capacity.", nameof(expand));
        int batch = encoder.Batch * expand, seq = encoder.SequenceLength;
        IBuffer hidden = encoder.Hidden;
        IBuffer mask = Backend.Allocate(checked(batch * seq));
        IBuffer? expanded = null;
        if (expand == 1)
        {
            Backend.GatherRows(encoder.Mask, mask, Identity(batch), seq);
        }
        else
        {
            int[] rows = new int[batch];
            for (int r = 0; r < batch; r++) rows[r] = r / expand;
            Backend.GatherRows(encoder.Mask, mask, rows, seq);
            expanded = Backend.Allocate(checked(batch * seq * c.DModel));
            Backend.GatherRows(encoder.Hidden, expanded, rows, seq * c.DModel);
            hidden = expanded;
        }

        var state = new DecoderState(Backend, c, batch, capacity, seq, mask, tokensPerCall);
        for (int l = 0; l < c.NumDecoderLayers; l++)
        {
            AttentionWeights cross = Weights.Decoder[l].CrossAttention;
            Backend.Linears(hidden, [cross.K, cross.V], [state.CrossKeys[l], state.CrossValues[l]], batch * seq); // k, v: [batch, enc_seq, inner]
        }
        expanded?.Dispose();
        return state;
    }

    /// <summary>
    /// Feeds <paramref name="tokens"/> ([batch, length], row-major) to the decoder after the positions already in the
    /// cache, appending their keys/values. Logits land in <see cref="DecoderState.Logits"/> [batch, length, vocab].
    /// Step-by-step calls and one teacher-forced call give the same logits.
    /// </summary>
    public void Decode(DecoderState state, ReadOnlySpan<int> tokens, int length, ITensorObserver? observer = null)
    {
        T5Config c = Config;
        int batch = state.Batch, past = state.Position;
        if (length < 1 || tokens.Length != (long)batch * length)
            throw new ArgumentException($"Expected {batch} x {length} decoder tokens, got {tokens.Length}.", nameof(tokens));
        if (past + length > state.Capacity)
            throw new ArgumentException(
                $"Decoding {length} more token(s) after {past} exceeds the state's capacity of {state.Capacity}; start the decoder with a larger capacity.",
                nameof(length));
        ValidateIds(tokens, "decoder token");
        state.EnsureWork(length);
        Workspace work = state.Work;
        int rows = batch * length, keys = past + length;

        Backend.Embedding(Weights.Shared, tokens, work.Hidden);                       // x: [batch, length, d_model]
        Observe(observer, "decoder.embed_tokens", "", work.Hidden, batch, length, c.DModel);
        // Unidirectional buckets; a cached step's query sits at absolute position `past`.
        Backend.PositionBias(Weights.DecoderRelativeBias, work.Bias, length, keys, past, bidirectional: false,
            c.RelativeAttentionNumBuckets, c.RelativeAttentionMaxDistance);           // bias: [heads, length, past + length]
        Observe(observer, "decoder.block.0.layer.0.SelfAttention.position_bias", "", work.Bias, c.NumHeads, length, keys);

        var selfShape = new AttentionShape(batch, c.NumHeads, c.DKv, length, keys, state.Capacity, Causal: true, QueryOffset: past);
        var crossShape = new AttentionShape(batch, c.NumHeads, c.DKv, length, state.EncoderLength, state.EncoderLength);
        for (int l = 0; l < Weights.Decoder.Length; l++)
        {
            DecoderBlockWeights block = Weights.Decoder[l];
            string p = DecoderLayerPrefixes[l];
            // layer.0: causal self-attention; new keys/values are appended to the cache first.
            Backend.RmsNorm(work.Hidden, block.SelfAttentionNorm, work.Normed, rows, c.LayerNormEpsilon);
            Observe(observer, p, "0.layer_norm", work.Normed, batch, length, c.DModel);
            Backend.Linears(work.Normed, [block.SelfAttention.Q, block.SelfAttention.K, block.SelfAttention.V],
                [work.Query, work.Key, work.Value], rows);
            Backend.AppendToCache(work.Key, state.SelfKeys[l], batch, length, state.Capacity, past, c.InnerDim);
            Backend.AppendToCache(work.Value, state.SelfValues[l], batch, length, state.Capacity, past, c.InnerDim);
            Observe(observer, p, "0.SelfAttention.q", work.Query, batch, length, c.InnerDim);
            Observe(observer, p, "0.SelfAttention.k", work.Key, batch, length, c.InnerDim);
            Observe(observer, p, "0.SelfAttention.v", work.Value, batch, length, c.InnerDim);
            Backend.Attention(work.Query, state.SelfKeys[l], state.SelfValues[l], work.Attention, selfShape, work.Bias, null);
            Observe(observer, p, "0.SelfAttention.attention", work.Attention, batch, length, c.InnerDim);
            Backend.Linear(work.Attention, block.SelfAttention.O, work.Hidden, rows, accumulate: true);

            // layer.1: cross-attention over the encoder output (no position bias, only the padding mask).
            Backend.RmsNorm(work.Hidden, block.CrossAttentionNorm, work.Normed, rows, c.LayerNormEpsilon);
            Observe(observer, p, "1.layer_norm", work.Normed, batch, length, c.DModel);
            Backend.Linear(work.Normed, block.CrossAttention.Q, work.Query, rows);
            Observe(observer, p, "1.EncDecAttention.q", work.Query, batch, length, c.InnerDim);
            Backend.Attention(work.Query, state.CrossKeys[l], state.CrossValues[l], work.Attention, crossShape, null, state.EncoderMask);
            Observe(observer, p, "1.EncDecAttention.attention", work.Attention, batch, length, c.InnerDim);
            Backend.Linear(work.Attention, block.CrossAttention.O, work.Hidden, rows, accumulate: true);

            // layer.2: feed-forward.
            Backend.RmsNorm(work.Hidden, block.FeedForwardNorm, work.Normed, rows, c.LayerNormEpsilon);
            Observe(observer, p, "2.layer_norm", work.Normed, batch, length, c.DModel);
            FeedForward(block.FeedForward, work, work.Hidden, rows, observer, p, "2.DenseReluDense");
            if (l < Weights.Decoder.Length - 1) Observe(observer, DecoderBlockNames[l], "", work.Hidden, batch, length, c.DModel);
        }

        Backend.RmsNorm(work.Hidden, Weights.DecoderFinalNorm, work.Normed, rows, c.LayerNormEpsilon);
        Observe(observer, "decoder.final_layer_norm", "", work.Normed, batch, length, c.DModel);
        // Tied embeddings (original T5): logits = shared(x * d_model^-0.5). Untied (Flan-T5): lm_head(x).
        if (c.TieWordEmbeddings) Backend.Scale(work.Normed, 1f / MathF.Sqrt(c.DModel), rows * c.DModel);
        Backend.Linear(work.Normed, Weights.LmHead, work.Logits, rows);                // logits: [batch, length, vocab]
        Observe(observer, "lm_head", "", work.Logits, batch, length, c.VocabSize);
        state.Position = keys;
    }

    // ---------------------------------------------------------------- sublayers

    /// <summary>T5Attention over the normed input (self-attention): q, k, v projections, then attention.</summary>
    private void SelfAttention(AttentionWeights w, Workspace work, int rows, AttentionShape shape, IBuffer keys, IBuffer values,
        IBuffer bias, IBuffer mask, ITensorObserver? observer, string prefix, string name)
    {
        Backend.Linears(work.Normed, [w.Q, w.K, w.V], [work.Query, keys, values], rows); // q, k, v: [batch, seq, heads * d_kv]
        Observe(observer, prefix, name, ".q", work.Query, shape.Batch, shape.QueryLength, shape.InnerDim);
        Observe(observer, prefix, name, ".k", keys, shape.Batch, shape.QueryLength, shape.InnerDim);
        Observe(observer, prefix, name, ".v", values, shape.Batch, shape.QueryLength, shape.InnerDim);
        // scores = q k^T + bias (T5: no 1/sqrt(d_kv)); softmax over keys in fp32; weighted sum of v
        Backend.Attention(work.Query, keys, values, work.Attention, shape, bias, mask);
        Observe(observer, prefix, name, ".attention", work.Attention, shape.Batch, shape.QueryLength, shape.InnerDim);
    }

    /// <summary>T5DenseGatedActDense: wo(act(wi_0 x) * wi_1 x), or T5DenseActDense: wo(act(wi x)); added to the residual.</summary>
    private void FeedForward(FeedForwardWeights w, Workspace work, IBuffer residual, int rows, ITensorObserver? observer, string prefix, string name)
    {
        T5Config c = Config;
        if (c.IsGatedAct)
        {
            Backend.Linears(work.Normed, [w.Wi0!, w.Wi1!], [work.Gate, work.Up], rows); // gate, up: [rows, d_ff]
            Backend.Activate(work.Gate, work.Up, c.DenseActivation, rows * c.DFf);
        }
        else
        {
            Backend.Linear(work.Normed, w.Wi!, work.Gate, rows);
            Backend.Activate(work.Gate, null, c.DenseActivation, rows * c.DFf);
        }
        Observe(observer, prefix, name, ".act", work.Gate, rows, c.DFf);
        Backend.Linear(work.Gate, w.Wo, residual, rows, accumulate: true);
    }

    // ---------------------------------------------------------------- helpers

    private int ValidateBatch(ReadOnlySpan<int> inputIds, ReadOnlySpan<int> attentionMask, int batch)
    {
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), batch, "The batch must hold at least one sequence.");
        if (inputIds.Length == 0 || inputIds.Length % batch != 0)
            throw new ArgumentException($"inputIds has {inputIds.Length} ids, which is not {batch} non-empty rows.", nameof(inputIds));
        if (attentionMask.Length != inputIds.Length)
            throw new ArgumentException($"attentionMask has {attentionMask.Length} entries but inputIds has {inputIds.Length}.", nameof(attentionMask));
        int seq = inputIds.Length / batch;
        for (int b = 0; b < batch; b++)
        {
            bool any = false;
            for (int t = 0; t < seq; t++)
            {
                int m = attentionMask[b * seq + t];
                if (m is not (0 or 1))
                    throw new ArgumentException($"attentionMask[{b}, {t}] is {m}; it must be 0 or 1.", nameof(attentionMask));
                any |= m == 1;
            }
            if (!any) throw new ArgumentException($"Row {b} of attentionMask masks every position; each row needs a token.", nameof(attentionMask));
        }
        ValidateIds(inputIds, "input id");
        return seq;
    }

    private void ValidateIds(ReadOnlySpan<int> ids, string what)
    {
        for (int i = 0; i < ids.Length; i++)
            if ((uint)ids[i] >= (uint)Config.VocabSize)
                throw new ArgumentOutOfRangeException(nameof(ids), ids[i],
                    $"The {what} at position {i} is {ids[i]}; ids must be in [0, {Config.VocabSize}).");
    }

    private void UploadMask(ReadOnlySpan<int> attentionMask, IBuffer mask)
    {
        float[] values = new float[attentionMask.Length];
        for (int i = 0; i < values.Length; i++) values[i] = attentionMask[i];
        Backend.Upload(values, mask);
    }

    private static int[] Identity(int n)
    {
        int[] rows = new int[n];
        for (int i = 0; i < n; i++) rows[i] = i;
        return rows;
    }

    // Names are joined and shapes boxed into arrays only when someone observes: the token loop allocates nothing.
    private static void Observe(ITensorObserver? observer, string prefix, string suffix, IBuffer buffer, params ReadOnlySpan<int> shape)
    {
        if (observer is not null) observer.Observe(prefix + suffix, buffer, shape.ToArray());
    }

    private static void Observe(ITensorObserver? observer, string prefix, string name, string suffix, IBuffer buffer, params ReadOnlySpan<int> shape)
    {
        if (observer is not null) observer.Observe(prefix + name + suffix, buffer, shape.ToArray());
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Weights.Dispose();
        _checkpoint?.Dispose();
        if (_ownsBackend) Backend.Dispose();
    }
}
