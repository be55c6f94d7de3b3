// Binds checkpoint tensors to the T5 modules by the names and shapes T5Modules gives (HF's names, the config's shapes),
// checking every shape, listing every missing tensor at once and reporting the ones no module uses. A LoRA adapter is
// merged here, in f32 from the checkpoint's values, before a Linear is converted to the requested format.
using System.Runtime.InteropServices;
using ManagedT5.Adapters;
using ManagedT5.Kernels;
using ManagedT5.Loading;

namespace ManagedT5.Model;

/// <summary>T5Attention's projections. q, k, v: [inner_dim, d_model]; o: [d_model, inner_dim]; relative_attention_bias
/// [num_buckets, num_heads] in the layers that compute the position bias (block 0, or every layer in umT5).</summary>
internal sealed record AttentionWeights(IWeight Q, IWeight K, IWeight V, IWeight O, IWeight? RelativeAttentionBias);

/// <summary>T5DenseGatedActDense (wi_0, wi_1, wo) or T5DenseActDense (wi, wo). wi*: [d_ff, d_model]; wo: [d_model, d_ff].</summary>
internal sealed record FeedForwardWeights(IWeight? Wi, IWeight? Wi0, IWeight? Wi1, IWeight Wo);

/// <summary>T5Block: layer.0 self-attention, in the decoder layer.1 cross-attention, then the feed-forward layer, each
/// with its layer_norm [d_model].</summary>
internal sealed record BlockWeights(IWeight SelfAttentionNorm, AttentionWeights SelfAttention,
    IWeight? CrossAttentionNorm, AttentionWeights? CrossAttention, IWeight FeedForwardNorm, FeedForwardWeights FeedForward);

/// <summary>Every weight of a T5ForConditionalGeneration (or a T5EncoderModel), prepared on one backend, bound by the
/// names in <see cref="T5Modules"/>.</summary>
internal sealed class T5Weights : IDisposable
{
    private readonly List<IWeight> _all = [];                        // the weights this object made, and disposes
    private readonly List<IWeight> _shared = [];                     // another T5Weights' weights it uses (an adapter view)
    private readonly Dictionary<string, IWeight> _byName = new(StringComparer.Ordinal);   // checkpoint name -> weight
    private readonly List<nint> _merged = [];                        // f32 merged matrices a weight may point into

    /// <summary>The module tree the weights were bound by (its names are also the forward pass's observer names).</summary>
    public T5Modules Modules { get; private set; } = null!;
    /// <summary>shared.weight [vocab_size, d_model]: the token embedding (and the output head when tied).</summary>
    public IWeight Shared { get; private set; } = null!;
    /// <summary>lm_head.weight [vocab_size, d_model], or the shared embedding when tied; null for an encoder-only model.</summary>
    public IWeight? LmHead { get; private set; }
    public BlockWeights[] Encoder { get; private set; } = [];
    /// <summary>The decoder's blocks; empty for an encoder-only model.</summary>
    public BlockWeights[] Decoder { get; private set; } = [];
    /// <summary>encoder.final_layer_norm.weight [d_model].</summary>
    public IWeight EncoderFinalNorm { get; private set; } = null!;
    /// <summary>decoder.final_layer_norm.weight [d_model]; null for an encoder-only model.</summary>
    public IWeight? DecoderFinalNorm { get; private set; }

    /// <summary>Checkpoint tensors that no module uses (reported, not fatal).</summary>
    public IReadOnlyList<string> UnexpectedTensors { get; private set; } = [];

    /// <summary>Total bytes of the prepared weights, as the backend keeps them (shared counted once), including the
    /// weights an adapter view borrows from its base.</summary>
    public long ByteLength => _all.Concat(_shared).Distinct().Sum(w => w.ByteLength);

    /// <summary>Bytes of the weights this object made and owns: all of them for a loaded model; for an adapter view
    /// only the merged copies of the Linears the adapter targets.</summary>
    public long OwnedByteLength => _all.Distinct().Sum(w => w.ByteLength);

    /// <summary>The adapter merged into these weights, or null.</summary>
    public LoraAdapter? Adapter { get; private set; }

    /// <summary>Binds a checkpoint. <paramref name="linearFormat"/> (null: as stored) applies to matrices that are
    /// multiplied (projections, FFN, embeddings, head); norms and bias tables are kept in fp32. With an
    /// <paramref name="adapter"/>, each Linear it targets becomes W + scale·(B·A), computed in f32 from the checkpoint's
    /// values and then converted to the format; the adapter must fit the model (<see cref="LoraAdapter.CheckFits"/>).
    /// With <paramref name="shareWith"/> (the base model's weights, bound from the same checkpoint), every weight the
    /// adapter does not target is that object's, not a copy: only the merged Linears are made and owned here.</summary>
    public static T5Weights Bind(Checkpoint checkpoint, T5Config config, IBackend backend, WeightFormat? linearFormat,
        LoraAdapter? adapter = null, T5Weights? shareWith = null)
    {
        if (adapter is not null) adapter.CheckFits(new T5Modules(config), config, adapter.Source ?? "(an adapter made in memory)");
        var binder = new Binder(checkpoint, config, backend, linearFormat, adapter, shareWith);
        var weights = new T5Weights { Adapter = adapter };
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
    public unsafe void Dispose()
    {
        foreach (IWeight w in _all.Distinct()) w.Dispose();
        _all.Clear();
        _shared.Clear();
        _byName.Clear();
        foreach (nint p in _merged) NativeMemory.AlignedFree((void*)p);
        _merged.Clear();
    }

    private sealed unsafe class Binder(Checkpoint checkpoint, T5Config config, IBackend backend, WeightFormat? linearFormat,
        LoraAdapter? adapter, T5Weights? shareWith) : IDisposable
    {
        private readonly List<string> _missing = [];
        private byte* _staging;          // file reads of tensors that are converted at load (see Prepare)
        private long _stagingBytes;
        private readonly HashSet<string> _used = new(StringComparer.Ordinal);
        private T5Weights _target = null!;

        public void Bind(T5Weights w)
        {
            _target = w;
            // Per-layer arrays are sized by the config: first make sure the checkpoint has exactly that many blocks
            // (num_layers 1e9 must not allocate a billion entries before the first missing tensor is noticed).
            CheckBlockCount("encoder", "num_layers", config.NumLayers);
            if (!config.IsEncoderOnly) CheckBlockCount("decoder", "num_decoder_layers", config.NumDecoderLayers);
            T5Modules m = w.Modules = new T5Modules(config);

            // HF drops the tied copies encoder/decoder.embed_tokens.weight; accept either spelling.
            T5Parameter shared = checkpoint.Contains(m.Shared.Name) || !checkpoint.Contains(m.Encoder.EmbedTokens.Name)
                ? m.Shared : m.Encoder.EmbedTokens;
            w.Shared = Prepare(shared)!;
            // Stored copies (embed_tokens, lm_head when tied: the tied embedding is what HF uses) are checked and skipped.
            foreach (T5Parameter copy in m.OptionalCopies)
                if (copy.Name != shared.Name && checkpoint.Contains(copy.Name))
                {
                    CheckShape(copy.Name, copy.Shape);
                    _used.Add(copy.Name);
                }

            w.Encoder = m.Encoder.Blocks.Select(Block).ToArray();
            w.EncoderFinalNorm = Prepare(m.Encoder.FinalLayerNorm)!;
            if (m.Decoder is not null)
            {
                w.Decoder = m.Decoder.Blocks.Select(Block).ToArray();
                w.DecoderFinalNorm = Prepare(m.Decoder.FinalLayerNorm);
                w.LmHead = m.TiedLmHead ? w.Shared : Prepare(m.LmHead!);
            }

            if (_missing.Count > 0)
                throw new ModelLoadException(
                    $"The checkpoint is missing {_missing.Count} tensor(s) that this config needs " +
                    $"({(config.IsGatedAct ? "gated" : "non-gated")} FFN, {(config.TieWordEmbeddings ? "tied" : "untied")} embeddings): " +
                    string.Join(", ", _missing) + ". Check that config.json belongs to these weights." + EncoderOnlyHint(),
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
                "Check that config.json belongs to these weights." + EncoderOnlyHint(), checkpoint.Files.FirstOrDefault()?.Path);
        }

        /// <summary>Weights without a single decoder tensor under a config with a decoder are most likely a T5EncoderModel
        /// checkpoint whose config.json does not say so.</summary>
        private string EncoderOnlyHint() =>
            config.IsEncoderOnly || checkpoint.Names.Any(n => n.StartsWith("decoder.", StringComparison.Ordinal)) ? ""
                : " The checkpoint has no decoder tensors at all: if it is an encoder-only (T5EncoderModel) checkpoint, " +
                  "config.json's \"architectures\" should say [\"T5EncoderModel\"].";

        private BlockWeights Block(T5BlockModule b) => new(
            Prepare(b.SelfAttentionNorm)!, Attention(b.SelfAttention)!,
            Prepare(b.CrossAttentionNorm), Attention(b.CrossAttention),
            Prepare(b.FeedForwardNorm)!, new FeedForwardWeights(
                Prepare(b.FeedForward.Wi), Prepare(b.FeedForward.Wi0), Prepare(b.FeedForward.Wi1), Prepare(b.FeedForward.Wo)!));

        private AttentionWeights? Attention(T5AttentionModule? a) => a is null ? null :
            new(Prepare(a.Q)!, Prepare(a.K)!, Prepare(a.V)!, Prepare(a.O)!, Prepare(a.RelativeAttentionBias));

        /// <summary>Prepares a parameter of the tree (null stays null): matrices in the chosen format, the rest fp32.
        /// A missing tensor is recorded and gives null, so that one error lists every missing tensor.</summary>
        private IWeight? Prepare(T5Parameter? p) => p is null ? null
            : Prepare(p.Name, p.Shape, p.Role == T5ParameterRole.Matrix ? linearFormat : WeightFormat.F32, adapter?.Find(p.Module));

        private IWeight? Prepare(string name, int[] shape, WeightFormat? format, LoraModule? lora)
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
            if (lora is not null) return Merged(name, info, format, lora);
            if (shareWith is not null)
            {
                // An adapter view: everything the adapter leaves alone is the base model's weight, not a copy.
                IWeight shared = shareWith._byName[name];
                _target._shared.Add(shared);
                _target._byName[name] = shared;
                return shared;
            }
            // A tensor converted to another format is read from the file into a staging buffer, not through the map:
            // the weight is the converted copy, and the source pages then never join this process's resident set.
            bool converted = format is { } target && target != info.DType.AsStoredWeightFormat();
            HostTensor tensor = converted ? checkpoint.ReadTensor(name, Staging(info.End - info.Begin), _stagingBytes) : checkpoint.GetTensor(name);
            IWeight weight = backend.CreateWeight(tensor, format);
            _target._all.Add(weight);
            _target._byName[name] = weight;
            return weight;
        }

        /// <summary>PEFT's merge (LoraLayer.merge): W' = W + scale·(B·A), in f32 from the checkpoint's values (widened from
        /// F16/BF16), then converted to <paramref name="format"/> (null: the stored dtype's format). W: [out, in].</summary>
        private IWeight Merged(string name, SafeTensorInfo info, WeightFormat? format, LoraModule lora)
        {
            HostTensor stored = checkpoint.ReadTensor(name, Staging(info.End - info.Begin), _stagingBytes);
            long count = stored.ElementCount;
            float* merged = (float*)NativeMemory.AlignedAlloc((nuint)(count * sizeof(float)), 64);
            float[] delta = lora.Delta(adapter!.Config.Scale);                            // scale·(B·A): [out, in]
            for (long i = 0; i < count; i++) merged[i] = stored.GetSingle(i) + delta[i];
            WeightFormat target = format ?? info.DType.AsStoredWeightFormat()!.Value;
            IWeight weight;
            try
            {
                weight = backend.CreateWeight(new HostTensor(name, DType.F32, info.Shape, (nint)merged), target);
            }
            catch
            {
                NativeMemory.AlignedFree(merged);
                throw;
            }
            // An F32 weight may point into the merged values (the CPU backend keeps F32 sources as they are): they then
            // live as long as the weights. A converted weight is its own copy.
            if (target == WeightFormat.F32) _target._merged.Add((nint)merged);
            else NativeMemory.AlignedFree(merged);
            _target._all.Add(weight);
            _target._byName[name] = weight;
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
