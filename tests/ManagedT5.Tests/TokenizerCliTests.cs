// TokenizerCliTests: the tokenize contract the checks use ({"ids", "pieces"} with --json and --tokenizer-compat),
// detokenize with ids in one argument after --, and a folder whose tokenizer cannot be chosen.
using System.Text.Json;

namespace ManagedT5.Tests;

public sealed class TokenizerCliTests
{
    private static (int[][] Ids, string[][] Pieces) Tokenize(params string[] args)
    {
        var (code, output, error) = CliTests.Run(["tokenize", .. args]);
        Assert.True(code == 0, error);
        using var doc = JsonDocument.Parse(output);
        return (doc.RootElement.GetProperty("ids").EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetInt32()).ToArray()).ToArray(),
            doc.RootElement.GetProperty("pieces").EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetString()!).ToArray()).ToArray());
    }

    [Fact]
    public void TokenizeJsonSlowAndFast()
    {
        string model = Fixtures.Model("tiny-flan-t5");
        var (ids, pieces) = Tokenize("--model", model, "--json", "--", "A <extra_id_5>B", "<pad> and <unk> literal");
        Assert.Equal([[71, 32094, 272, 1], [0, 11, 2, 26998, 1]], ids);
        Assert.Equal(["▁A", "<extra_id_5>", "▁B", "</s>"], pieces[0]);
        (ids, _) = Tokenize("--model", model, "--json", "--tokenizer-compat", "fast", "--", "A <extra_id_5>B", "<pad> and <unk> literal");
        Assert.Equal([[71, 3, 32094, 272, 1], [0, 11, 3, 2, 26998, 1]], ids);
    }

    [Fact]
    public void TokenizeJsonByT5()
    {
        var (ids, pieces) = Tokenize("--model", Fixtures.Model("tiny-byt5"), "--json", "--", "A <extra_id_5>B", "é");
        Assert.Equal([[68, 264, 69, 1], [198, 172, 1]], ids);
        Assert.Equal([["A", "<extra_id_5>", "B", "</s>"], ["Ã", "©", "</s>"]], pieces);   // HF's convert_ids_to_tokens
    }

    [Fact]
    public void TokenizerCompatRejectsOtherValues()
    {
        var (code, _, error) = CliTests.Run("tokenize", "--model", Fixtures.Model("tiny-flan-t5"), "--tokenizer-compat", "medium", "--", "x");
        Assert.NotEqual(0, code);
        Assert.Contains("--tokenizer-compat", error);
    }

    [Fact]
    public void DetokenizeTakesSpaceSeparatedIdsAfterDoubleDash()
    {
        var (code, output, error) = CliTests.Run("detokenize", "--model", Fixtures.Model("tiny-flan-t5"), "--", "8774 296 1");
        Assert.True(code == 0, error);
        Assert.Equal("Hello world</s>", output.Trim());
    }

    [Fact]
    public void UnknownTokenizerClassIsOneLineNamingTheFile()
    {
        string dir = Directory.CreateTempSubdirectory("mt5-tokclass-").FullName;
        try
        {
            foreach (string f in Directory.GetFiles(Fixtures.Model("tiny-byt5"))) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), "{\"tokenizer_class\": \"LlamaTokenizer\"}");
            var (code, _, error) = CliTests.Run("tokenize", "--model", dir, "--", "x");
            Assert.NotEqual(0, code);
            Assert.Contains(Path.Combine(dir, "tokenizer_config.json"), error);
            Assert.Contains("LlamaTokenizer", error);
            Assert.Single(error.Trim().Split('\n'));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
