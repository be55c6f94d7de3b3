// GeneralSentencePieceTests: SentencePiece models that are not T5's (tests/fixtures/tokenizer/sentencepiece): a model
// trained with user_defined_symbols matches Google's ids, a model without <pad> loads, other kinds are refused by name.

using System.Text.Json;

namespace ManagedT5.Tokenizer.Tests;

public sealed class GeneralSentencePieceTests
{
    private static string Model(string name) => Path.Combine(Fixtures.Directory, "sentencepiece", name);

    private static readonly Lazy<T5Tokenizer> s_userDefined = new(() => T5Tokenizer.FromFile(Model("user-defined.model")));

    public static TheoryData<int> UserDefinedCases() => [.. Enumerable.Range(0, LoadCases().Count)];

    private static List<(string Text, int[] Ids, string[] Pieces)> LoadCases()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Model("user-defined-cases.json")));
        return doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => (
            c.GetProperty("text").GetString()!,
            c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            c.GetProperty("pieces").EnumerateArray().Select(e => e.GetString()!).ToArray())).ToList();
    }

    [Theory]
    [MemberData(nameof(UserDefinedCases))]
    public void UserDefinedPiecesScoreAsGoogleDoes(int index)
    {
        // Google starts max_score_ at FLT_MIN, so a user-defined piece scores about -0.1 and wins inside words:
        // "permifooring" is ▁p er m i foo r ing, not ... f o o ...
        var (text, ids, pieces) = LoadCases()[index];
        Assert.Equal(ids, s_userDefined.Value.EncodeRaw(text));
        Assert.Equal(pieces, s_userDefined.Value.EncodeToPieces(text));
    }

    [Fact]
    public void ModelWithoutPadLoadsWithItsOwnVocabulary()
    {
        var tokenizer = s_userDefined.Value;
        Assert.Equal(400, tokenizer.VocabSize);   // no T5 sentinels appended to a model that is not laid out as T5's
        Assert.Equal(-1, tokenizer.PadId);
        Assert.Equal(2, tokenizer.EosId);
        Assert.Equal(0, tokenizer.UnkId);
        Assert.Equal([.. tokenizer.EncodeRaw("foo bar"), 2], tokenizer.Encode("foo bar"));
        // Its control pieces are split out of the text as HF's slow tokenizer does.
        Assert.Equal([1, .. tokenizer.EncodeRaw("foo")], tokenizer.Encode("<s>foo", addEos: false));
    }

    [Theory]
    [InlineData("kind-bpe.model", "BPE")]
    [InlineData("kind-char.model", "char")]
    [InlineData("kind-word.model", "word")]
    [InlineData("kind-suffix.model", "treat_whitespace_as_suffix")]
    public void UnsupportedKindsAreNamed(string file, string kind)
    {
        string path = Model(file);
        var e = Assert.Throws<TokenizerException>(() => T5Tokenizer.FromFile(path));
        Assert.Contains(path, e.Message);
        Assert.Contains(kind, e.Message);
        Assert.DoesNotContain("truncated", e.Message);
    }
}
