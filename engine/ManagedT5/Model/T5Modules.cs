// T5's module tree with HF's names (modeling_t5.py), written down once: every parameter with its shape from the config,
// and the names under which the forward pass shows its intermediate tensors. Weight binding (T5Weights), the
// observer names (T5Model), `managedt5 trace`, the bench's random checkpoint and the parity tests all read it.
namespace ManagedT5.Model;

/// <summary>How a parameter is used, which decides how it is kept: matrices that are multiplied take the chosen weight
/// format (bf16, int8, ...); norms and bias tables stay fp32.</summary>
public enum T5ParameterRole
{
    /// <summary>A Linear or Embedding matrix [out_features, in_features].</summary>
    Matrix,
    /// <summary>T5LayerNorm's scale [d_model].</summary>
    Norm,
    /// <summary>relative_attention_bias [num_buckets, num_heads], looked up rather than multiplied.</summary>
    BiasTable,
}

/// <summary>One parameter: the HF module that owns it (<see cref="Module"/>, also the name its output is observed
/// under), its checkpoint tensor (<see cref="Name"/> = Module + ".weight") and the shape the config implies.</summary>
public sealed record T5Parameter(string Module, int[] Shape, T5ParameterRole Role)
{
    /// <summary>The checkpoint tensor's name, e.g. "encoder.block.0.layer.0.SelfAttention.q.weight".</summary>
    public string Name => Module + ".weight";
}

// The modules below are classes, not records: their observed names are made once in the constructor (the forward
// pass reads them in the token loop, which allocates nothing), and a `with` copy would keep stale names.

/// <summary>T5Attention at <see cref="Path"/>: q, k, v [inner_dim, d_model], o [d_model, inner_dim], and, in the
/// layers that compute the position bias, relative_attention_bias [num_buckets, num_heads].</summary>
public sealed class T5AttentionModule(string path, T5Parameter q, T5Parameter k, T5Parameter v, T5Parameter o,
    T5Parameter? relativeAttentionBias)
{
    /// <summary>The module path, e.g. "decoder.block.1.layer.1.EncDecAttention".</summary>
    public string Path { get; } = path;
    /// <summary>q [inner_dim, d_model] (its output is observed under its module name, as are k's and v's).</summary>
    public T5Parameter Q { get; } = q;
    /// <summary>k [inner_dim, d_model].</summary>
    public T5Parameter K { get; } = k;
    /// <summary>v [inner_dim, d_model].</summary>
    public T5Parameter V { get; } = v;
    /// <summary>o [d_model, inner_dim].</summary>
    public T5Parameter O { get; } = o;
    /// <summary>relative_attention_bias [num_buckets, num_heads]; null in layers that reuse the position bias of the
    /// layer before (HF's has_relative_attention_bias).</summary>
    public T5Parameter? RelativeAttentionBias { get; } = relativeAttentionBias;
    /// <summary>Observed name of the attention output before the o projection: [batch, seq, inner_dim].</summary>
    public string Attention { get; } = path + ".attention";
    /// <summary>Observed name of the position bias this layer computes: [num_heads, query_len, key_len].</summary>
    public string PositionBias { get; } = path + ".position_bias";
    /// <summary>Name `managedt5 trace` gives the scores q.k + bias before the softmax: [batch, heads, seq, seq].</summary>
    public string Scores { get; } = path + ".scores";
}

/// <summary>T5DenseGatedActDense (wi_0, wi_1 [d_ff, d_model]) or T5DenseActDense (wi [d_ff, d_model]); wo [d_model, d_ff].</summary>
public sealed class T5FeedForwardModule(string path, T5Parameter? wi, T5Parameter? wi0, T5Parameter? wi1, T5Parameter wo)
{
    /// <summary>The module path, e.g. "encoder.block.0.layer.1.DenseReluDense".</summary>
    public string Path { get; } = path;
    /// <summary>wi (T5DenseActDense); null when gated.</summary>
    public T5Parameter? Wi { get; } = wi;
    /// <summary>wi_0, the gate's input (T5DenseGatedActDense); null when not gated.</summary>
    public T5Parameter? Wi0 { get; } = wi0;
    /// <summary>wi_1, the linear half (T5DenseGatedActDense); null when not gated.</summary>
    public T5Parameter? Wi1 { get; } = wi1;
    /// <summary>wo [d_model, d_ff].</summary>
    public T5Parameter Wo { get; } = wo;
    /// <summary>Observed name of the activation that enters wo: [batch * seq, d_ff].</summary>
    public string Act { get; } = path + ".act";
}

/// <summary>T5Block at <see cref="Path"/> (also the name of its output): layer.0 self-attention, in the decoder
/// layer.1 cross-attention (EncDecAttention), then the feed-forward layer; each sublayer with its layer_norm.</summary>
public sealed record T5BlockModule(string Path, T5Parameter SelfAttentionNorm, T5AttentionModule SelfAttention,
    T5Parameter? CrossAttentionNorm, T5AttentionModule? CrossAttention, T5Parameter FeedForwardNorm, T5FeedForwardModule FeedForward);

/// <summary>T5Stack "encoder" or "decoder": embed_tokens (the shared embedding; a stored copy is optional), the
/// blocks, final_layer_norm.</summary>
public sealed class T5StackModule(string path, T5Parameter embedTokens, T5BlockModule[] blocks, T5Parameter finalLayerNorm)
{
    /// <summary>"encoder" or "decoder".</summary>
    public string Path { get; } = path;
    /// <summary>embed_tokens [vocab_size, d_model]: the shared embedding, observed under this name; a checkpoint may
    /// store a copy under <see cref="T5Parameter.Name"/>.</summary>
    public T5Parameter EmbedTokens { get; } = embedTokens;
    /// <summary>block.0 .. block.{N-1}.</summary>
    public IReadOnlyList<T5BlockModule> Blocks { get; } = blocks;
    /// <summary>final_layer_norm [d_model].</summary>
    public T5Parameter FinalLayerNorm { get; } = finalLayerNorm;
    /// <summary>Whether self-attention is causal (the decoder) and its position buckets one-directional.</summary>
    public bool IsDecoder { get; } = path == "decoder";
    /// <summary>The observed names in HF's hidden_states layout: embeddings, each block's output but the last, and
    /// the final layer norm (HF reports the last block's output after the norm).</summary>
    public IReadOnlyList<string> HiddenStates { get; } =
        [embedTokens.Module, .. blocks[..^1].Select(b => b.Path), finalLayerNorm.Module];
}

/// <summary>
/// The whole tree of a T5ForConditionalGeneration, or of a T5EncoderModel (<see cref="T5Config.IsEncoderOnly"/>: no
/// decoder, no head), with every shape taken from the config. Variants are switches here, not forward-pass code:
/// gated FFN, tied head, relative_attention_bias in block 0 only (T5) or in every layer
/// (<see cref="T5Config.RelativeAttentionBiasPerLayer"/>, umT5).
/// </summary>
public sealed class T5Modules
{
    /// <summary>shared [vocab_size, d_model]: the token embedding both stacks use (and the head when tied).</summary>
    public T5Parameter Shared { get; }
    /// <summary>The encoder stack.</summary>
    public T5StackModule Encoder { get; }
    /// <summary>The decoder stack; null for an encoder-only model.</summary>
    public T5StackModule? Decoder { get; }
    /// <summary>lm_head [vocab_size, d_model] (its observed name is the logits'); null for an encoder-only model.
    /// When <see cref="TiedLmHead"/> the head is <see cref="Shared"/> and a stored lm_head.weight is an ignored copy.</summary>
    public T5Parameter? LmHead { get; }
    /// <summary>tie_word_embeddings: logits = shared(x * d_model^-0.5).</summary>
    public bool TiedLmHead { get; }

    /// <summary>Builds the tree for <paramref name="config"/>.</summary>
    public T5Modules(T5Config config)
    {
        int d = config.DModel, vocab = config.VocabSize;
        TiedLmHead = config.TieWordEmbeddings;
        Shared = new T5Parameter("shared", [vocab, d], T5ParameterRole.Matrix);
        Encoder = Stack(config, "encoder", config.NumLayers);
        if (config.IsEncoderOnly) return;
        Decoder = Stack(config, "decoder", config.NumDecoderLayers);
        LmHead = new T5Parameter("lm_head", [vocab, d], T5ParameterRole.Matrix);
    }

    /// <summary>The stacks this model has: the encoder, then the decoder if any.</summary>
    public IEnumerable<T5StackModule> Stacks => Decoder is null ? [Encoder] : [Encoder, Decoder];

    /// <summary>Every parameter a checkpoint must hold, in module order (a tied head is <see cref="Shared"/>, not listed twice).</summary>
    public IEnumerable<T5Parameter> Parameters
    {
        get
        {
            yield return Shared;
            foreach (T5StackModule stack in Stacks)
            {
                foreach (T5BlockModule block in stack.Blocks)
                {
                    yield return block.SelfAttentionNorm;
                    foreach (T5Parameter p in Attention(block.SelfAttention)) yield return p;
                    if (block.CrossAttention is not null)
                    {
                        yield return block.CrossAttentionNorm!;
                        foreach (T5Parameter p in Attention(block.CrossAttention)) yield return p;
                    }
                    yield return block.FeedForwardNorm;
                    foreach (T5Parameter? p in new[] { block.FeedForward.Wi, block.FeedForward.Wi0, block.FeedForward.Wi1, block.FeedForward.Wo })
                        if (p is not null) yield return p;
                }
                yield return stack.FinalLayerNorm;
            }
            if (LmHead is not null && !TiedLmHead) yield return LmHead;
        }
    }

    /// <summary>Copies of <see cref="Shared"/> a checkpoint may also store (HF drops them): each stack's embed_tokens,
    /// and lm_head when tied. Checked for shape and otherwise ignored.</summary>
    public IEnumerable<T5Parameter> OptionalCopies =>
        Stacks.Select(s => s.EmbedTokens).Concat(TiedLmHead && LmHead is not null ? [LmHead] : []);

    private static IEnumerable<T5Parameter> Attention(T5AttentionModule a) =>
        a.RelativeAttentionBias is null ? [a.Q, a.K, a.V, a.O] : [a.Q, a.K, a.V, a.O, a.RelativeAttentionBias];

    private static T5StackModule Stack(T5Config c, string stack, int layers)
    {
        int d = c.DModel, inner = c.InnerDim, ff = c.DFf;
        T5Parameter Linear(string module, int outFeatures, int inFeatures) => new(module, [outFeatures, inFeatures], T5ParameterRole.Matrix);
        T5Parameter Norm(string module) => new(module, [d], T5ParameterRole.Norm);
        T5AttentionModule Attention(string path, bool hasRelativeAttentionBias) => new(path,
            Linear(path + ".q", inner, d), Linear(path + ".k", inner, d), Linear(path + ".v", inner, d), Linear(path + ".o", d, inner),
            hasRelativeAttentionBias
                ? new T5Parameter(path + ".relative_attention_bias", [c.RelativeAttentionNumBuckets, c.NumHeads], T5ParameterRole.BiasTable)
                : null);

        bool decoder = stack == "decoder";
        var blocks = new T5BlockModule[layers];
        for (int i = 0; i < layers; i++)
        {
            string p = $"{stack}.block.{i}.layer.";
            string ffn = p + (decoder ? "2" : "1");
            bool bias = i == 0 || c.RelativeAttentionBiasPerLayer;   // T5: only block 0 has relative_attention_bias
            blocks[i] = new T5BlockModule($"{stack}.block.{i}",
                Norm(p + "0.layer_norm"), Attention(p + "0.SelfAttention", bias),
                decoder ? Norm(p + "1.layer_norm") : null, decoder ? Attention(p + "1.EncDecAttention", false) : null,
                Norm(ffn + ".layer_norm"),
                new T5FeedForwardModule(ffn + ".DenseReluDense",
                    c.IsGatedAct ? null : Linear(ffn + ".DenseReluDense.wi", ff, d),
                    c.IsGatedAct ? Linear(ffn + ".DenseReluDense.wi_0", ff, d) : null,
                    c.IsGatedAct ? Linear(ffn + ".DenseReluDense.wi_1", ff, d) : null,
                    Linear(ffn + ".DenseReluDense.wo", d, ff)));
        }
        return new T5StackModule(stack, new T5Parameter(stack + ".embed_tokens", [c.VocabSize, d], T5ParameterRole.Matrix),
            blocks, Norm(stack + ".final_layer_norm"));
    }
}
