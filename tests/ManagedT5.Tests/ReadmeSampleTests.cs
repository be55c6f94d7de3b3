// The README's API sample is this file's usings and RunAsync, verbatim: the test checks the README still holds them and
// runs the sample on a fixture model. The namespace is not under ManagedT5, so only the sample's own usings (and the
// implicit ones of a console app) bring names in: the sample compiles as shown.
// README:begin
using ManagedT5;
using ManagedT5.Generation;
using ManagedT5.Kernels;   // WeightFormat
// README:usings-end

namespace ReadmeSamples;

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

    /// <summary>The sample as the README shows it: the usings, a blank line, then RunAsync unindented.</summary>
    internal static string Sample(string sourceFile)
    {
        string source = File.ReadAllText(sourceFile).ReplaceLineEndings("\n");
        string Between(string start, string end)
        {
            int begin = source.IndexOf(start, StringComparison.Ordinal);
            int stop = source.IndexOf(end, StringComparison.Ordinal);
            Assert.True(begin >= 0 && stop > begin, $"markers {start.Trim()} / {end.Trim()} missing in {sourceFile}");
            return source[(begin + start.Length)..stop];
        }
        string usings = Between("// README:begin\n", "// README:usings-end");
        string body = Between("    // README:body\n", "    // README:end");
        return usings + "\n" + string.Join("\n", body.TrimEnd().Split('\n').Select(l => l.Length >= 4 ? l[4..] : l.TrimStart()));
    }

    [Fact]
    public async Task ReadmeHoldsTheSampleAndTheSampleRuns()
    {
        string repo = global::ManagedT5.Tests.Fixtures.RepoRoot;
        string sample = Sample(Path.Combine(repo, "tests", "ManagedT5.Tests", "ReadmeSampleTests.cs"));
        Assert.Contains("```csharp\n" + sample + "\n```", File.ReadAllText(Path.Combine(repo, "README.md")).ReplaceLineEndings("\n"));

        var output = new StringWriter();
        TextWriter original = Console.Out;
        Console.SetOut(output);
        try { await RunAsync(global::ManagedT5.Tests.Fixtures.Model("tiny-flan-t5")); }
        finally { Console.SetOut(original); }
        Assert.Contains("principau vorbi Bankingelli", output.ToString());   // "Hello world" on the fixture model
    }
}
