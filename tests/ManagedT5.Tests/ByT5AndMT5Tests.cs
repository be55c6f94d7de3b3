// ByT5AndMT5Tests: the two other T5 families end to end. tiny-byt5 (byte tokenizer chosen from config.json, no
// spiece.model) and tiny-mt5 (model_type "mt5") give every case of their reference.json through the API and the CLI.
using System.Text.Json;
using ManagedT5.Generation;
using ManagedT5.Tokenizer;

namespace ManagedT5.Tests;

public sealed class ByT5AndMT5Tests
{
    public static readonly string[] Models = ["tiny-byt5", "tiny-mt5"];

    public static IEnumerable<object[]> Cases() =>
        from m in Models from c in ReferenceJson.Load(m).Cases select new object[] { m, c.Name };

    [Theory]
    [MemberData(nameof(Cases))]
    public void GenerateMatchesHuggingFace(string modelName, string caseName)
    {
        ReferenceJson reference = ReferenceJson.Load(modelName);
        GenerationCase expected = reference.Cases.Single(c => c.Name == caseName);
        using T5TextGenerator generator = T5TextGenerator.Load(Fixtures.Model(modelName));
        GenerationOptions options = GenerationParityTests.OptionsFrom(expected.Settings);

        Assert.Equal(reference.InputIds, generator.Encode(reference.Texts));
        if (caseName.StartsWith("long", StringComparison.Ordinal))
        {
            GenerationOutput output = generator.GenerateIds([reference.LongInputIds], options);
            GenerationParityTests.AssertSequences(expected.Sequences, output.Sequences, 0);
            return;
        }
        IReadOnlyList<GenerationResult> results = generator.Generate(reference.Texts, options);
        GenerationParityTests.AssertSequences(expected.Sequences, results.Select(r => r.TokenIds).ToArray(), 0);
        Assert.Equal(expected.Texts, results.Select(r => r.Text));
    }

    [Theory]
    [InlineData("tiny-byt5")]
    [InlineData("tiny-mt5")]
    public void GenerateJsonMatchesHuggingFace(string modelName)
    {
        ReferenceJson reference = ReferenceJson.Load(modelName);
        GenerationCase greedy = reference.Cases.Single(c => c.Name == "greedy");
        var (code, output, error) = CliTests.Run(["generate", "--model", Fixtures.Model(modelName), "--json", "--max-new-tokens", "20", "--", .. reference.Texts]);
        Assert.True(code == 0, error);
        using var doc = JsonDocument.Parse(output);
        int[][] Rows(string name) => doc.RootElement.GetProperty(name).EnumerateArray()
            .Select(r => r.EnumerateArray().Select(x => x.GetInt32()).ToArray()).ToArray();
        Assert.Equal(reference.InputIds, Rows("input_ids").Select(r => r.Where((_, i) => i < r.Length).ToArray()).Select(TrimZeros));
        GenerationParityTests.AssertSequences(greedy.Sequences, Rows("sequences"), 0);
        Assert.Equal(greedy.Texts, doc.RootElement.GetProperty("texts").EnumerateArray().Select(t => t.GetString()));
    }

    private static int[] TrimZeros(int[] row)
    {
        int n = row.Length;
        while (n > 0 && row[n - 1] == 0) n--;
        return row[..n];
    }

    [Fact]
    public void ByT5FolderGetsTheByteTokenizer()
    {
        using T5TextGenerator generator = T5TextGenerator.Load(Fixtures.Model("tiny-byt5"));
        Assert.True(generator.Tokenizer.IsByteLevel);
        Assert.Equal([75, 108, 1], generator.Encode(["Hi"])[0]);
    }

    [Fact]
    public void ByT5StreamsWholeCharacters()
    {
        using T5TextGenerator generator = T5TextGenerator.Load(Fixtures.Model("tiny-byt5"));
        ReferenceJson reference = ReferenceJson.Load("tiny-byt5");
        var options = new GenerationOptions { MaxNewTokens = 20 };
        var pieces = generator.StreamAsync(reference.Texts[1], options).ToBlockingEnumerable().ToList();
        Assert.Equal(generator.Generate(reference.Texts[1], options).Text, string.Concat(pieces));
        Assert.All(pieces, p => Assert.DoesNotContain('\uFFFD', p));
    }

    [Fact]
    public void TokenizerCompatFastReachesTheTokenizer()
    {
        using T5TextGenerator generator = T5TextGenerator.Load(Fixtures.Model("tiny-mt5"), new T5LoadOptions { TokenizerCompat = TokenizerCompat.Fast });
        Assert.Equal(TokenizerCompat.Fast, generator.Tokenizer.Compat);
        Assert.Equal([71, 3, 32094, 272, 1], generator.Encode(["A <extra_id_5>B"])[0]);
    }

    [Fact]
    public void UntrustedPromptsKeepSpecialTokenSpellingsAsText()
    {
        using T5TextGenerator generator = T5TextGenerator.Load(Fixtures.Model("tiny-mt5"));
        Assert.Equal([1, 26998, 3, 15, 32, 7, 1499, 1], generator.Encode(["</s> literal eos text"])[0]);
        int[] plain = generator.Encode(["</s> literal eos text"], parseSpecialTokens: false)[0];
        Assert.Equal([.. generator.Tokenizer.EncodeRaw("</s> literal eos text"), 1], plain);
        Assert.Single(plain, 1);
    }
}
