// MicrosoftMlTokenizersTests: records why ManagedT5 has its own tokenizer. Microsoft.ML.Tokenizers 2.0.1 cannot load
// T5's spiece.model (its SentencePiece loader throws IndexOutOfRangeException in SentencePieceUnigramModel's
// constructor). The test records what happens without pinning their bug: it reports the exception, and if a later
// version loads the file, it checks that their ids equal ours.

using System.Reflection;
using Microsoft.ML.Tokenizers;
using Xunit.Abstractions;

namespace ManagedT5.Tokenizer.Tests;

public sealed class MicrosoftMlTokenizersTests(ITestOutputHelper output)
{
    /// <summary>Ordinary prompts: a version that loads spiece.model must give sentencepiece's ids for these.</summary>
    private static readonly string[] Prompts =
    [
        "Hello world",
        "translate English to German: The house is wonderful.",
        "summarize: studies have shown that owning a dog is good for you",
        "Answer the following question. What is the boiling point of water in Fahrenheit?",
    ];

    /// <summary>Loads spiece.model with SentencePieceTokenizer and reports the outcome: the exception (2.0.1 throws),
    /// or, once it loads, the same ids as ours for every prompt (end-of-sentence appended, as T5 does).</summary>
    [Fact]
    public void SentencePieceTokenizerOnT5ModelThrowsOrMatchesOurs()
    {
        string version = typeof(SentencePieceTokenizer).Assembly
            .GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "?";
        SentencePieceTokenizer theirs;
        using (var stream = File.OpenRead(Fixtures.SpieceModel))
        {
            try
            {
                theirs = SentencePieceTokenizer.Create(stream, addBeginningOfSentence: false, addEndOfSentence: true);
            }
            catch (Exception e)
            {
                string where = e.StackTrace?.Split('\n').FirstOrDefault()?.Trim() ?? "no stack trace";
                output.WriteLine($"Microsoft.ML.Tokenizers {version} cannot load spiece.model: {e.GetType().Name}: {e.Message} ({where})");
                return;
            }
        }
        output.WriteLine($"Microsoft.ML.Tokenizers {version} loads spiece.model; comparing its ids with ours.");
        foreach (string prompt in Prompts)
            Assert.Equal(Fixtures.Spiece.Encode(prompt), theirs.EncodeToIds(prompt));
    }

    [Fact]
    public void OurTokenizerLoadsTheSameModel() =>
        Assert.Equal([8774, 296, 1], T5Tokenizer.FromFile(Fixtures.SpieceModel).Encode("Hello world"));
}
