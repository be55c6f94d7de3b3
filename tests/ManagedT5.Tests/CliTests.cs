// The managedt5 command line, run as a real process: generate from ids (JSON matches HF), from text, tokenize,
// detokenize, inspect, and bad input giving one line and a non-zero exit code.
using System.Diagnostics;
using System.Text.Json;

namespace ManagedT5.Tests;

public sealed class CliTests
{
    internal static (int Code, string Out, string Err) Run(params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "ManagedT5.Cli.dll"));
        foreach (string a in args) info.ArgumentList.Add(a);
        using Process p = Process.Start(info)!;
        Task<string> stdout = p.StandardOutput.ReadToEndAsync(), stderr = p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(120_000), "the CLI did not finish");
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    [Theory]
    [InlineData("tiny-flan-t5", "greedy")]
    [InlineData("tiny-flan-t5", "beam4_lp2_ret2")]
    [InlineData("tiny-t5-v1_0", "greedy_norepeat3")]
    [InlineData("tiny-flan-t5-bf16-sharded", "beam4")]
    public void GenerateFromIdsPrintsHuggingFaceSequences(string model, string caseName)
    {
        ReferenceJson reference = ReferenceJson.Load(model);
        GenerationCase c = reference.Cases.Single(x => x.Name == caseName);
        var args = new List<string> { "generate", "--model", Fixtures.Model(model), "--json",
            "--input-ids", string.Join(";", reference.InputIds.Select(r => string.Join(",", r))) };
        foreach (JsonProperty p in c.Settings.EnumerateObject())
        {
            args.Add("--" + p.Name.Replace('_', '-'));
            args.Add(p.Value.ToString().ToLowerInvariant());
        }
        var (code, output, error) = Run(args.ToArray());
        Assert.True(code == 0, error);
        using JsonDocument doc = JsonDocument.Parse(output);
        int[][] sequences = doc.RootElement.GetProperty("sequences").EnumerateArray()
            .Select(r => r.EnumerateArray().Select(x => x.GetInt32()).ToArray()).ToArray();
        GenerationParityTests.AssertSequences(c.Sequences, sequences, 0);
        Assert.Equal(c.Texts, doc.RootElement.GetProperty("texts").EnumerateArray().Select(x => x.GetString()).ToArray());
        if (c.SequencesScores is { } scores)
        {
            var got = doc.RootElement.GetProperty("sequences_scores").EnumerateArray().Select(x => x.GetDouble()).ToArray();
            Assert.True(scores.Zip(got).All(p => Math.Abs(p.First - p.Second) <= 1e-4));
        }
        else Assert.False(doc.RootElement.TryGetProperty("sequences_scores", out _));
    }

    [Fact]
    public void GenerateFromTextAndTokenizeRoundTrip()
    {
        string model = Fixtures.Model("tiny-flan-t5");
        ReferenceJson reference = ReferenceJson.Load("tiny-flan-t5");
        var (code, output, error) = Run("generate", "--model", model, "--max-new-tokens", "20", reference.Texts[0]);
        Assert.True(code == 0, error);
        Assert.Equal(reference.Cases.Single(c => c.Name == "greedy").Texts[0], output.Trim());

        (code, output, error) = Run("tokenize", "--model", model, "--json", reference.Texts[0], reference.Texts[2]);
        Assert.True(code == 0, error);
        using JsonDocument doc = JsonDocument.Parse(output);
        Assert.Equal(reference.InputIds[2], doc.RootElement.GetProperty("ids")[1].EnumerateArray().Select(x => x.GetInt32()).ToArray());

        (code, output, _) = Run("detokenize", "--model", model, "--skip-special-tokens", "8774", "296", "1");
        Assert.Equal(0, code);
        Assert.Equal("Hello world", output.Trim());

        (code, output, _) = Run("inspect", "--model", model);
        Assert.Equal(0, code);
        Assert.Contains("parameters", output);
    }

    [Theory]
    [InlineData("num_beams", "generate", "--num-beams", "0", "x")]
    [InlineData("top_p", "generate", "--do-sample", "true", "--top-p", "2", "x")]
    [InlineData("temperature", "generate", "--do-sample", "true", "--temperature", "0", "x")]
    [InlineData("num_return_sequences", "generate", "--num-beams", "2", "--num-return-sequences", "3", "x")]
    [InlineData("--input-ids", "generate", "--input-ids", "1,a")]
    [InlineData("prompt", "generate")]
    [InlineData("--dtype", "generate", "--dtype", "f64", "x")]
    [InlineData("device", "generate", "--device", "tpu", "x")]
    public void BadOptionsPrintOneLineAndFail(string mention, params string[] args)
    {
        var (code, _, error) = Run([.. args, "--model", Fixtures.Model("tiny-flan-t5")]);
        Assert.NotEqual(0, code);
        Assert.Contains(mention, error);
        Assert.DoesNotContain("   at ", error);   // no stack trace
    }

    [Fact]
    public void UnknownModelAndNonT5ModelFailClearly()
    {
        var (code, _, error) = Run("generate", "--model", "no-such-org/no-such-model", "--offline", "x");
        if (error.Contains("Unrecognized command or argument '--offline'")) (code, _, error) = Run("generate", "--model", "no-such-org/no-such-model", "x");
        Assert.NotEqual(0, code);
        Assert.Contains("no-such-org/no-such-model", error);
        Assert.DoesNotContain("   at ", error);

        string dir = Directory.CreateTempSubdirectory("mt5-bart-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "config.json"), """{"model_type": "bart", "d_model": 8}""");
            foreach (string f in new[] { "spiece.model", "model.safetensors" })
                File.Copy(Path.Combine(Fixtures.Model("tiny-flan-t5"), f), Path.Combine(dir, f));
            (code, _, error) = Run("generate", "--model", dir, "x");
            Assert.NotEqual(0, code);
            Assert.Contains("model_type", error);
        }
        finally { Directory.Delete(dir, true); }
    }
}
