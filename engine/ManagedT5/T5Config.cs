// config.json of a T5 / Flan-T5 checkpoint: the architecture's sizes and switches, read with HF's defaults.
using System.Text.Json;
using ManagedT5.IO;
using ManagedT5.Kernels;

namespace ManagedT5;

/// <summary>The fields of HF's T5Config that inference needs. Names follow config.json.</summary>
public sealed record T5Config
{
    /// <summary>vocab_size: rows of the embedding and output head (32128 for T5).</summary>
    public required int VocabSize { get; init; }
    /// <summary>d_model: width of the residual stream.</summary>
    public required int DModel { get; init; }
    /// <summary>d_kv: width of one attention head.</summary>
    public required int DKv { get; init; }
    /// <summary>d_ff: width of the feed-forward hidden layer.</summary>
    public required int DFf { get; init; }
    /// <summary>num_layers: encoder blocks.</summary>
    public required int NumLayers { get; init; }
    /// <summary>num_decoder_layers: decoder blocks (defaults to num_layers).</summary>
    public required int NumDecoderLayers { get; init; }
    /// <summary>num_heads.</summary>
    public required int NumHeads { get; init; }
    /// <summary>relative_attention_num_buckets (32).</summary>
    public int RelativeAttentionNumBuckets { get; init; } = 32;
    /// <summary>relative_attention_max_distance (128).</summary>
    public int RelativeAttentionMaxDistance { get; init; } = 128;
    /// <summary>layer_norm_epsilon (1e-6).</summary>
    public float LayerNormEpsilon { get; init; } = 1e-6f;
    /// <summary>dropout_rate (0.1): the dropout HF applies while training (fine-tuning reads it; inference never drops).</summary>
    public double DropoutRate { get; init; } = 0.1;
    /// <summary>feed_forward_proj as written ("relu", "gated-gelu", ...).</summary>
    public string FeedForwardProj { get; init; } = "relu";
    /// <summary>The FFN activation (dense_act_fn, else derived from feed_forward_proj).</summary>
    public ActivationKind DenseActivation { get; init; } = ActivationKind.Relu;
    /// <summary>is_gated_act: wo(act(wi_0 x) * wi_1 x) instead of wo(act(wi x)).</summary>
    public bool IsGatedAct { get; init; }
    /// <summary>tie_word_embeddings (true when absent): logits = shared(x * d_model^-0.5).</summary>
    public bool TieWordEmbeddings { get; init; } = true;
    /// <summary>pad_token_id (0).</summary>
    public int PadTokenId { get; init; }
    /// <summary>eos_token_id (1).</summary>
    public int EosTokenId { get; init; } = 1;
    /// <summary>decoder_start_token_id (0).</summary>
    public int DecoderStartTokenId { get; init; }
    /// <summary>model_type ("t5").</summary>
    public string ModelType { get; init; } = "t5";
    /// <summary>torch_dtype as written, if any (informational).</summary>
    public string? TorchDType { get; init; }
    /// <summary>architectures as written ("T5ForConditionalGeneration", "T5EncoderModel"); empty when absent.</summary>
    public IReadOnlyList<string> Architectures { get; init; } = [];
    /// <summary>An encoder-only checkpoint (T5EncoderModel: shared.weight and encoder.* only). Set when architectures
    /// names T5EncoderModel and nothing else; such a model encodes but cannot decode.</summary>
    public bool IsEncoderOnly { get; init; }
    /// <summary>Every self-attention layer owns a relative_attention_bias (umT5) instead of block 0 alone (T5, Flan-T5).
    /// No config.json key says so: set it when building the config of such a checkpoint.</summary>
    public bool RelativeAttentionBiasPerLayer { get; init; }

    /// <summary>Most floats one buffer can hold (a .NET array's limit); every size derived from the config must fit.</summary>
    public const int MaxBufferElements = 0x7FFFFFC7; // Array.MaxLength

    /// <summary>num_heads * d_kv: width of the attention projections (need not equal d_model). Parsing checks that
    /// the product fits a buffer; a config built in code that overflows throws <see cref="OverflowException"/>.</summary>
    public int InnerDim => checked(NumHeads * DKv);

    /// <summary>Reads config.json from a file (a regular file of at most 64 MiB, links followed).</summary>
    public static T5Config Load(string path)
    {
        if (!File.Exists(path) && !Directory.Exists(path) && new FileInfo(path).LinkTarget is null)
            throw new ModelLoadException($"'{path}' does not exist: a T5 model folder needs its config.json.", path);
        byte[] bytes = InputFile.ReadAllBytes(path, InputFile.MaxJsonBytes, out string? problem);
        if (problem is not null) throw new ModelLoadException(problem, path);
        return Parse(bytes, path);
    }

    /// <summary>Parses config.json text; <paramref name="source"/> names it in messages.</summary>
    public static T5Config Parse(string json, string source = "config.json") =>
        Parse(System.Text.Encoding.UTF8.GetBytes(json), source);

    private static T5Config Parse(ReadOnlyMemory<byte> utf8, string source)
    {
        if (utf8.Span.StartsWith("\uFEFF"u8)) utf8 = utf8[3..];   // a byte order mark, as editors on Windows write
        try
        {
            using JsonDocument doc = JsonDocument.Parse(utf8);
            return Parse(doc.RootElement, source);
        }
        catch (JsonException e)
        {
            throw new ModelLoadException($"'{source}' is not valid JSON: {e.Message}", source, e);
        }
        catch (InvalidOperationException e)
        {
            // JsonElement.GetString and property lookups refuse text that is not valid UTF-16 (a lone "\ud800").
            throw new ModelLoadException($"'{source}' holds a string that is not valid Unicode ({e.Message}); fix or fetch the file again.", source, e);
        }
    }

    private static T5Config Parse(JsonElement root, string source)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw new ModelLoadException($"'{source}' is not a JSON object.", source);

        string modelType = OptionalString(root, "model_type", source) ?? "t5";
        if (modelType is not ("t5" or "mt5"))   // mT5 (MT5ForConditionalGeneration) is the T5 v1.1 architecture
            throw new ModelLoadException(
                $"'{source}': model_type is '{modelType}', not 't5' or 'mt5'. ManagedT5 runs T5, Flan-T5, mT5 and ByT5 checkpoints only.", source);

        int numLayers = Required(root, "num_layers", source, min: 1);
        string feedForwardProj = OptionalString(root, "feed_forward_proj", source) ?? "relu";
        var (derivedAct, derivedGated) = ParseFeedForwardProj(feedForwardProj, source);
        string? denseActFn = OptionalString(root, "dense_act_fn", source);
        ActivationKind activation = denseActFn is null ? derivedAct : ParseActivation(denseActFn, "dense_act_fn", source);
        bool gated = OptionalBool(root, "is_gated_act", source) ?? derivedGated;
        string[] architectures = OptionalStrings(root, "architectures", source) ?? [];

        var config = new T5Config
        {
            VocabSize = Required(root, "vocab_size", source, min: 1),
            DModel = Required(root, "d_model", source, min: 1),
            DKv = Required(root, "d_kv", source, min: 1),
            DFf = Required(root, "d_ff", source, min: 1),
            NumLayers = numLayers,
            NumDecoderLayers = Optional(root, "num_decoder_layers", source, min: 1) ?? numLayers,
            NumHeads = Required(root, "num_heads", source, min: 1),
            RelativeAttentionNumBuckets = Optional(root, "relative_attention_num_buckets", source, min: 2) ?? 32,
            RelativeAttentionMaxDistance = Optional(root, "relative_attention_max_distance", source, min: 1) ?? 128,
            LayerNormEpsilon = OptionalFloat(root, "layer_norm_epsilon", source) ?? 1e-6f,
            DropoutRate = OptionalProbability(root, "dropout_rate", source) ?? 0.1,
            FeedForwardProj = feedForwardProj,
            DenseActivation = activation,
            IsGatedAct = gated,
            TieWordEmbeddings = OptionalBool(root, "tie_word_embeddings", source) ?? true,
            PadTokenId = Optional(root, "pad_token_id", source, min: 0) ?? 0,
            EosTokenId = Optional(root, "eos_token_id", source, min: 0) ?? 1,
            DecoderStartTokenId = Optional(root, "decoder_start_token_id", source, min: 0) ?? 0,
            ModelType = modelType,
            TorchDType = OptionalString(root, "torch_dtype", source),
            Architectures = architectures,
            IsEncoderOnly = architectures.Length > 0 && architectures.All(a => a == "T5EncoderModel"),
        };
        if (config.RelativeAttentionMaxDistance <= config.RelativeAttentionNumBuckets / 4)
            throw new ModelLoadException(
                $"'{source}': relative_attention_max_distance ({config.RelativeAttentionMaxDistance}) must exceed relative_attention_num_buckets / 4.", source);
        foreach (var (key, id) in new[] { ("pad_token_id", config.PadTokenId), ("eos_token_id", config.EosTokenId), ("decoder_start_token_id", config.DecoderStartTokenId) })
            if (id >= config.VocabSize)
                throw new ModelLoadException($"'{source}': {key} {id} is not below vocab_size {config.VocabSize}.", source);
        CheckSizes(config, source);
        return config;
    }

    /// <summary>
    /// The products of config sizes that size one buffer row or one weight must fit a buffer: a product that wraps
    /// (num_heads 6 x d_kv 715827883 is 2 in 32 bits) would pass the shape checks against small weights and let a
    /// kernel read past its buffers. Per-request sizes (rows x width, heads x seq^2) are checked before generating.
    /// </summary>
    private static void CheckSizes(T5Config c, string source)
    {
        void Fits(string what, long a, long b)
        {
            long product = a * b;   // both factors are positive ints: the product fits a long
            if (product > MaxBufferElements)
                throw new ModelLoadException(
                    $"'{source}': {what} = {product:N0} elements, more than one buffer can hold ({MaxBufferElements:N0}); " +
                    "this config.json cannot describe a real checkpoint.", source);
        }
        Fits($"num_heads ({c.NumHeads}) x d_kv ({c.DKv})", c.NumHeads, c.DKv);
        Fits($"vocab_size ({c.VocabSize}) x d_model ({c.DModel})", c.VocabSize, c.DModel);
        Fits($"d_ff ({c.DFf}) x d_model ({c.DModel})", c.DFf, c.DModel);
        Fits($"num_heads ({c.NumHeads}) x d_kv ({c.DKv}) x d_model ({c.DModel})", (long)c.NumHeads * c.DKv, c.DModel);
        Fits($"relative_attention_num_buckets ({c.RelativeAttentionNumBuckets}) x num_heads ({c.NumHeads})", c.RelativeAttentionNumBuckets, c.NumHeads);
    }

    /// <summary>HF's rule: feed_forward_proj is "[gated-]ACT"; "gated-gelu" means gelu_new.</summary>
    public static (ActivationKind Activation, bool Gated) ParseFeedForwardProj(string value, string source = "config.json")
    {
        string[] parts = value.Split('-');
        bool gated = parts.Length == 2 && parts[0] == "gated";
        if (parts.Length > 2 || (parts.Length == 2 && !gated))
            throw new ModelLoadException(
                $"'{source}': feed_forward_proj '{value}' is not of the form '[gated-]ACT' (e.g. 'relu', 'gated-gelu').", source);
        if (value == "gated-gelu") return (ActivationKind.GeluNew, true);
        return (ParseActivation(parts[^1], "feed_forward_proj", source), gated);
    }

    private static ActivationKind ParseActivation(string name, string key, string source) => name switch
    {
        "relu" => ActivationKind.Relu,
        "gelu_new" or "gelu_pytorch_tanh" or "gelu_fast" => ActivationKind.GeluNew,
        "gelu" => ActivationKind.Gelu,
        "silu" or "swish" => ActivationKind.Silu,
        _ => throw new ModelLoadException(
            $"'{source}': {key} '{name}' is not a supported activation (relu, gelu, gelu_new, silu).", source),
    };

    private static int Required(JsonElement root, string key, string source, int min) =>
        Optional(root, key, source, min) ?? throw new ModelLoadException($"'{source}' is missing '{key}'.", source);

    private static int? Optional(JsonElement root, string key, string source, int min)
    {
        if (!root.TryGetProperty(key, out JsonElement e) || e.ValueKind == JsonValueKind.Null) return null;
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int value))
            throw new ModelLoadException($"'{source}': '{key}' must be an integer, found {e.GetRawText()}.", source);
        if (value < min)
            throw new ModelLoadException($"'{source}': '{key}' is {value}; it must be at least {min}.", source);
        return value;
    }

    private static float? OptionalFloat(JsonElement root, string key, string source)
    {
        if (!root.TryGetProperty(key, out JsonElement e) || e.ValueKind == JsonValueKind.Null) return null;
        // Checked as the float it is used as: 1e300 is a finite double but an infinite float, and 1e-50 a float zero.
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetDouble(out double value) || !((float)value > 0) || float.IsInfinity((float)value))
            throw new ModelLoadException($"'{source}': '{key}' must be a positive number a float can hold, found {e.GetRawText()}.", source);
        return (float)value;
    }

    private static double? OptionalProbability(JsonElement root, string key, string source)
    {
        if (!root.TryGetProperty(key, out JsonElement e) || e.ValueKind == JsonValueKind.Null) return null;
        if (e.ValueKind != JsonValueKind.Number || !e.TryGetDouble(out double value) || !(value is >= 0 and <= 1))
            throw new ModelLoadException($"'{source}': '{key}' must be a probability from 0 to 1, found {e.GetRawText()}.", source);
        return value;
    }

    private static bool? OptionalBool(JsonElement root, string key, string source)
    {
        if (!root.TryGetProperty(key, out JsonElement e) || e.ValueKind == JsonValueKind.Null) return null;
        return e.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new ModelLoadException($"'{source}': '{key}' must be true or false, found {e.GetRawText()}.", source),
        };
    }

    private static string[]? OptionalStrings(JsonElement root, string key, string source)
    {
        if (!root.TryGetProperty(key, out JsonElement e) || e.ValueKind == JsonValueKind.Null) return null;
        if (e.ValueKind != JsonValueKind.Array || e.EnumerateArray().Any(a => a.ValueKind != JsonValueKind.String))
            throw new ModelLoadException($"'{source}': '{key}' must be a list of strings, found {e.GetRawText()}.", source);
        return e.EnumerateArray().Select(a => a.GetString()!).ToArray();
    }

    private static string? OptionalString(JsonElement root, string key, string source)
    {
        if (!root.TryGetProperty(key, out JsonElement e) || e.ValueKind == JsonValueKind.Null) return null;
        if (e.ValueKind != JsonValueKind.String)
            throw new ModelLoadException($"'{source}': '{key}' must be a string, found {e.GetRawText()}.", source);
        return e.GetString();
    }
}
