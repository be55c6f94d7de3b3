// Binds checkpoint tensors to the T5 modules by their HF names, checking every shape against the config.
// Names: shared.weight, {encoder,decoder}.block.{i}.layer.{j}.{SelfAttention,EncDecAttention}.{q,k,v,o}.weight, ...
using System.Runtime.InteropServices;
using ManagedT5.Kernels;
using ManagedT5.Loading;

namespace ManagedT5.Model;

/// <summary>T5Attention's projections. q, k, v: [inner_dim, d_model]; o: [d_model, inner_dim].</summary>
internal sealed record AttentionWeights(IWeight Q, IWeight K, IWeight V, IWeight O);

/// <summary>T5DenseGatedActDense (wi_0, wi_1, wo) or T5DenseActDense (wi, wo). wi*: [d_ff, d_model]; wo: [d_model, d_ff].</summary>
internal sealed record FeedForwardWeights(IWeight? Wi, IWeight? Wi0, IWeight? Wi1, IWeight Wo);

/// <summary>T5Block of the encoder: layer.0 self-attention, layer.1 feed-forward (each with its layer_norm).</summary>
internal sealed record EncoderBlockWeights(IWeight SelfAttentionNorm, AttentionWeights SelfAttention,
    IWeight FeedForwardNorm, FeedForwardWeights FeedForward);

/// <summary>T5Block of the decoder: layer.0 causal self-attention, layer.1 cross-attention, layer.2 feed-forward.</summary>
internal sealed record DecoderBlockWeights(IWeight SelfAttentionNorm, AttentionWeights SelfAttention,
    IWeight CrossAttentionNorm, AttentionWeights CrossAttention, IWeight FeedForwardNorm, FeedForwardWeights FeedForward);

/// <summary>Every weight of a T5ForConditionalGeneration, prepared on one backend.</summary>
internal sealed class T5Weights : IDisposable
{
    private readonly List<IWeight> _all = [];

    /// <summary>shared.weight [vocab_size, d_model]: the token embedding (and the output head when tied).</summary>
    public IWeight Shared { get; private set; } = null!;
    /// <summary>lm_head.weight [vocab_size, d_model], or the shared embedding when tied.</summary>
    public IWeight LmHead { get; private set; } = null!;
    /// <summary>encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight [num_buckets, num_heads].</summary>
    public IWeight EncoderRelativeBias { get; private set; } = null!;
    /// <summary>decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight [num_buckets, num_heads].</summary>
    public IWeight DecoderRelativeBias { get; private set; } = null!;
    public EncoderBlockWeights[] Encoder { get; private set; } = [];
    public DecoderBlockWeights[] Decoder { get; private set; } = [];
    /// <summary>encoder.final_layer_norm.weight [d_model].</summary>
    public IWeight EncoderFinalNorm { get; private set; } = null!;
    /// <summary>decoder.final_layer_norm.weight [d_model].</summary>
    public IWeight DecoderFinalNorm { get; private set; } = null!;

    /// <summary>Checkpoint tensors that no module uses (reported, not fatal).</summary>
    public IReadOnlyList<string> UnexpectedTensors { get; private set; } = [];

    /// <summary>Total bytes of the prepared weights, as the backend keeps them (shared counted once).</summary>
    public long ByteLength => _all.Distinct().Sum(w => w.ByteLength);

    /// <summary>Binds a checkpoint. <paramref name="linearFormat"/> (null: as stored) applies to matrices that are
    /// multiplied (projections, FFN, embeddings, head); norms and bias tables are kept in fp32.</summary>
    public static T5Weights Bind(Checkpoint checkpoint, T5Config config, IBackend backend, WeightFormat? linearFormat)
    {
        var binder = new Binder(checkpoint, config, backend, linearFormat);
        var weights = new T5Weights();
        try
        {
            binder.Bind(weights);
            return weights;
        }
        catch
        {
            weights.Dispose();
            throw;
        }
        finally
        {
            binder.Dispose();
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (IWeight w in _all.Distinct()) w.Dispose();
        _all.Clear();
    }

    private sealed unsafe class Binder(Checkpoint checkpoint, T5Config config, IBackend backend, WeightFormat? linearFormat) : IDisposable
    {
        private readonly List<string> _missing = [];
        private byte* _staging;          // file reads of tensors that are converted at load (see Prepare)
        private long _stagingBytes;
        private readonly HashSet<string> _used = new(StringComparer.Ordinal);
        private T5Weights _target = null!;

        public void Bind(T5Weights w)
        {
            _target = w;
            int d = config.DModel, inner = config.InnerDim, ff = config.DFf, vocab = config.VocabSize;

            // HF drops the tied copies encoder/decoder.embed_tokens.weight; accept either spelling.
            string sharedName = checkpoint.Contains("shared.weight") || !checkpoint.Contains("encoder.embed_tokens.weight")
                ? "shared.weight" : "encoder.embed_tokens.weight";
            w.Shared = Matrix(sharedName, vocab, d)!;
            foreach (string copy in new[] { "encoder.embed_tokens.weight", "decoder.embed_tokens.weight" })
                if (copy != sharedName && checkpoint.Contains(copy))
                {
                    CheckShape(copy, [vocab, d]);
                    _used.Add(copy);
                }
            w.LmHead = config.TieWordEmbeddings ? w.Shared : Matrix("lm_head.weight", vocab, d)!;
            if (config.TieWordEmbeddings && checkpoint.Contains("lm_head.weight"))
                _used.Add("lm_head.weight"); // some tied checkpoints store a copy; the tied embedding is what HF uses

            w.EncoderRelativeBias = Vector("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                config.RelativeAttentionNumBuckets, config.NumHeads)!;
            w.DecoderRelativeBias = Vector("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                config.RelativeAttentionNumBuckets, config.NumHeads)!;

            // Per-layer arrays are sized by the config: first make sure the checkpoint has exactly that many blocks
            // (num_layers 1e9 must not allocate a billion entries before the first missing tensor is noticed).
            CheckBlockCount("encoder", "num_layers", config.NumLayers);
            CheckBlockCount("decoder", "num_decoder_layers", config.NumDecoderLayers);
            w.Encoder = new EncoderBlockWeights[config.NumLayers];
            for (int i = 0; i < config.NumLayers; i++)
            {
                string p = $"encoder.block.{i}.layer.";
                w.Encoder[i] = new EncoderBlockWeights(
                    Norm(p + "0.layer_norm.weight", d), Attention(p + "0.SelfAttention.", d, inner),
                    Norm(p + "1.layer_norm.weight", d), FeedForward(p + "1.DenseReluDense.", d, ff));
            }
            w.Decoder = new DecoderBlockWeights[config.NumDecoderLayers];
            for (int i = 0; i < config.NumDecoderLayers; i++)
            {
                string p = $"decoder.block.{i}.layer.";
                w.Decoder[i] = new DecoderBlockWeights(
                    Norm(p + "0.layer_norm.weight", d), Attention(p + "0.SelfAttention.", d, inner),
                    Norm(p + "1.layer_norm.weight", d), Attention(p + "1.EncDecAttention.", d, inner),
                    Norm(p + "2.layer_norm.weight", d), FeedForward(p + "2.DenseReluDense.", d, ff));
            }
            w.EncoderFinalNorm = Norm("encoder.final_layer_norm.weight", d);
            w.DecoderFinalNorm = Norm("decoder.final_layer_norm.weight", d);

            if (_missing.Count > 0)
                throw new ModelLoadException(
                    $"The checkpoint is missing {_missing.Count} tensor(s) that this config needs " +
                    $"({(config.IsGatedAct ? "gated" : "non-gated")} FFN, {(config.TieWordEmbeddings ? "tied" : "untied")} embeddings): " +
                    string.Join(", ", _missing) + ". Check that config.json belongs to these weights.",
                    checkpoint.Files.FirstOrDefault()?.Path);
            w.UnexpectedTensors = checkpoint.Names.Where(n => !_used.Contains(n)).Order(StringComparer.Ordinal).ToList();
        }

        /// <summary>The checkpoint's {stack}.block.i must be exactly i = 0 .. N-1 with N what the config says. Counted as
        /// distinct indices, so a lone "block.999999999" tensor cannot vouch for a billion blocks.</summary>
        private void CheckBlockCount(string stack, string key, int expected)
        {
            string prefix = stack + ".block.";
            var indices = new HashSet<int>();
            foreach (string name in checkpoint.Names)
            {
                if (!name.StartsWith(prefix, StringComparison.Ordinal)) continue;
                int end = name.IndexOf('.', prefix.Length);
                if (end > prefix.Length && int.TryParse(name.AsSpan(prefix.Length, end - prefix.Length),
                        System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int index))
                    indices.Add(index);
            }
            int found = indices.Count;
            if (found == expected && (found == 0 || indices.Max() == found - 1)) return;
            string blocks = found == 0 ? "no" : indices.Max() == found - 1 ? $"{found}" : $"{found} (numbered up to {indices.Max()}, with gaps)";
            throw new ModelLoadException(
                $"config.json says {key} is {expected} but the checkpoint has {blocks} {stack} block(s) ({prefix}N.*). " +
                "Check that config.json belongs to these weights.", checkpoint.Files.FirstOrDefault()?.Path);
        }

        private AttentionWeights Attention(string prefix, int d, int inner) => new(
            Matrix(prefix + "q.weight", inner, d)!, Matrix(prefix + "k.weight", inner, d)!,
            Matrix(prefix + "v.weight", inner, d)!, Matrix(prefix + "o.weight", d, inner)!);

        private FeedForwardWeights FeedForward(string prefix, int d, int ff) => config.IsGatedAct
            ? new(null, Matrix(prefix + "wi_0.weight", ff, d), Matrix(prefix + "wi_1.weight", ff, d), Matrix(prefix + "wo.weight", d, ff)!)
            : new(Matrix(prefix + "wi.weight", ff, d), null, null, Matrix(prefix + "wo.weight", d, ff)!);

        private IWeight Norm(string name, int d) => Prepare(name, [d], WeightFormat.F32)!;
        private IWeight? Vector(string name, int rows, int cols) => Prepare(name, [rows, cols], WeightFormat.F32);
        private IWeight? Matrix(string name, int rows, int cols) => Prepare(name, [rows, cols], linearFormat);

        private IWeight? Prepare(string name, int[] shape, WeightFormat? format)
        {
            if (!checkpoint.Contains(name))
            {
                _missing.Add(name);
                return null;
            }
            CheckShape(name, shape);
            _used.Add(name);
            SafeTensorInfo info = checkpoint.Find(name)!;
            if (info.DType is not (DType.F32 or DType.F16 or DType.BF16))
                throw new ModelLoadException(
                    $"Tensor '{name}' has dtype {info.DType}; T5 weights must be F32, F16 or BF16.", checkpoint.Files[0].Path);
            // A tensor converted to another format is read from the file into a staging buffer, not through the map:
            // the weight is the converted copy, and the source pages then never join this process's resident set.
            bool converted = format is { } target && target != info.DType.AsStoredWeightFormat();
            HostTensor tensor = converted ? checkpoint.ReadTensor(name, Staging(info.End - info.Begin), _stagingBytes) : checkpoint.GetTensor(name);
            IWeight weight = backend.CreateWeight(tensor, format);
            _target._all.Add(weight);
            return weight;
        }

        /// <summary>The staging buffer, grown to at least <paramref name="bytes"/>.</summary>
        private byte* Staging(long bytes)
        {
            if (bytes > _stagingBytes)
            {
                NativeMemory.AlignedFree(_staging);
                _staging = null;
                _staging = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 1), 64);
                _stagingBytes = Math.Max(bytes, 1);
            }
            return _staging;
        }

        public void Dispose()
        {
            NativeMemory.AlignedFree(_staging);
            _staging = null;
            _stagingBytes = 0;
        }

        private void CheckShape(string name, int[] expected)
        {
            SafeTensorInfo info = checkpoint.Find(name)!;
            if (!info.Shape.SequenceEqual(expected))
                throw new ModelLoadException(
                    $"Tensor '{name}' has shape [{string.Join(", ", info.Shape)}] but config.json implies [{string.Join(", ", expected)}] " +
                    $"(d_model {config.DModel}, num_heads x d_kv {config.InnerDim}, d_ff {config.DFf}, vocab_size {config.VocabSize}). " +
                    "Check that config.json belongs to these weights.", checkpoint.Files[0].Path);
        }
    }
}
