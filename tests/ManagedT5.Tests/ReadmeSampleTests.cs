// The README's API example is this file's RunAsync, verbatim: the test checks the README still holds it and runs it
// on a fixture model, so the sample always compiles and works.
using ManagedT5.Generation;

namespace ManagedT5.Tests;

public sealed class ReadmeSampleTests
{
    // README:begin
    static async Task RunAsync(string model)  // a model folder, e.g. "weights/google/flan-t5-small"
    {
        using var t5 = T5TextGenerator.Load(model);

        GenerationResult result = t5.Generate("translate English to German: How old are you?",
            t5.DefaultOptions with { MaxNewTokens = 32, NumBeams = 4 });
        Console.WriteLine($"{result.Text} (score {result.Score:F3})");

        var batch = t5.Generate(["summarize: The quick brown fox jumps over the lazy dog.", "Hello world"],
            t5.DefaultOptions with { MaxNewTokens = 16 });
        foreach (GenerationResult r in batch) Console.WriteLine(r.Text);

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await foreach (string piece in t5.StreamAsync("question: What is the capital of France?",
                           t5.DefaultOptions with { MaxNewTokens = 24 }, timeout.Token))
            Console.Write(piece);
        Console.WriteLine();
    }
    // README:end

    [Fact]
    public async Task ReadmeHoldsTheSampleAndTheSampleRuns()
    {
        string source = File.ReadAllText(Path.Combine(Fixtures.RepoRoot, "tests", "ManagedT5.Tests", "ReadmeSampleTests.cs"));
        int begin = source.IndexOf("// README:begin\n", StringComparison.Ordinal) + "// README:begin\n".Length;
        int end = source.IndexOf("    // README:end", StringComparison.Ordinal);
        string sample = string.Join("\n", source[begin..end].TrimEnd().Split('\n').Select(l => l.Length >= 4 ? l[4..] : l.TrimStart()));
        string readme = File.ReadAllText(Path.Combine(Fixtures.RepoRoot, "README.md"));
        Assert.Contains(sample, readme);

        var output = new StringWriter();
        TextWriter original = Console.Out;
        Console.SetOut(output);
        try { await RunAsync(Fixtures.Model("tiny-flan-t5")); }
        finally { Console.SetOut(original); }
        Assert.Contains("principau vorbi Bankingelli", output.ToString());   // "Hello world" on the fixture model
    }
}
