// ApiTests: the T5 facade — vocabulary, sentinels, offsets, batches with padding and truncation,
// decoding, the allocation-free span path, thread safety, and agreement of the two file formats.

namespace ManagedT5.Tokenizer.Tests;

public sealed class ApiTests
{
    private static T5Tokenizer Tokenizer => Fixtures.Spiece;

    [Theory]
    [InlineData("spiece")]
    [InlineData("json")]
    public void VocabularyAndSpecialIds(string source)
    {
        var t = Fixtures.Get(source);
        Assert.Equal(32100, t.VocabSize);
        Assert.Equal(0, t.PadId);
        Assert.Equal(1, t.EosId);
        Assert.Equal(2, t.UnkId);
        Assert.Equal("▁Hello", t.IdToPiece(8774));
        Assert.Equal(8774, t.PieceToId("▁Hello"));
        Assert.Equal("<extra_id_0>", t.IdToPiece(32099));
        Assert.Equal("<extra_id_99>", t.IdToPiece(32000));
        Assert.Equal(32099, t.PieceToId("<extra_id_0>"));
        Assert.Equal(t.UnkId, t.PieceToId("no such piece"));
        Assert.False(t.TryGetPieceId("no such piece", out _));
        Assert.Equal(32094, t.SentinelId(5));
        Assert.True(t.IsSpecial(0) && t.IsSpecial(1) && t.IsSpecial(2) && t.IsSpecial(32000) && !t.IsSpecial(3));
        Assert.Throws<ArgumentOutOfRangeException>(() => t.IdToPiece(32100));
        Assert.Throws<ArgumentOutOfRangeException>(() => t.IdToPiece(-1));
    }

    [Fact]
    public void BothSourcesHaveTheSameVocabulary()
    {
        for (int id = 0; id < Fixtures.Spiece.VocabSize; id++)
        {
            Assert.Equal(Fixtures.Spiece.IdToPiece(id), Fixtures.Json.IdToPiece(id));
            Assert.Equal(Fixtures.Spiece.IsSpecial(id), Fixtures.Json.IsSpecial(id));
        }
    }

    [Fact]
    public void SentinelsInTextBecomeSentinelIds()
    {
        // Each stretch between sentinels is encoded on its own, as HuggingFace's T5Tokenizer does.
        Assert.Equal([32099, 1622, 630, 40, 32098, 1], Tokenizer.Encode("<extra_id_0> sentinel <extra_id_1>"));
        Assert.Equal([71, 32094, .. Tokenizer.EncodeRaw("B"), 1], Tokenizer.Encode("A <extra_id_5>B"));
        Assert.Equal([32000], Tokenizer.Encode("<extra_id_99>", addEos: false));
        // Not sentinels: out of range, malformed, and the literal special tokens.
        Assert.Equal(Tokenizer.Encode("<extra_id_100>", parseSpecialTokens: false), Tokenizer.Encode("<extra_id_100>"));
        Assert.Equal(Tokenizer.Encode("<extra_id_01>", parseSpecialTokens: false), Tokenizer.Encode("<extra_id_01>"));
        Assert.Equal(Tokenizer.Encode("<extra_id_", parseSpecialTokens: false), Tokenizer.Encode("<extra_id_"));
        // HuggingFace's from_pretrained tokenizers split out </s>, <pad> and <unk> written in the text too ...
        Assert.Equal([1, 11, 0], Tokenizer.Encode("</s> and <pad>", addEos: false));
        // ... unless the text is untrusted: then every special-token spelling is plain text.
        Assert.Equal(Tokenizer.EncodeRaw("</s> and <pad>"), Tokenizer.Encode("</s> and <pad>", addEos: false, parseSpecialTokens: false));
        Assert.DoesNotContain(1, Tokenizer.Encode("</s> and <pad> <unk> <extra_id_0>", addEos: false, parseSpecialTokens: false));
    }

    [Fact]
    public void EncodeWithoutEos() => Assert.Equal([8774, 296], Tokenizer.Encode("Hello world", addEos: false));

    [Fact]
    public void OffsetsPointIntoTheOriginalText()
    {
        const string text = "Hello  world <extra_id_0>!";
        var encoded = Tokenizer.EncodeWithOffsets(text);
        Assert.Equal(Tokenizer.Encode(text), encoded.Ids);
        Assert.Equal(encoded.Ids.Length, encoded.Offsets.Length);
        Assert.Equal("Hello", text[encoded.Offsets[0].ToRange()]);
        Assert.Equal("  world", text[encoded.Offsets[1].ToRange()]); // "▁world" covers the whitespace before it
        int sentinel = Array.IndexOf(encoded.Ids, 32099);
        Assert.Equal("<extra_id_0>", text[encoded.Offsets[sentinel].ToRange()]);
        Assert.Equal(new TokenSpan(text.Length, 0), encoded.Offsets[^1]); // </s>
    }

    [Fact]
    public void OffsetsCoverNormalizedCharacters()
    {
        const string text = "ＦＵＬＬ ﬁsh";
        var encoded = Tokenizer.EncodeWithOffsets(text, addEos: false);
        Assert.Equal(["▁FULL", "▁fish"], encoded.Ids.Select(Tokenizer.IdToPiece));
        Assert.Equal("ＦＵＬＬ", text[encoded.Offsets[0].ToRange()]);
        Assert.Equal(" ﬁsh", text[encoded.Offsets[1].ToRange()]);
    }

    [Fact]
    public void BatchIsRightPaddedWithMask()
    {
        var batch = Tokenizer.EncodeBatch(["Hello world", "translate English to German: How old are you?", ""]);
        Assert.Equal(3, batch.BatchSize);
        Assert.Equal(11, batch.SequenceLength);
        Assert.Equal([3, 11, 1], batch.Lengths);
        Assert.Equal([8774, 296, 1, 0, 0, 0, 0, 0, 0, 0, 0], batch.InputIds[..11]);
        Assert.Equal([1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0], batch.AttentionMask[..11]);
        Assert.Equal([1], batch.GetIds(2).ToArray());
        Assert.Equal(33, batch.InputIds.Length);
    }

    [Fact]
    public void BatchTruncationKeepsEosLast()
    {
        var batch = Tokenizer.EncodeBatch(["translate English to German: How old are you?", "Hi"], maxLength: 4);
        Assert.Equal(4, batch.SequenceLength);
        Assert.Equal([13959, 1566, 12, 1], batch.GetIds(0).ToArray());
        Assert.Equal(Tokenizer.Encode("Hi"), batch.GetIds(1).ToArray());

        var padded = Tokenizer.EncodeBatch(["Hi"], maxLength: 8, padToMaxLength: true);
        Assert.Equal(8, padded.SequenceLength);

        var e = Assert.Throws<ArgumentException>(() => Tokenizer.EncodeBatch(["a long enough sentence here"], maxLength: 3, truncate: false));
        Assert.Contains("maxLength", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => Tokenizer.EncodeBatch(["x"], maxLength: 0));
    }

    [Fact]
    public void DecodeHandlesSentinelsAndOutOfRangeIds()
    {
        int[] ids = [32099, 8774, 32098, 296, 1, 0];
        Assert.Equal("Hello world", Tokenizer.Decode(ids));
        Assert.Equal("<extra_id_0> Hello<extra_id_1> world</s> <pad>", Tokenizer.Decode(ids, skipSpecialTokens: false));
        Assert.Equal("Hello world", Tokenizer.Decode([8774, 32100, 32127, 296, -5])); // Flan-T5 logits have 32128 ids
        Assert.Throws<ArgumentOutOfRangeException>(() => Tokenizer.DecodeRaw([8774, 32127]));
        Assert.Equal("", Tokenizer.Decode([]));
    }

    [Fact]
    public void DecodeCleansUpSpacesLikeHuggingFace()
    {
        int[] ids = Tokenizer.Encode("Yes . It 's done , is n't it ?");
        Assert.Equal("Yes. It's done, isn't it?", Tokenizer.Decode(ids));
    }

    [Fact]
    public void SpanEncodingAllocatesNothing()
    {
        const string text = "translate English to German: The house is wonderful. <extra_id_0> ﬁ ½ Ｗ 😀";
        Span<int> buffer = stackalloc int[64];
        int count = Tokenizer.Encode(text, buffer);
        Assert.Equal(Tokenizer.Encode(text), buffer[..count].ToArray());
        Tokenizer.EncodeRaw(text, buffer);

        // The fewest bytes of three rounds: one round once counted bytes in a full run (not reproduced alone; one-time
        // runtime work on this thread, such as compiling a loop for on-stack replacement, is the likely cause). Code
        // that allocates per call allocates in every round, so this still fails it.
        long fewest = long.MaxValue;
        for (int round = 0; round < 3 && fewest != 0; round++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 100; i++)
            {
                Tokenizer.Encode(text, buffer);
                Tokenizer.EncodeRaw(text, buffer);
            }
            fewest = Math.Min(fewest, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        Assert.Equal(0, fewest);
    }

    [Fact]
    public void SpanEncodingReportsTheFullLengthWhenTheBufferIsShort()
    {
        Span<int> small = stackalloc int[2];
        int needed = Tokenizer.Encode("translate English to German: How old are you?", small);
        Assert.Equal(11, needed);
        Assert.Equal([13959, 1566], small.ToArray());
    }

    [Fact]
    public void ConcurrentUseGivesTheSameIds()
    {
        var texts = RandomText.Generate(500, 11);
        var expected = texts.Select(t => Tokenizer.Encode(t)).ToArray();
        var actual = new int[texts.Count][];
        Parallel.For(0, texts.Count, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i => actual[i] = Tokenizer.Encode(texts[i]));
        for (int i = 0; i < texts.Count; i++) Assert.Equal(expected[i], actual[i]);
    }

    [Fact]
    public void NormalizationFollowsNmtNfkc()
    {
        Assert.Equal("▁Hello▁world", Tokenizer.Normalize("  Hello \u00A0\t world \r\n"));
        Assert.Equal("▁FULLWIDTH▁fi▁1⁄2▁1", Tokenizer.Normalize("ＦＵＬＬＷＩＤＴＨ ﬁ ½ ①"));
        Assert.Equal("", Tokenizer.Normalize(" \t\n "));
    }
}
