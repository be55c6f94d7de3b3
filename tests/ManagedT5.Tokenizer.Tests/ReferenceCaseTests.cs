// ReferenceCaseTests: every case of t5-tokenizer-cases.json, loaded from spiece.model and from
// tokenizer.json, must match sentencepiece's and HuggingFace's output exactly.

using ManagedT5.Tokenizer;

namespace ManagedT5.Tokenizer.Tests;

public sealed class ReferenceCaseTests
{
    public static TheoryData<int, string> CasesBySource()
    {
        var data = new TheoryData<int, string>();
        for (int i = 0; i < Fixtures.Cases.Count; i++)
        {
            foreach (string source in Fixtures.Sources) data.Add(i, source);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(CasesBySource))]
    public void SentencePieceIdsPiecesAndDecodeMatch(int index, string source)
    {
        var c = Fixtures.Cases[index];
        var tokenizer = Fixtures.Get(source);

        Assert.Equal(c.SpIds, tokenizer.EncodeRaw(c.Text));
        Assert.Equal(c.SpPieces, tokenizer.EncodeToPieces(c.Text));
        Assert.Equal(c.SpDecoded, tokenizer.DecodeRaw(c.SpIds));
    }

    [Theory]
    [MemberData(nameof(CasesBySource))]
    public void HuggingFaceIdsAndDecodeMatch(int index, string source)
    {
        var c = Fixtures.Cases[index];
        var tokenizer = Fixtures.Get(source);

        // The default is HF's slow tokenizer as from_pretrained builds it: special tokens in the text become their ids.
        Assert.Equal(c.HfIds, tokenizer.Encode(c.Text));
        Assert.Equal(c.HfDecoded, tokenizer.Decode(c.HfIds));
        Assert.Equal(c.HfDecodedWithSpecial, tokenizer.Decode(c.HfIds, skipSpecialTokens: false));
    }

    [Theory]
    [MemberData(nameof(CasesBySource))]
    public void FastTokenizerIdsMatch(int index, string source)
    {
        var c = Fixtures.Cases[index];
        var fast = Fixtures.Get(source).WithCompat(TokenizerCompat.Fast);

        Assert.Equal(c.HfFastIds, fast.Encode(c.Text));
        Span<int> buffer = new int[c.HfFastIds.Length + 4];
        Assert.Equal(c.HfFastIds, buffer[..fast.Encode(c.Text.AsSpan(), buffer)].ToArray());
        // Fast mode leaves sentencepiece's own encoding alone.
        Assert.Equal(c.SpIds, fast.EncodeRaw(c.Text));
    }

    [Theory]
    [MemberData(nameof(CasesBySource))]
    public void SpecialTokensAsTextGiveSentencePieceIds(int index, string source)
    {
        var c = Fixtures.Cases[index];
        var tokenizer = Fixtures.Get(source);

        // Untrusted text: "</s>", "<pad>", "<unk>", "<extra_id_0>" are plain characters, exactly as sentencepiece reads them.
        Assert.Equal([.. c.SpIds, 1], tokenizer.Encode(c.Text, parseSpecialTokens: false));
        Assert.Equal(c.SpIds, tokenizer.Encode(c.Text, addEos: false, parseSpecialTokens: false));
    }

    public static TheoryData<int> ByT5Cases() => [.. Enumerable.Range(0, Fixtures.ByT5Cases.Count)];

    [Theory]
    [MemberData(nameof(ByT5Cases))]
    public void ByT5IdsAndDecodeMatch(int index)
    {
        var c = Fixtures.ByT5Cases[index];
        var tokenizer = Fixtures.ByT5;

        Assert.Equal(c.HfIds, tokenizer.Encode(c.Text));
        Assert.Equal(c.HfIds, tokenizer.WithCompat(TokenizerCompat.Fast).Encode(c.Text)); // ByT5 has no fast tokenizer
        Assert.Equal(c.HfDecoded, tokenizer.Decode(c.HfIds));
        // transformers 4.19 wrote the repr of its AddedToken for </s> (a bug fixed since); the spelling is "</s>".
        string withSpecial = c.HfDecodedWithSpecial.Replace(
            "AddedToken(content='</s>', single_word=False, lstrip=False, rstrip=False, normalized=True)", "</s>", StringComparison.Ordinal);
        Assert.Equal(withSpecial, tokenizer.Decode(c.HfIds, skipSpecialTokens: false));
    }
}
