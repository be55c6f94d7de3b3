// `managedt5 generate --adapter DIR` (merged at load, with --dtype), `managedt5 eval --adapter DIR` and `managedt5 inspect
// --adapter DIR`: output equal to the API's, and a bad or ill-fitting adapter is one stderr line and exit code 1.
using System.Text.Json;
using ManagedT5.Generation;
using ManagedT5.Kernels;

namespace ManagedT5.Tests;

public sealed class AdapterCliTests
{
    private static string ModelDir => Fixtures.Model("tiny-flan-t5");
    private static string Final => AdapterFormatTests.Lora("lora_final");
    private const string Prompt = "translate English to German: How old are you?";

    [Theory]
    [InlineData(null)]
    [InlineData("int8")]
    public void GenerateWithAdapterPrintsWhatTheApiGenerates(string? dtype)
    {
        string[] args = ["generate", "-m", ModelDir, "--adapter", Final, "--max-new-tokens", "8", .. dtype is null ? Array.Empty<string>() : ["--dtype", dtype], Prompt];
        var (code, output, error) = CliTests.Run(args);
        Assert.True(code == 0, error);
        using T5TextGenerator generator = T5TextGenerator.Load(ModelDir, new T5LoadOptions
        {
            Adapter = Final, WeightFormat = dtype is null ? null : WeightFormat.Int8,
        });
        string expected = generator.Generate(Prompt, generator.DefaultOptions with { MaxNewTokens = 8 }).Text;
        Assert.Equal(expected, output.Trim());
        var (_, plain, _) = CliTests.Run("generate", "-m", ModelDir, "--max-new-tokens", "8", Prompt);
        Assert.NotEqual(plain.Trim(), output.Trim());
    }

    [Fact]
    public void EvalWithAdapterScoresTheAdaptedModel()
    {
        string dir = Path.Combine(Path.GetTempPath(), "managedt5-eval-adapter-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            const string other = "Translate English to French: The house is wonderful.";
            string data = Path.Combine(dir, "set.jsonl");
            File.WriteAllText(data, "{\"input\": \"" + Prompt + "\", \"target\": \"Wie alt bist du?\"}\n" +
                                    "{\"input\": \"" + other + "\", \"target\": \"La maison est merveilleuse.\"}\n");
            string predictions = Path.Combine(dir, "predictions.jsonl");
            var (code, output, error) = CliTests.Run("eval", "-m", ModelDir, "--adapter", Final, "--data", data, "--metrics", "loss,exact",
                "--max-new-tokens", "8", "--predictions", predictions, "--json");
            Assert.True(code == 0, error);
            double adapted = JsonDocument.Parse(output).RootElement.GetProperty("loss").GetDouble();

            // The loss and the predictions are the adapted model's, as the API computes them.
            using T5TextGenerator generator = T5TextGenerator.Load(ModelDir, new T5LoadOptions { Adapter = Final });
            var scores = new[] { (Prompt, "Wie alt bist du?"), (other, "La maison est merveilleuse.") }
                .Select(p => EvalTests.OptionAlone(generator, p.Item1, p.Item2)).ToArray();
            double expected = -scores.Sum(s => s.Sum) / scores.Sum(s => s.Tokens);
            Assert.True(Math.Abs(adapted - expected) <= 1e-5, $"eval --adapter loss {adapted}, the adapted model's {expected}");
            string[] lines = File.ReadAllLines(predictions);
            Assert.Contains(generator.Generate(Prompt, generator.DefaultOptions with { MaxNewTokens = 8 }).Text, lines[0]);

            // Without the adapter the base model is scored: another loss.
            (code, output, error) = CliTests.Run("eval", "-m", ModelDir, "--data", data, "--metrics", "loss", "--json");
            Assert.True(code == 0, error);
            Assert.NotEqual(adapted, JsonDocument.Parse(output).RootElement.GetProperty("loss").GetDouble());

            // An adapter that does not fit: one line naming the module, exit 1.
            (code, _, error) = CliTests.Run("eval", "-m", Fixtures.Model("tiny-t5-v1_0"), "--adapter", Final, "--data", data);
            Assert.Equal(1, code);
            Assert.Contains("decoder.block.2.layer.0.SelfAttention.q", Assert.Single(error.Trim().Split('\n')));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void BadAdapterIsOneLine()
    {
        var (code, output, error) = CliTests.Run("generate", "-m", ModelDir, "--adapter", Path.Combine(Path.GetTempPath(), "no-such-adapter"), Prompt);
        Assert.Equal(1, code);
        Assert.Equal("", output);
        Assert.Single(error.Trim().Split('\n'));
        Assert.Contains("no-such-adapter", error);

        // lora_final on a model with 3 decoder blocks: the modules of the third are named.
        (code, _, error) = CliTests.Run("generate", "-m", Fixtures.Model("tiny-t5-v1_0"), "--adapter", Final, Prompt);
        Assert.Equal(1, code);
        Assert.Single(error.Trim().Split('\n'));
        Assert.Contains("decoder.block.2.layer.0.SelfAttention.q", error);
        Assert.DoesNotContain("   at ", error);
    }

    [Fact]
    public void InspectShowsTheAdapter()
    {
        var (code, output, error) = CliTests.Run("inspect", "--adapter", Final, "-m", ModelDir);
        Assert.True(code == 0, error);
        Assert.Contains("r 4, lora_alpha 8 (scale 2)", output);
        Assert.Contains("targets      q, v", output);
        Assert.Contains("modules      14 (4,480 parameters)", output);
        Assert.Contains("decoder.block.1.layer.1.EncDecAttention.v  [48, 32]", output);
        Assert.Contains("fits", output);
        (code, _, error) = CliTests.Run("inspect", "--adapter", Final, "-m", Fixtures.Model("tiny-t5-v1_0"));
        Assert.Equal(1, code);
        Assert.Contains("does not fit", error);
    }
}
