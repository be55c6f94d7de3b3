// Decoding options with HuggingFace's names and semantics (GenerationConfig), defaults as HF's.
using System.Text.Json;
using ManagedT5.IO;

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

    /// <summary>Checks every option; an <see cref="ArgumentException"/> names the offending one (ParamName is the HF
    /// name, and the message begins with it).</summary>
    public void Validate(int vocabSize)
    {
        if (Problem(vocabSize, combinations: true) is var (option, message))
            throw new ArgumentException($"{option}: {message}", option);
    }

    /// <summary>The first option that is wrong, as (HF name, what is wrong); null when all are right. Without
    /// <paramref name="combinations"/> each value is checked on its own (what a generation_config.json must satisfy
    /// whatever options a caller later sets).</summary>
    internal (string Option, string Message)? Problem(int vocabSize, bool combinations)
    {
        if (MaxNewTokens is < 1) return ("max_new_tokens", $"must be at least 1, got {MaxNewTokens}.");
        if (MaxNewTokens is null && MaxLength < 2) return ("max_length", $"must be at least 2 (the start token plus one), got {MaxLength}.");
        if (MaxNewTokens > MaxGeneratedLength - 1) return ("max_new_tokens", $"{MaxNewTokens} is absurdly long (limit {MaxGeneratedLength - 1}).");
        if (MaxNewTokens is null && MaxLength > MaxGeneratedLength) return ("max_length", $"{MaxLength} is absurdly long (limit {MaxGeneratedLength}).");
        if (MinLength < 0) return ("min_length", $"must not be negative, got {MinLength}.");
        if (MinNewTokens < 0) return ("min_new_tokens", $"must not be negative, got {MinNewTokens}.");
        if (NumBeams < 1) return ("num_beams", $"must be at least 1, got {NumBeams}.");
        if (NumReturnSequences < 1) return ("num_return_sequences", $"must be at least 1, got {NumReturnSequences}.");
        if (!float.IsFinite(LengthPenalty)) return ("length_penalty", "must be a finite number.");
        if (DoSample && !(Temperature > 0 && float.IsFinite(Temperature)))
            return ("temperature", $"must be > 0 when sampling, got {Temperature}.");
        if (TopK < 0) return ("top_k", $"must not be negative, got {TopK}.");
        if (!(TopP > 0 && TopP <= 1)) return ("top_p", $"must be in (0, 1], got {TopP}.");
        if (!(RepetitionPenalty > 0 && float.IsFinite(RepetitionPenalty))) return ("repetition_penalty", $"must be > 0, got {RepetitionPenalty}.");
        if (NoRepeatNgramSize < 0) return ("no_repeat_ngram_size", $"must not be negative, got {NoRepeatNgramSize}.");
        if (MaxInputTokens < 1) return ("max_input_tokens", $"must be at least 1, got {MaxInputTokens}.");
        foreach (var (name, id) in new[] { ("eos_token_id", EosTokenId), ("pad_token_id", PadTokenId), ("decoder_start_token_id", DecoderStartTokenId) })
            if (id is int v && (v < 0 || v >= vocabSize)) return (name, $"{v} is not a token id in [0, {vocabSize}).");
        if (!combinations) return null;
        if (NumBeams > 1 && NumReturnSequences > NumBeams)
            return ("num_return_sequences", $"({NumReturnSequences}) must not exceed num_beams ({NumBeams}).");
        if (NumBeams == 1 && !DoSample && NumReturnSequences > 1)
            return ("num_return_sequences", "greedy search returns one sequence per prompt; use beam search or do_sample.");
        if (NumBeams > 1 && DoSample) return ("do_sample", "beam sampling is not supported; use num_beams 1 with do_sample, or beam search without it.");
        return null;
    }

    /// <summary>Longest output accepted, start token included (max_length; max_new_tokens + 1).</summary>
    private const int MaxGeneratedLength = 65_536;

    /// <summary>
    /// Defaults from a model folder's generation_config.json (missing file: HF's defaults). Keys this engine does not
    /// use are ignored; a key it uses with a value of the wrong type, out of range or rejected by
    /// <see cref="Validate"/> on its own gives a <see cref="ModelLoadException"/> naming the file and the key. Options
    /// that are only wrong together (num_return_sequences above num_beams) are reported when generating, since a
    /// caller may override one of them.
    /// </summary>
    public static GenerationOptions FromGenerationConfig(string path)
    {
        var o = new GenerationOptions();
        if (!File.Exists(path) && !Directory.Exists(path) && new FileInfo(path).LinkTarget is null) return o;
        byte[] bytes = InputFile.ReadAllBytes(path, InputFile.MaxJsonBytes, out string? problem);
        if (problem is not null) throw new ModelLoadException(problem, path);
        ReadOnlyMemory<byte> utf8 = bytes;
        if (utf8.Span.StartsWith("\uFEFF"u8)) utf8 = utf8[3..];   // a byte order mark
        try
        {
            using JsonDocument doc = JsonDocument.Parse(utf8);
            o = Read(doc.RootElement, path);
        }
        catch (JsonException e)
        {
            throw new ModelLoadException($"'{path}' is not valid JSON: {e.Message}", path, e);
        }
        catch (InvalidOperationException e)
        {
            throw new ModelLoadException($"'{path}' holds a string that is not valid Unicode ({e.Message}); fix or fetch the file again.", path, e);
        }
        if (o.Problem(int.MaxValue, combinations: false) is var (option, message))
            throw new ModelLoadException($"'{path}': {option}: {message} Fix generation_config.json or delete the key.", path);
        return o;
    }

    /// <summary>Every HF option of <see cref="GenerationOptionTable"/> present (and not null) in the object.</summary>
    private static GenerationOptions Read(JsonElement r, string path)
    {
        if (r.ValueKind != JsonValueKind.Object)
            throw new ModelLoadException($"'{path}' is not a JSON object (found {r.ValueKind}); a generation_config.json holds {{\"key\": value, ...}}.", path);
        var o = new GenerationOptions();
        foreach (GenerationOptionInfo option in GenerationOptionTable.All)
        {
            if (!option.IsHf || !r.TryGetProperty(option.Name, out JsonElement e) || e.ValueKind == JsonValueKind.Null) continue;
            if (!option.TryConvert(e, out object? value))
                throw new ModelLoadException(
                    $"'{path}': {option.Name} must be {option.Expected}, found {Shorten(e.GetRawText())}. Fix generation_config.json or delete the key.", path);
            o = option.Set(o, value);
        }
        return o;
    }

    /// <summary>A raw JSON value for a message: at most 40 characters.</summary>
    private static string Shorten(string raw) => raw.Length <= 40 ? raw : raw[..37] + "...";
}
