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

        // The reference was made without special-token splitting: "<extra_id_0>" in the text stays text.
        Assert.Equal(c.HfIds, tokenizer.Encode(c.Text, parseSentinels: false));
        Assert.Equal(c.HfDecoded, tokenizer.Decode(c.HfIds));
        Assert.Equal(c.HfDecodedWithSpecial, tokenizer.Decode(c.HfIds, skipSpecialTokens: false));

        // With the default (sentinels parsed) only texts that contain a sentinel differ.
        if (!c.Text.Contains("<extra_id_", StringComparison.Ordinal))
            Assert.Equal(c.HfIds, tokenizer.Encode(c.Text));
    }
}
