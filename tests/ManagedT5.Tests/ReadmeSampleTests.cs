// The README's API sample is this file's usings and RunAsync, verbatim: the test checks the README still holds them and
// runs the sample on a fixture model. The namespace is not under ManagedT5, so only the sample's own usings (and the
// implicit ones of a console app) bring names in: the sample compiles as shown.
// README:begin
using ManagedT5;
using ManagedT5.Generation;
using ManagedT5.Kernels;   // WeightFormat
// README:usings-end

namespace ReadmeSamples;

[Collection(ConsoleCollection.Name)]
public sealed class ReadmeSampleTests
{
    // README:body
    static async Task RunAsync(string model)  // a folder, or a hub id such as "google/flan-t5-small" (downloaded once)
    {
        using var t5 = T5TextGenerator.Load(model, new T5LoadOptions { WeightFormat = WeightFormat.BF16 });

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
        string repo = global::ManagedT5.Tests.Fixtures.RepoRoot;
        ReadmeSample.AssertInReadme(repo, Path.Combine(repo, "tests", "ManagedT5.Tests", "ReadmeSampleTests.cs"));
        string output = await ReadmeSample.CaptureConsoleAsync(() => RunAsync(global::ManagedT5.Tests.Fixtures.Model("tiny-flan-t5")));
        Assert.Contains("principau vorbi Bankingelli", output);   // "Hello world" on the fixture model
    }
}
