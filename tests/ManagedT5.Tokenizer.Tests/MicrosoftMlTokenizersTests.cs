// MicrosoftMlTokenizersTests: records why ManagedT5 has its own tokenizer — Microsoft.ML.Tokenizers 2.0.1
// cannot load T5's spiece.model (its SentencePiece loader throws), while ours loads the same file.

using Microsoft.ML.Tokenizers;

namespace ManagedT5.Tokenizer.Tests;

public sealed class MicrosoftMlTokenizersTests
{
    /// <summary>SentencePieceTokenizer.Create(spiece.model) throws IndexOutOfRangeException (2.0.1).</summary>
    [Fact]
    public void SentencePieceTokenizerThrowsOnT5Model()
    {
        using var stream = File.OpenRead(Fixtures.SpieceModel);
        var e = Record.Exception(() => SentencePieceTokenizer.Create(stream));
        Assert.NotNull(e);
        Assert.IsType<IndexOutOfRangeException>(e);
        // Thrown inside the library's unigram model constructor, not by anything about the file or stream.
        Assert.Contains("Microsoft.ML.Tokenizers.SentencePieceUnigramModel..ctor", e.StackTrace);
    }

    [Fact]
    public void OurTokenizerLoadsTheSameModel() =>
        Assert.Equal([8774, 296, 1], T5Tokenizer.FromFile(Fixtures.SpieceModel).Encode("Hello world"));
}
