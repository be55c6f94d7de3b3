// managedt5 embed as a real process: --json embeddings equal sentence-transformers' on the fixture, --similarity the
// reference cosine matrix, texts from a file and from standard input, and bad input as one line with exit code 2.
using System.Diagnostics;
using System.Text.Json;

namespace ManagedT5.Tests;

public sealed class EmbeddingCliTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mt5-embed-cli-").FullName;
    private static string ModelDir => Fixtures.Model(EmbeddingTests.Model);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (int Code, string Out, string Err) Run(string? stdin, params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "ManagedT5.Cli.dll"));
        foreach (string a in args) info.ArgumentList.Add(a);
        using Process p = Process.Start(info)!;
        Task<string> stdout = p.StandardOutput.ReadToEndAsync(), stderr = p.StandardError.ReadToEndAsync();
        if (stdin is not null) p.StandardInput.Write(stdin);
        p.StandardInput.Close();
        Assert.True(p.WaitForExit(120_000), "the CLI did not finish");
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    private static float[][] Matrix(JsonElement e) =>
        e.EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetSingle()).ToArray()).ToArray();

    private static void Close(float[][] expected, float[][] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        double error = expected.Zip(actual, (e, a) => e.Zip(a, (x, y) => Math.Abs((double)x - y)).Max()).Max();
        Assert.True(error <= 1e-5, $"max abs error {error:E3} exceeds 1e-5");
    }

    [Fact]
    public void JsonEmbeddingsAndSimilarityMatchTheReference()
    {
        using var reference = new EmbeddingTests.Reference();
        var (code, output, error) = Run(null, ["embed", "--model", ModelDir, "--json", "--similarity", "--batch-size", "2", "--", .. reference.Texts]);
        Assert.True(code == 0, error);
        using JsonDocument doc = JsonDocument.Parse(output);
        Assert.Equal(24, doc.RootElement.GetProperty("dim").GetInt32());
        Close(reference.Rows("batch.embeddings"), Matrix(doc.RootElement.GetProperty("embeddings")));
        Close(reference.Cosine, Matrix(doc.RootElement.GetProperty("similarity")));
        Assert.Equal(reference.Ids().Select(r => r.Length), doc.RootElement.GetProperty("token_counts").EnumerateArray().Select(v => v.GetInt32()));
        Assert.Equal(0, doc.RootElement.GetProperty("truncated_texts").GetInt32());
    }

    [Fact]
    public void TextsFromAFileAndFromStandardInputWithProgressOnStderr()
    {
        using var reference = new EmbeddingTests.Reference();
        string file = Path.Combine(_dir, "texts.txt");
        File.WriteAllLines(file, reference.Texts);
        var (code, output, error) = Run(null, "embed", "--model", ModelDir, "--input-file", file, "--batch-size", "2");
        Assert.True(code == 0, error);
        float[][] rows = output.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split(' ').Select(s => float.Parse(s, System.Globalization.CultureInfo.InvariantCulture)).ToArray()).ToArray();
        Close(reference.Rows("batch.embeddings"), rows);
        Assert.Contains("embedded 5/5 texts", error);

        var (code2, output2, error2) = Run(string.Join('\n', reference.Texts) + "\n", "embed", "--model", ModelDir, "--input-file", "-", "--json");
        Assert.True(code2 == 0, error2);
        using JsonDocument doc = JsonDocument.Parse(output2);
        Close(reference.Rows("batch.embeddings"), Matrix(doc.RootElement.GetProperty("embeddings")));
    }

    [Fact]
    public void TruncationIsReportedOnStderr()
    {
        var (code, output, error) = Run(null, "embed", "--model", ModelDir, "--json", "--max-seq-length", "3", "one two three four five", "hi");
        Assert.True(code == 0, error);
        Assert.Contains("1 of 2 text(s) were longer than 3 tokens", error);
        using JsonDocument doc = JsonDocument.Parse(output);
        Assert.Equal(1, doc.RootElement.GetProperty("truncated_texts").GetInt32());
        Assert.Equal(3, doc.RootElement.GetProperty("token_counts")[0].GetInt32());
    }

    [Theory]
    [InlineData("--batch-size", "0", "--batch-size: 0 is not a batch size")]
    [InlineData("--max-seq-length", "0", "--max-seq-length: 0 is not a length")]
    [InlineData("--dtype", "int4", "--dtype: 'int4' is not one of")]
    [InlineData("--normalize", "--no-normalize", "--normalize: give --normalize or --no-normalize, not both")]
    public void BadOptionsGiveOneLineAndExitCode2(string flag, string value, string expected)
    {
        var (code, output, error) = Run(null, "embed", "--model", ModelDir, flag, value, "text");
        Assert.Equal(2, code);
        Assert.Equal("", output);
        Assert.StartsWith($"error: {expected}", error);
        Assert.Single(error.TrimEnd().Split('\n'));
    }

    [Fact]
    public void NoTextsAndABrokenFolderAreOneLine()
    {
        var (code, _, error) = Run(null, "embed", "--model", ModelDir);
        Assert.Equal(2, code);
        Assert.Contains("give at least one text", error);

        Directory.CreateDirectory(Path.Combine(_dir, "m"));
        foreach (string f in new[] { "config.json", "model.safetensors", "spiece.model", "sentence_bert_config.json" })
            File.Copy(Path.Combine(ModelDir, f), Path.Combine(_dir, "m", f));
        File.WriteAllText(Path.Combine(_dir, "m", "modules.json"),
            "[{\"idx\":0,\"path\":\"\",\"type\":\"sentence_transformers.models.Transformer\"},{\"idx\":1,\"path\":\"1_Pooling\",\"type\":\"sentence_transformers.models.Pooling\"}]");
        var (code2, _, error2) = Run(null, "embed", "--model", Path.Combine(_dir, "m"), "hi");
        Assert.Equal(1, code2);
        Assert.StartsWith("error: ", error2);
        Assert.Contains("1_Pooling", error2);
        Assert.Single(error2.TrimEnd().Split('\n'));
    }
}
