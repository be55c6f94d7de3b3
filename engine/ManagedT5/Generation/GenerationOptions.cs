// Decoding options with HuggingFace's names and semantics (GenerationConfig), defaults as HF's.
using System.Text.Json;

namespace ManagedT5.Generation;

/// <summary>early_stopping for beam search: True stops when num_beams hypotheses are finished; False uses the
/// length-penalised heuristic; Never runs until no better hypothesis is possible.</summary>
public enum EarlyStopping
{
    /// <summary>early_stopping=False (HF's default).</summary>
    False,
    /// <summary>early_stopping=True.</summary>
    True,
    /// <summary>early_stopping="never".</summary>
    Never,
}

/// <summary>
/// Options for <c>generate</c>, named as in HF's GenerationConfig. Unset token ids come from the model's config.
/// Length limits count as HF counts them for encoder-decoder models: max_length and min_length include the decoder
/// start token; max_new_tokens / min_new_tokens count generated tokens only and win when set.
/// </summary>
public sealed record GenerationOptions
{
    /// <summary>max_new_tokens: most tokens to generate (null: use max_length).</summary>
    public int? MaxNewTokens { get; init; }
    /// <summary>max_length: most tokens in the output including the decoder start token (HF default 20).</summary>
    public int MaxLength { get; init; } = 20;
    /// <summary>min_length: EOS is suppressed while the output (with the start token) is shorter.</summary>
    public int MinLength { get; init; }
    /// <summary>min_new_tokens: EOS is suppressed until this many tokens are generated.</summary>
    public int MinNewTokens { get; init; }
    /// <summary>num_beams: 1 = greedy or sampling.</summary>
    public int NumBeams { get; init; } = 1;
    /// <summary>length_penalty: beam scores are sum_logprobs / generated_len ** length_penalty.</summary>
    public float LengthPenalty { get; init; } = 1f;
    /// <summary>early_stopping for beam search.</summary>
    public EarlyStopping EarlyStopping { get; init; } = EarlyStopping.False;
    /// <summary>num_return_sequences: outputs per prompt (at most num_beams for beam search).</summary>
    public int NumReturnSequences { get; init; } = 1;
    /// <summary>do_sample: sample from the processed distribution instead of taking the best token.</summary>
    public bool DoSample { get; init; }
    /// <summary>temperature for sampling (&gt; 0).</summary>
    public float Temperature { get; init; } = 1f;
    /// <summary>top_k for sampling (0 disables; HF default 50).</summary>
    public int TopK { get; init; } = 50;
    /// <summary>top_p (nucleus) for sampling, in (0, 1].</summary>
    public float TopP { get; init; } = 1f;
    /// <summary>repetition_penalty (1 = off): seen tokens' scores are divided (positive) or multiplied (negative).</summary>
    public float RepetitionPenalty { get; init; } = 1f;
    /// <summary>no_repeat_ngram_size (0 = off): no n-gram of this size appears twice.</summary>
    public int NoRepeatNgramSize { get; init; }
    /// <summary>seed for sampling; the same seed gives the same output.</summary>
    public ulong? Seed { get; init; }
    /// <summary>eos_token_id (null: the model's).</summary>
    public int? EosTokenId { get; init; }
    /// <summary>pad_token_id (null: the model's).</summary>
    public int? PadTokenId { get; init; }
    /// <summary>decoder_start_token_id (null: the model's).</summary>
    public int? DecoderStartTokenId { get; init; }
    /// <summary>Longest prompt accepted, in tokens (absurd lengths are refused before any work).</summary>
    public int MaxInputTokens { get; init; } = 4096;

    /// <summary>HF's effective max_length: max_new_tokens + 1 (the start token) when set, else max_length.</summary>
    public int EffectiveMaxLength => MaxNewTokens is int n ? n + 1 : MaxLength;

    /// <summary>Checks every option; an <see cref="ArgumentException"/> names the offending one.</summary>
    public void Validate(int vocabSize)
    {
        static ArgumentException Bad(string option, string message) => new($"{option}: {message}", option);
        if (MaxNewTokens is < 1) throw Bad("max_new_tokens", $"must be at least 1, got {MaxNewTokens}.");
        if (MaxNewTokens is null && MaxLength < 2) throw Bad("max_length", $"must be at least 2 (the start token plus one), got {MaxLength}.");
        if (EffectiveMaxLength > 65_536) throw Bad(MaxNewTokens is null ? "max_length" : "max_new_tokens", $"{EffectiveMaxLength} is absurdly long (limit 65536).");
        if (MinLength < 0) throw Bad("min_length", $"must not be negative, got {MinLength}.");
        if (MinNewTokens < 0) throw Bad("min_new_tokens", $"must not be negative, got {MinNewTokens}.");
        if (NumBeams < 1) throw Bad("num_beams", $"must be at least 1, got {NumBeams}.");
        if (NumReturnSequences < 1) throw Bad("num_return_sequences", $"must be at least 1, got {NumReturnSequences}.");
        if (NumBeams > 1 && NumReturnSequences > NumBeams)
            throw Bad("num_return_sequences", $"({NumReturnSequences}) must not exceed num_beams ({NumBeams}).");
        if (NumBeams == 1 && !DoSample && NumReturnSequences > 1)
            throw Bad("num_return_sequences", "greedy search returns one sequence per prompt; use beam search or do_sample.");
        if (NumBeams > 1 && DoSample) throw Bad("do_sample", "beam sampling is not supported; use num_beams 1 with do_sample, or beam search without it.");
        if (!float.IsFinite(LengthPenalty)) throw Bad("length_penalty", "must be a finite number.");
        if (DoSample && !(Temperature > 0 && float.IsFinite(Temperature))) throw Bad("temperature", $"must be > 0 when sampling, got {Temperature}.");
        if (TopK < 0) throw Bad("top_k", $"must not be negative, got {TopK}.");
        if (!(TopP > 0 && TopP <= 1)) throw Bad("top_p", $"must be in (0, 1], got {TopP}.");
        if (!(RepetitionPenalty > 0 && float.IsFinite(RepetitionPenalty))) throw Bad("repetition_penalty", $"must be > 0, got {RepetitionPenalty}.");
        if (NoRepeatNgramSize < 0) throw Bad("no_repeat_ngram_size", $"must not be negative, got {NoRepeatNgramSize}.");
        if (MaxInputTokens < 1) throw Bad("max_input_tokens", $"must be at least 1, got {MaxInputTokens}.");
        foreach (var (name, id) in new[] { ("eos_token_id", EosTokenId), ("pad_token_id", PadTokenId), ("decoder_start_token_id", DecoderStartTokenId) })
            if (id is int v && (v < 0 || v >= vocabSize)) throw Bad(name, $"{v} is not a token id in [0, {vocabSize}).");
    }

    /// <summary>Defaults from a model folder's generation_config.json (missing file: HF's defaults).</summary>
    public static GenerationOptions FromGenerationConfig(string path)
    {
        var o = new GenerationOptions();
        if (!File.Exists(path)) return o;
        try
        {
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(path));
            JsonElement r = doc.RootElement;
            int? I(string k) => r.TryGetProperty(k, out JsonElement e) && e.ValueKind == JsonValueKind.Number ? e.GetInt32() : null;
            float? F(string k) => r.TryGetProperty(k, out JsonElement e) && e.ValueKind == JsonValueKind.Number ? e.GetSingle() : null;
            bool? B(string k) => r.TryGetProperty(k, out JsonElement e) && e.ValueKind is JsonValueKind.True or JsonValueKind.False ? e.GetBoolean() : null;
            EarlyStopping? es = r.TryGetProperty("early_stopping", out JsonElement s)
                ? s.ValueKind switch { JsonValueKind.True => EarlyStopping.True, JsonValueKind.False => EarlyStopping.False,
                    JsonValueKind.String when s.GetString() == "never" => EarlyStopping.Never, _ => null }
                : null;
            return o with
            {
                MaxNewTokens = I("max_new_tokens") ?? o.MaxNewTokens,
                MaxLength = I("max_length") ?? o.MaxLength,
                MinLength = I("min_length") ?? o.MinLength,
                MinNewTokens = I("min_new_tokens") ?? o.MinNewTokens,
                NumBeams = I("num_beams") ?? o.NumBeams,
                LengthPenalty = F("length_penalty") ?? o.LengthPenalty,
                EarlyStopping = es ?? o.EarlyStopping,
                NumReturnSequences = I("num_return_sequences") ?? o.NumReturnSequences,
                DoSample = B("do_sample") ?? o.DoSample,
                Temperature = F("temperature") ?? o.Temperature,
                TopK = I("top_k") ?? o.TopK,
                TopP = F("top_p") ?? o.TopP,
                RepetitionPenalty = F("repetition_penalty") ?? o.RepetitionPenalty,
                NoRepeatNgramSize = I("no_repeat_ngram_size") ?? o.NoRepeatNgramSize,
                EosTokenId = I("eos_token_id") ?? o.EosTokenId,
                PadTokenId = I("pad_token_id") ?? o.PadTokenId,
                DecoderStartTokenId = I("decoder_start_token_id") ?? o.DecoderStartTokenId,
            };
        }
        catch (JsonException e)
        {
            throw new ModelLoadException($"'{path}' is not valid JSON: {e.Message}", path, e);
        }
    }
}
