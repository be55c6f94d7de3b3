// The one table of generate() options by their HF names: kind of value, default, meaning, and how each is read from and
// written to GenerationOptions. generation_config.json, the CLI's flags, the parity tests' reference.json settings and
// the chat client's AdditionalProperties all go through it, so a new option is one property and one row here.
using System.Globalization;
using System.Text.Json;

namespace ManagedT5.Generation;

/// <summary>The kind of value a <see cref="GenerationOptionInfo"/> takes, and so how it is converted.</summary>
public enum GenerationOptionKind
{
    /// <summary>An integer (<see cref="int"/>).</summary>
    Integer,
    /// <summary>An integer, or unset (<see cref="Nullable{Int32}"/>).</summary>
    OptionalInteger,
    /// <summary>A finite number (<see cref="float"/>).</summary>
    Number,
    /// <summary>true or false.</summary>
    Boolean,
    /// <summary>true, false or "never" (<see cref="Generation.EarlyStopping"/>).</summary>
    EarlyStopping,
    /// <summary>An unsigned 64-bit integer, or unset (the sampling seed).</summary>
    Seed,
}

/// <summary>One option of <see cref="GenerationOptions"/> under its HF name, with what it means and its default.</summary>
public sealed class GenerationOptionInfo
{
    private readonly Func<GenerationOptions, object?> _get;
    private readonly Func<GenerationOptions, object?, GenerationOptions> _set;

    private GenerationOptionInfo(string name, GenerationOptionKind kind, string description, bool isHf, string? defaultText,
        bool listOfOne, Func<GenerationOptions, object?> get, Func<GenerationOptions, object?, GenerationOptions> set)
    {
        Name = name;
        Kind = kind;
        Description = description;
        IsHf = isHf;
        _get = get;
        _set = set;
        ListOfOne = listOfOne;
        DefaultText = defaultText ?? Format(get(new GenerationOptions()));
    }

    /// <summary>The HF name in snake_case (num_beams), as in generation_config.json and in error messages' ParamName.</summary>
    public string Name { get; }
    /// <summary>The kind of value.</summary>
    public GenerationOptionKind Kind { get; }
    /// <summary>What the option does, in one line.</summary>
    public string Description { get; }
    /// <summary>True for HF GenerationConfig's own options (read from generation_config.json); false for ManagedT5's
    /// (the sampling seed, the prompt-length guard).</summary>
    public bool IsHf { get; }
    /// <summary>The default as text: HF's for HF options ("20", "unset", "the model's, 1 for T5").</summary>
    public string DefaultText { get; }
    /// <summary>Whether a JSON list of exactly one value is accepted (HF allows a list of EOS ids).</summary>
    public bool ListOfOne { get; }

    /// <summary>What a value must be, for messages: "an integer in [...]", "true or false".</summary>
    public string Expected => Kind switch
    {
        GenerationOptionKind.Integer or GenerationOptionKind.OptionalInteger => ListOfOne
            ? "one token id (ManagedT5 stops on a single EOS id)"
            : $"an integer in [{int.MinValue}, {int.MaxValue}]",
        GenerationOptionKind.Number => "a finite number",
        GenerationOptionKind.Boolean => "true or false",
        GenerationOptionKind.EarlyStopping => "true, false or \"never\"",
        _ => $"an integer in [0, {ulong.MaxValue}]",
    };

    /// <summary>This option's value in <paramref name="options"/> (boxed; null when unset).</summary>
    public object? Get(GenerationOptions options) => _get(options);

    /// <summary><paramref name="options"/> with this option set to <paramref name="value"/>, which is first converted as
    /// <see cref="TryConvert"/> does.</summary>
    /// <exception cref="ArgumentException">The value is not of this option's kind (ParamName: <see cref="Name"/>).</exception>
    public GenerationOptions Set(GenerationOptions options, object? value)
    {
        if (!TryConvert(value, out object? converted))
            throw new ArgumentException($"{Name}: {Describe(value)} is not {Expected}.", Name);
        return _set(options, converted);
    }

    /// <summary>Converts a value to this option's type: the CLR type itself, other integer or number types that hold it
    /// exactly, or a <see cref="JsonElement"/> (as JSON readers and Microsoft.Extensions.AI hand them over). Null is
    /// refused: a caller that means "unset" leaves the option alone.</summary>
    public bool TryConvert(object? value, out object? result)
    {
        result = value is JsonElement json ? FromJson(json) : FromClr(value);
        return result is not null;
    }

    private object? FromClr(object? value) => Kind switch
    {
        GenerationOptionKind.Integer or GenerationOptionKind.OptionalInteger => value switch
        {
            int i => i,
            long l and >= int.MinValue and <= int.MaxValue => (int)l,
            short or byte or sbyte or ushort => Convert.ToInt32(value, CultureInfo.InvariantCulture),
            _ => null,
        },
        GenerationOptionKind.Number => value switch
        {
            float f => Finite(f),
            double d => Finite((float)d),
            int or long or short or byte or decimal => Finite(Convert.ToSingle(value, CultureInfo.InvariantCulture)),
            _ => null,
        },
        GenerationOptionKind.Boolean => value as bool?,
        GenerationOptionKind.EarlyStopping => value switch
        {
            EarlyStopping e => e,
            bool b => b ? EarlyStopping.True : EarlyStopping.False,
            "never" => EarlyStopping.Never,
            _ => null,
        },
        _ => value switch
        {
            ulong u => u,
            long l and >= 0 => (ulong)l,
            int i and >= 0 => (ulong)i,
            _ => null,
        },
    };

    private object? FromJson(JsonElement e) => Kind switch
    {
        GenerationOptionKind.Integer or GenerationOptionKind.OptionalInteger => e.ValueKind switch
        {
            JsonValueKind.Number when e.TryGetInt32(out int v) => v,
            JsonValueKind.Array when ListOfOne && e.GetArrayLength() == 1 => FromJson(e[0]),
            _ => null,
        },
        GenerationOptionKind.Number => e.ValueKind == JsonValueKind.Number && e.TryGetDouble(out double d) ? Finite((float)d) : null,
        GenerationOptionKind.Boolean => e.ValueKind switch { JsonValueKind.True => true, JsonValueKind.False => false, _ => null },
        GenerationOptionKind.EarlyStopping => e.ValueKind switch
        {
            JsonValueKind.True => EarlyStopping.True,
            JsonValueKind.False => EarlyStopping.False,
            JsonValueKind.String when e.GetString() == "never" => EarlyStopping.Never,
            _ => null,
        },
        _ => e.ValueKind == JsonValueKind.Number && e.TryGetUInt64(out ulong u) ? u : null,
    };

    private static object? Finite(float f) => float.IsFinite(f) ? f : null;

    private static string Describe(object? value) => value switch
    {
        null => "null",
        JsonElement j => j.GetRawText() is var raw && raw.Length > 40 ? raw[..37] + "..." : raw,
        float or double => Convert.ToString(value, CultureInfo.InvariantCulture)!,
        _ => $"'{value}' ({value.GetType().Name})",
    };

    /// <summary>A default as the help and docs show it: unset, false, 1.0, 20.</summary>
    private static string Format(object? value) => value switch
    {
        null => "unset",
        bool b => b ? "true" : "false",
        float f => f.ToString("0.0##", CultureInfo.InvariantCulture),
        EarlyStopping e => e.ToString().ToLowerInvariant(),
        _ => Convert.ToString(value, CultureInfo.InvariantCulture)!,
    };

    internal static GenerationOptionInfo Row<T>(string name, GenerationOptionKind kind, Func<GenerationOptions, T> get,
        Func<GenerationOptions, T, GenerationOptions> set, string description, bool isHf = true, string? defaultText = null,
        bool listOfOne = false) =>
        new(name, kind, description, isHf, defaultText, listOfOne, o => get(o), (o, v) => set(o, (T)v!));
}

/// <summary>Every option of <see cref="GenerationOptions"/> by its HF name, in the order the CLI's help lists them.</summary>
public static class GenerationOptionTable
{
    private const GenerationOptionKind Int = GenerationOptionKind.Integer, OptionalInt = GenerationOptionKind.OptionalInteger,
        Number = GenerationOptionKind.Number, Bool = GenerationOptionKind.Boolean;

    /// <summary>The options. Descriptions name other options by their HF names (the CLI turns them into flags).</summary>
    public static IReadOnlyList<GenerationOptionInfo> All { get; } =
    [
        GenerationOptionInfo.Row<int?>("max_new_tokens", OptionalInt, o => o.MaxNewTokens, (o, v) => o with { MaxNewTokens = v },
            "Most tokens to generate, start token not counted; wins over max_length"),
        GenerationOptionInfo.Row<int>("max_length", Int, o => o.MaxLength, (o, v) => o with { MaxLength = v },
            "Most tokens in the output, decoder start token included"),
        GenerationOptionInfo.Row<int>("min_length", Int, o => o.MinLength, (o, v) => o with { MinLength = v },
            "EOS is blocked while the output (start token included) is shorter"),
        GenerationOptionInfo.Row<int>("min_new_tokens", Int, o => o.MinNewTokens, (o, v) => o with { MinNewTokens = v },
            "EOS is blocked until this many tokens are generated"),
        GenerationOptionInfo.Row<int>("num_beams", Int, o => o.NumBeams, (o, v) => o with { NumBeams = v },
            "Beam search width; 1 = greedy or sampling"),
        GenerationOptionInfo.Row<float>("length_penalty", Number, o => o.LengthPenalty, (o, v) => o with { LengthPenalty = v },
            "Beam scores are sum_logprobs / length ** this; > 0 favours longer outputs"),
        GenerationOptionInfo.Row<EarlyStopping>("early_stopping", GenerationOptionKind.EarlyStopping, o => o.EarlyStopping,
            (o, v) => o with { EarlyStopping = v },
            "Beam search stops: true (once num_beams outputs are finished), false (heuristic) or never"),
        GenerationOptionInfo.Row<int>("num_return_sequences", Int, o => o.NumReturnSequences, (o, v) => o with { NumReturnSequences = v },
            "Outputs per prompt (at most num_beams in beam search)"),
        GenerationOptionInfo.Row<bool>("do_sample", Bool, o => o.DoSample, (o, v) => o with { DoSample = v },
            "Sample instead of taking the most likely token (true/false)"),
        GenerationOptionInfo.Row<float>("temperature", Number, o => o.Temperature, (o, v) => o with { Temperature = v },
            "Sampling: logits are divided by this (> 0); lower is more deterministic"),
        GenerationOptionInfo.Row<int>("top_k", Int, o => o.TopK, (o, v) => o with { TopK = v },
            "Sampling: keep the k most likely tokens; 0 = off"),
        GenerationOptionInfo.Row<float>("top_p", Number, o => o.TopP, (o, v) => o with { TopP = v },
            "Sampling: keep the fewest tokens whose probabilities sum to p, in (0, 1]"),
        GenerationOptionInfo.Row<float>("repetition_penalty", Number, o => o.RepetitionPenalty, (o, v) => o with { RepetitionPenalty = v },
            "Tokens already in the output are penalised by this factor; 1 = off"),
        GenerationOptionInfo.Row<int>("no_repeat_ngram_size", Int, o => o.NoRepeatNgramSize, (o, v) => o with { NoRepeatNgramSize = v },
            "No n-gram of this size appears twice; 0 = off"),
        GenerationOptionInfo.Row<ulong?>("seed", GenerationOptionKind.Seed, o => o.Seed, (o, v) => o with { Seed = v },
            "Sampling seed; the same seed gives the same output", isHf: false, defaultText: "random"),
        GenerationOptionInfo.Row<int?>("eos_token_id", OptionalInt, o => o.EosTokenId, (o, v) => o with { EosTokenId = v },
            "End-of-sequence token", defaultText: "the model's, 1 for T5", listOfOne: true),
        GenerationOptionInfo.Row<int?>("pad_token_id", OptionalInt, o => o.PadTokenId, (o, v) => o with { PadTokenId = v },
            "Padding token", defaultText: "the model's, 0 for T5"),
        GenerationOptionInfo.Row<int?>("decoder_start_token_id", OptionalInt, o => o.DecoderStartTokenId,
            (o, v) => o with { DecoderStartTokenId = v }, "First decoder token", defaultText: "the model's, 0 for T5"),
        GenerationOptionInfo.Row<int>("max_input_tokens", Int, o => o.MaxInputTokens, (o, v) => o with { MaxInputTokens = v },
            "Refuse prompts longer than this many tokens (a ManagedT5 guard, not HF's)", isHf: false),
    ];

    /// <summary>The option with this HF name, or null.</summary>
    public static GenerationOptionInfo? Find(string name)
    {
        foreach (GenerationOptionInfo option in All)
            if (option.Name == name) return option;
        return null;
    }
}
