// Fixtures: where the reference files are (copied next to the test assembly from tests/fixtures/tokenizer)
// and the two tokenizers under test, loaded once: from spiece.model and from tokenizer.json.

using System.Text.Json;
using ManagedT5.Tokenizer;

namespace ManagedT5.Tokenizer.Tests;

internal static class Fixtures
{
    public static string Directory { get; } = Path.Combine(AppContext.BaseDirectory, "fixtures", "tokenizer");
    public static string SpieceModel { get; } = Path.Combine(Directory, "spiece.model");
    public static string TokenizerJson { get; } = Path.Combine(Directory, "tokenizer.json");
    public static string CasesJson { get; } = Path.Combine(Directory, "t5-tokenizer-cases.json");

    private static readonly Lazy<T5Tokenizer> s_fromSpiece = new(() => T5Tokenizer.FromFile(SpieceModel));
    private static readonly Lazy<T5Tokenizer> s_fromJson = new(() => T5Tokenizer.FromFile(TokenizerJson));

    /// <summary>The tokenizer loaded from spiece.model.</summary>
    public static T5Tokenizer Spiece => s_fromSpiece.Value;

    /// <summary>The tokenizer loaded from tokenizer.json.</summary>
    public static T5Tokenizer Json => s_fromJson.Value;

    /// <summary>"spiece" or "json": the two sources every reference test runs against.</summary>
    public static T5Tokenizer Get(string source) => source switch
    {
        "spiece" => Spiece,
        "json" => Json,
        _ => throw new ArgumentOutOfRangeException(nameof(source), source, null),
    };

    public static readonly string[] Sources = ["spiece", "json"];

    private static readonly Lazy<IReadOnlyList<ReferenceCase>> s_cases = new(() =>
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(CasesJson));
        return doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => new ReferenceCase(
            c.GetProperty("text").GetString()!,
            c.GetProperty("sp_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            c.GetProperty("sp_pieces").EnumerateArray().Select(e => e.GetString()!).ToArray(),
            c.GetProperty("sp_decoded").GetString()!,
            c.GetProperty("hf_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            c.GetProperty("hf_decoded").GetString()!,
            c.GetProperty("hf_decoded_with_special").GetString()!,
            c.GetProperty("hf_fast_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray())).ToList();
    });

    /// <summary>The cases of t5-tokenizer-cases.json (sentencepiece 0.1.97, HuggingFace's slow T5Tokenizer and its fast
    /// tokenizer, both as from_pretrained builds them).</summary>
    public static IReadOnlyList<ReferenceCase> Cases => s_cases.Value;

    public static string ByT5CasesJson { get; } = Path.Combine(Directory, "byt5-tokenizer-cases.json");

    private static readonly Lazy<IReadOnlyList<ByT5Case>> s_byt5Cases = new(() =>
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(ByT5CasesJson));
        return doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => new ByT5Case(
            c.GetProperty("text").GetString()!,
            c.GetProperty("hf_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            c.GetProperty("hf_decoded").GetString()!,
            c.GetProperty("hf_decoded_with_special").GetString()!)).ToList();
    });

    /// <summary>The cases of byt5-tokenizer-cases.json (HuggingFace's ByT5Tokenizer 4.19).</summary>
    public static IReadOnlyList<ByT5Case> ByT5Cases => s_byt5Cases.Value;

    private static readonly Lazy<T5Tokenizer> s_byt5 = new(() => T5Tokenizer.FromDirectory(ByT5Directory));

    /// <summary>tests/fixtures/models/tiny-byt5: config.json says ByT5Tokenizer, there is no spiece.model.</summary>
    public static string ByT5Directory { get; } = Path.Combine(AppContext.BaseDirectory, "fixtures", "tiny-byt5");

    /// <summary>The ByT5 tokenizer of tiny-byt5.</summary>
    public static T5Tokenizer ByT5 => s_byt5.Value;
}

internal sealed record ByT5Case(string Text, int[] HfIds, string HfDecoded, string HfDecodedWithSpecial);

internal sealed record ReferenceCase(
    string Text, int[] SpIds, string[] SpPieces, string SpDecoded, int[] HfIds, string HfDecoded, string HfDecodedWithSpecial,
    int[] HfFastIds);
