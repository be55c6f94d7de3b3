// T5ForConditionalGeneration's forward pass, read like modeling_t5.py: T5Stack encoder and decoder of T5Blocks,
// each a pre-norm residual sublayer x = x + Sublayer(T5LayerNorm(x)). All arithmetic goes through IBackend; the module
// names (and which layers own a relative_attention_bias) come from T5Modules.
using ManagedT5.Adapters;
using ManagedT5.Kernels;
using ManagedT5.Loading;

namespace ManagedT5.Model;

/// <summary>Options for loading a model.</summary>
public sealed record T5ModelOptions
{
    /// <summary>How matrices are kept (null: as stored — F32 checkpoints stay F32, BF16 stay BF16).</summary>
    public WeightFormat? WeightFormat { get; init; }
    /// <summary>A LoRA adapter (<see cref="LoraAdapter.Load"/>) merged into the weights at load: each Linear it targets
    /// becomes W + scale·(B·A), computed in f32 before the conversion to <see cref="WeightFormat"/>. Null: none. To
    /// keep adapters apart and share one base model, load without one and call <see cref="T5Model.WithAdapter"/>.</summary>
    public LoraAdapter? Adapter { get; init; }
}

/// <summary>
/// A loaded T5 / Flan-T5 model on one backend. Immutable after loading: any number of threads may encode and decode
/// at once, each with its own <see cref="EncoderOutput"/> and <see cref="DecoderState"/>.
/// </summary>
public sealed class T5Model : IDisposable
{
    private readonly Checkpoint? _checkpoint;   // the memory map the CPU weights point into
    private readonly bool _ownsBackend;
    private readonly WeightFormat? _weightFormat;
    internal readonly T5Weights Weights;

    /// <summary>The architecture.</summary>
    public T5Config Config { get; }
    /// <summary>The backend every op runs on.</summary>
    public IBackend Backend { get; }
    /// <summary>Checkpoint tensors no module uses (reported, not fatal).</summary>
    public IReadOnlyList<string> UnexpectedTensors => Weights.UnexpectedTensors;
    /// <summary>Bytes of weights as the backend keeps them (for an adapter view: the ones it uses, its base's included).</summary>
    public long WeightBytes => Weights.ByteLength;
    /// <summary>Bytes of the weights this model made and frees when disposed: <see cref="WeightBytes"/> for a loaded
    /// model; for an adapter view (<see cref="WithAdapter"/>) only its merged copies of the Linears the adapter targets.</summary>
    public long OwnedWeightBytes => Weights.OwnedByteLength;
    /// <summary>The LoRA adapter merged into this model's weights (at load, or by <see cref="WithAdapter"/>), or null.</summary>
    public LoraAdapter? Adapter => Weights.Adapter;
    /// <summary>The module tree with HF's names: the checkpoint names the weights were bound by, and the names an
    /// <see cref="ITensorObserver"/> sees.</summary>
    public T5Modules Modules => Weights.Modules;
    /// <summary>False for an encoder-only checkpoint (T5EncoderModel): it can <see cref="Encode"/> but not decode.</summary>
    public bool HasDecoder => Modules.Decoder is not null;

    private T5Model(T5Config config, IBackend backend, bool ownsBackend, Checkpoint? checkpoint, T5Weights weights,
        WeightFormat? weightFormat)
    {
        _weightFormat = weightFormat;
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
        T5Weights weights = T5Weights.Bind(checkpoint, config, backend, options?.WeightFormat, options?.Adapter);
        return new T5Model(config, backend, ownsBackend, checkpoint, weights, options?.WeightFormat);
    }

    /// <summary>
    /// This model with a LoRA adapter, kept apart from it: a view whose Linears targeted by <paramref name="adapter"/> are
    /// merged copies (W + scale·(B·A) in f32 from the checkpoint, then in this model's weight format, exactly as
    /// <see cref="T5ModelOptions.Adapter"/> merges at load) and whose every other weight is this model's own, not a copy.
    /// The view adds only the bytes of those Linears (<see cref="OwnedWeightBytes"/>). Any number of views may share
    /// one base, and requests on the base and on views run concurrently. Dispose a view before its base: disposing it
    /// frees only its merged Linears; the base must outlive it.
    /// </summary>
    /// <exception cref="ModelLoadException">The adapter does not fit this model (the message names each module).</exception>
    /// <exception cref="InvalidOperationException">This model already has an adapter merged in.</exception>
    public T5Model WithAdapter(LoraAdapter adapter)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        if (Adapter is not null)
            throw new InvalidOperationException(
                $"This model already has the adapter from '{Adapter.Source}' merged in; load the base model without an adapter " +
                "to keep several adapters apart on it.");
        Checkpoint checkpoint = _checkpoint ?? throw new InvalidOperationException("This model has no checkpoint to merge from.");
        T5Weights weights = T5Weights.Bind(checkpoint, Config, Backend, _weightFormat, adapter, shareWith: Weights);
        return new T5Model(Config, Backend, ownsBackend: false, checkpoint: null, weights, _weightFormat);
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

        T5StackModule encoder = Modules.Encoder;
        UploadMask(attentionMask, mask);
        Backend.Embedding(Weights.Shared, inputIds, hidden);                       // x: [batch, seq, d_model]
        Observe(observer, encoder.EmbedTokens.Module, hidden, batch, seq, c.DModel);

        var shape = new AttentionShape(batch, c.NumHeads, c.DKv, seq, seq, seq);
        for (int i = 0; i < Weights.Encoder.Length; i++)
        {
            BlockWeights block = Weights.Encoder[i];
            T5BlockModule m = encoder.Blocks[i];
            // Block 0 (every block in umT5) owns relative_attention_bias; the blocks after it reuse the bias it makes.
            if (block.SelfAttention.RelativeAttentionBias is { } table)
                PositionBias(table, m.SelfAttention, work.Bias, seq, seq, past: 0, bidirectional: true, observer); // bias: [heads, seq, seq]
            // layer.0: x = x + o(Attention(q, k, v)) over LayerNorm(x)
            Backend.RmsNorm(hidden, block.SelfAttentionNorm, work.Normed, rows, c.LayerNormEpsilon);
            Observe(observer, m.SelfAttentionNorm.Module, work.Normed, batch, seq, c.DModel);
            SelfAttention(block.SelfAttention, m.SelfAttention, work, rows, shape, work.Key, work.Value, work.Bias, mask, observer);
            Backend.Linear(work.Attention, block.SelfAttention.O, hidden, rows, accumulate: true);
            // layer.1: x = x + FFN(LayerNorm(x))
            Backend.RmsNorm(hidden, block.FeedForwardNorm, work.Normed, rows, c.LayerNormEpsilon);
            Observe(observer, m.FeedForwardNorm.Module, work.Normed, batch, seq, c.DModel);
            FeedForward(block.FeedForward, m.FeedForward, work, hidden, rows, observer);
            if (i < Weights.Encoder.Length - 1) Observe(observer, m.Path, hidden, batch, seq, c.DModel);
        }

        Backend.RmsNorm(hidden, Weights.EncoderFinalNorm, hidden, rows, c.LayerNormEpsilon);
        Observe(observer, encoder.FinalLayerNorm.Module, hidden, batch, seq, c.DModel);
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
        RequireDecoder();
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
            AttentionWeights cross = Weights.Decoder[l].CrossAttention!;
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
        RequireDecoder();
        T5Config c = Config;
        T5StackModule decoder = Modules.Decoder!;
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
        Observe(observer, decoder.EmbedTokens.Module, work.Hidden, batch, length, c.DModel);

        var selfShape = new AttentionShape(batch, c.NumHeads, c.DKv, length, keys, state.Capacity, Causal: true, QueryOffset: past);
        var crossShape = new AttentionShape(batch, c.NumHeads, c.DKv, length, state.EncoderLength, state.EncoderLength);
        for (int l = 0; l < Weights.Decoder.Length; l++)
        {
            BlockWeights block = Weights.Decoder[l];
            T5BlockModule m = decoder.Blocks[l];
            // Block 0 (every block in umT5) makes the bias: unidirectional buckets, a cached step's query at position `past`.
            if (block.SelfAttention.RelativeAttentionBias is { } table)
                PositionBias(table, m.SelfAttention, work.Bias, length, keys, past, bidirectional: false, observer); // bias: [heads, length, past + length]
            // layer.0: causal self-attention; new keys/values are appended to the cache first.
            Backend.RmsNorm(work.Hidden, block.SelfAttentionNorm, work.Normed, rows, c.LayerNormEpsilon);
            Observe(observer, m.SelfAttentionNorm.Module, work.Normed, batch, length, c.DModel);
            Backend.Linears(work.Normed, [block.SelfAttention.Q, block.SelfAttention.K, block.SelfAttention.V],
                [work.Query, work.Key, work.Value], rows);
            Backend.AppendToCache(work.Key, state.SelfKeys[l], batch, length, state.Capacity, past, c.InnerDim);
            Backend.AppendToCache(work.Value, state.SelfValues[l], batch, length, state.Capacity, past, c.InnerDim);
            Observe(observer, m.SelfAttention.Q.Module, work.Query, batch, length, c.InnerDim);
            Observe(observer, m.SelfAttention.K.Module, work.Key, batch, length, c.InnerDim);
            Observe(observer, m.SelfAttention.V.Module, work.Value, batch, length, c.InnerDim);
            Backend.Attention(work.Query, state.SelfKeys[l], state.SelfValues[l], work.Attention, selfShape, work.Bias, null);
            Observe(observer, m.SelfAttention.Attention, work.Attention, batch, length, c.InnerDim);
            Backend.Linear(work.Attention, block.SelfAttention.O, work.Hidden, rows, accumulate: true);

            // layer.1: cross-attention over the encoder output (no position bias, only the padding mask).
            AttentionWeights cross = block.CrossAttention!;
            Backend.RmsNorm(work.Hidden, block.CrossAttentionNorm!, work.Normed, rows, c.LayerNormEpsilon);
            Observe(observer, m.CrossAttentionNorm!.Module, work.Normed, batch, length, c.DModel);
            Backend.Linear(work.Normed, cross.Q, work.Query, rows);
            Observe(observer, m.CrossAttention!.Q.Module, work.Query, batch, length, c.InnerDim);
            Backend.Attention(work.Query, state.CrossKeys[l], state.CrossValues[l], work.Attention, crossShape, null, state.EncoderMask);
            Observe(observer, m.CrossAttention.Attention, work.Attention, batch, length, c.InnerDim);
            Backend.Linear(work.Attention, cross.O, work.Hidden, rows, accumulate: true);

            // layer.2: feed-forward.
            Backend.RmsNorm(work.Hidden, block.FeedForwardNorm, work.Normed, rows, c.LayerNormEpsilon);
            Observe(observer, m.FeedForwardNorm.Module, work.Normed, batch, length, c.DModel);
            FeedForward(block.FeedForward, m.FeedForward, work, work.Hidden, rows, observer);
            if (l < Weights.Decoder.Length - 1) Observe(observer, m.Path, work.Hidden, batch, length, c.DModel);
        }

        Backend.RmsNorm(work.Hidden, Weights.DecoderFinalNorm!, work.Normed, rows, c.LayerNormEpsilon);
        Observe(observer, decoder.FinalLayerNorm.Module, work.Normed, batch, length, c.DModel);
        // Tied embeddings (original T5): logits = shared(x * d_model^-0.5). Untied (Flan-T5): lm_head(x).
        if (c.TieWordEmbeddings) Backend.Scale(work.Normed, 1f / MathF.Sqrt(c.DModel), rows * c.DModel);
        Backend.Linear(work.Normed, Weights.LmHead!, work.Logits, rows);               // logits: [batch, length, vocab]
        Observe(observer, Modules.LmHead!.Module, work.Logits, batch, length, c.VocabSize);
        state.Position = keys;
    }

    /// <summary>
    /// One decoder step for several independent sessions at once (continuous batching): row r feeds
    /// tokens[r] to states[r] (batch 1, each at its own position, over its own encoder output). The linears and the
    /// feed-forward run once over every row; self- and cross-attention run per row against the row's own caches
    /// (<see cref="IBackend.AttentionPerRow"/>), the self-attention bias computed once for the longest row and read
    /// right-aligned by the shorter ones. Logits land in rows.Work.Logits [states, vocab] (see
    /// <see cref="DecoderRows.LogitsOf"/>). A backend without the per-row ops decodes each row alone instead.
    /// </summary>
    internal void DecodeRows(DecoderRows rows, ReadOnlySpan<DecoderState> states, ReadOnlySpan<int> tokens)
    {
        RequireDecoder();
        int count = states.Length;
        if (count < 1 || count > rows.MaxRows || tokens.Length != count)
            throw new ArgumentException($"Expected 1 to {rows.MaxRows} rows with one token each, got {count} rows and {tokens.Length} tokens.", nameof(tokens));
        for (int r = 0; r < count; r++)
            if (states[r].Batch != 1 || states[r].Position >= states[r].Capacity || states[r].Capacity > rows.KeyCapacity && rows.Batched)
                throw new ArgumentException($"Row {r}'s state is not a batch-1 state with room for one more position within the rows' key capacity.", nameof(states));
        if (!rows.Batched)
        {
            for (int r = 0; r < count; r++) Decode(states[r], tokens.Slice(r, 1), 1);
            return;
        }
        ValidateIds(tokens, "decoder token");
        T5Config c = Config;
        Workspace work = rows.Work;
        int longest = 0;
        for (int r = 0; r < count; r++)
        {
            rows.Positions[r] = states[r].Position;
            rows.KeyLengths[r] = states[r].Position + 1;                            // a step's query sees every key up to it
            rows.EncoderLengths[r] = states[r].EncoderLength;
            rows.EncoderMasks[r] = states[r].EncoderMask;
            longest = Math.Max(longest, rows.KeyLengths[r]);
        }
        ReadOnlySpan<int> positions = rows.Positions.AsSpan(0, count), keyLengths = rows.KeyLengths.AsSpan(0, count);
        ReadOnlySpan<IBuffer> selfKeys = rows.SelfKeys.AsSpan(0, count), selfValues = rows.SelfValues.AsSpan(0, count);
        ReadOnlySpan<IBuffer> crossKeys = rows.CrossKeys.AsSpan(0, count), crossValues = rows.CrossValues.AsSpan(0, count);

        Backend.Embedding(Weights.Shared, tokens, work.Hidden);                          // x: [count, d_model]
        for (int l = 0; l < Weights.Decoder.Length; l++)
        {
            BlockWeights block = Weights.Decoder[l];
            for (int r = 0; r < count; r++)
            {
                rows.SelfKeys[r] = states[r].SelfKeys[l];                                // [capacity_r, inner]
                rows.SelfValues[r] = states[r].SelfValues[l];
                rows.CrossKeys[r] = states[r].CrossKeys[l];                              // [enc_seq_r, inner]
                rows.CrossValues[r] = states[r].CrossValues[l];
            }
            // The bias of a query at position longest - 1 over keys 0..longest-1: bias[h, j] = table[bucket(j - (longest - 1)), h].
            // A row at position p reads its last p + 1 columns: bucket(j' - p) for its keys j' = j - (longest - 1 - p).
            if (block.SelfAttention.RelativeAttentionBias is { } table)
                Backend.PositionBias(table, work.Bias, 1, longest, longest - 1, bidirectional: false, c.RelativeAttentionNumBuckets,
                    c.RelativeAttentionMaxDistance);                                     // bias: [heads, longest]
            // layer.0: causal self-attention; each row's new key/value appended to its own cache first.
            Backend.RmsNorm(work.Hidden, block.SelfAttentionNorm, work.Normed, count, c.LayerNormEpsilon);
            Backend.Linears(work.Normed, [block.SelfAttention.Q, block.SelfAttention.K, block.SelfAttention.V],
                [work.Query, work.Key, work.Value], count);
            Backend.AppendToCachePerRow(work.Key, selfKeys, positions, c.InnerDim);
            Backend.AppendToCachePerRow(work.Value, selfValues, positions, c.InnerDim);
            Backend.AttentionPerRow(work.Query, selfKeys, selfValues, work.Attention, c.NumHeads, c.DKv, keyLengths, work.Bias, longest, default);
            Backend.Linear(work.Attention, block.SelfAttention.O, work.Hidden, count, accumulate: true);

            // layer.1: cross-attention, each row over its own encoder output and padding mask.
            AttentionWeights cross = block.CrossAttention!;
            Backend.RmsNorm(work.Hidden, block.CrossAttentionNorm!, work.Normed, count, c.LayerNormEpsilon);
            Backend.Linear(work.Normed, cross.Q, work.Query, count);
            Backend.AttentionPerRow(work.Query, crossKeys, crossValues, work.Attention, c.NumHeads, c.DKv,
                rows.EncoderLengths.AsSpan(0, count), null, 0, rows.EncoderMasks.AsSpan(0, count));
            Backend.Linear(work.Attention, cross.O, work.Hidden, count, accumulate: true);

            // layer.2: feed-forward.
            Backend.RmsNorm(work.Hidden, block.FeedForwardNorm, work.Normed, count, c.LayerNormEpsilon);
            FeedForward(block.FeedForward, Modules.Decoder!.Blocks[l].FeedForward, work, work.Hidden, count, null);
        }
        Backend.RmsNorm(work.Hidden, Weights.DecoderFinalNorm!, work.Normed, count, c.LayerNormEpsilon);
        if (c.TieWordEmbeddings) Backend.Scale(work.Normed, 1f / MathF.Sqrt(c.DModel), count * c.DModel);
        Backend.Linear(work.Normed, Weights.LmHead!, work.Logits, count);                // logits: [count, vocab]
        for (int r = 0; r < count; r++) states[r].Position++;
    }

    // ---------------------------------------------------------------- sublayers

    /// <summary>T5Attention.compute_bias: the relative_attention_bias table [num_buckets, num_heads] looked up by each
    /// (query, key) pair's RelativePositionBucket, into bias [heads, queries, keys].</summary>
    private void PositionBias(IWeight table, T5AttentionModule m, IBuffer bias, int queries, int keys, int past, bool bidirectional,
        ITensorObserver? observer)
    {
        Backend.PositionBias(table, bias, queries, keys, past, bidirectional, Config.RelativeAttentionNumBuckets, Config.RelativeAttentionMaxDistance);
        Observe(observer, m.PositionBias, bias, Config.NumHeads, queries, keys);
    }

    /// <summary>T5Attention over the normed input (self-attention): q, k, v projections, then attention.</summary>
    private void SelfAttention(AttentionWeights w, T5AttentionModule m, Workspace work, int rows, AttentionShape shape, IBuffer keys,
        IBuffer values, IBuffer bias, IBuffer mask, ITensorObserver? observer)
    {
        Backend.Linears(work.Normed, [w.Q, w.K, w.V], [work.Query, keys, values], rows); // q, k, v: [batch, seq, heads * d_kv]
        Observe(observer, m.Q.Module, work.Query, shape.Batch, shape.QueryLength, shape.InnerDim);
        Observe(observer, m.K.Module, keys, shape.Batch, shape.QueryLength, shape.InnerDim);
        Observe(observer, m.V.Module, values, shape.Batch, shape.QueryLength, shape.InnerDim);
        // scores = q k^T + bias (T5: no 1/sqrt(d_kv)); softmax over keys in fp32; weighted sum of v
        Backend.Attention(work.Query, keys, values, work.Attention, shape, bias, mask);
        Observe(observer, m.Attention, work.Attention, shape.Batch, shape.QueryLength, shape.InnerDim);
    }

    /// <summary>T5DenseGatedActDense: wo(act(wi_0 x) * wi_1 x), or T5DenseActDense: wo(act(wi x)); added to the residual.</summary>
    private void FeedForward(FeedForwardWeights w, T5FeedForwardModule m, Workspace work, IBuffer residual, int rows, ITensorObserver? observer)
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
        Observe(observer, m.Act, work.Gate, rows, c.DFf);
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

    // Names are made once (T5Modules) and shapes boxed into arrays only when someone observes: the token loop allocates nothing.
    private static void Observe(ITensorObserver? observer, string name, IBuffer buffer, params ReadOnlySpan<int> shape)
    {
        if (observer is not null) observer.Observe(name, buffer, shape.ToArray());
    }

    /// <summary>Decoding needs the decoder stack, which an encoder-only checkpoint does not have.</summary>
    private void RequireDecoder()
    {
        if (!HasDecoder)
            throw new NotSupportedException(
                "This model was loaded from an encoder-only checkpoint (config.json architectures: T5EncoderModel; no decoder.* " +
                "or lm_head weights): it can Encode but not decode or generate. Load a T5ForConditionalGeneration checkpoint to generate.");
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Weights.Dispose();
        _checkpoint?.Dispose();
        if (_ownsBackend) Backend.Dispose();
    }
}
