// README samples kept as compiled code: a test file holds a sample between markers; these helpers check the README shows
// it verbatim and run it with Console captured. Linked into the two test projects that hold README samples.
namespace ReadmeSamples;

/// <summary>Runs apart from every other test: capturing Console would race with anything else writing to it.</summary>
[Xunit.CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ConsoleCollection
{
    /// <summary>The collection's name.</summary>
    public const string Name = "Console (not parallel)";
}

internal static class ReadmeSample
{
    /// <summary>The sample as the README shows it: the usings between <c>// README:begin</c> and
    /// <c>// README:usings-end</c>, a blank line, then the method between <c>// README:body</c> and <c>// README:end</c>
    /// unindented by one level.</summary>
    public static string Extract(string sourceFile)
    {
        string source = File.ReadAllText(sourceFile).ReplaceLineEndings("\n");
        string Between(string start, string end)
        {
            int begin = source.IndexOf(start, StringComparison.Ordinal);
            int stop = source.IndexOf(end, StringComparison.Ordinal);
            Xunit.Assert.True(begin >= 0 && stop > begin, $"markers {start.Trim()} / {end.Trim()} missing in {sourceFile}");
            return source[(begin + start.Length)..stop];
        }
        string usings = Between("// README:begin\n", "// README:usings-end");
        string body = Between("    // README:body\n", "    // README:end");
        return usings + "\n" + string.Join("\n", body.TrimEnd().Split('\n').Select(l => l.Length >= 4 ? l[4..] : l.TrimStart()));
    }

    /// <summary>Fails unless README.md holds the sample of <paramref name="sourceFile"/> as a csharp block.</summary>
    public static void AssertInReadme(string repoRoot, string sourceFile) =>
        Xunit.Assert.Contains("```csharp\n" + Extract(sourceFile) + "\n```",
            File.ReadAllText(Path.Combine(repoRoot, "README.md")).ReplaceLineEndings("\n"));

    /// <summary>What <paramref name="run"/> writes to Console. Call only from tests in <see cref="ConsoleCollection"/>.</summary>
    public static async Task<string> CaptureConsoleAsync(Func<Task> run)
    {
        var output = new StringWriter();
        TextWriter original = Console.Out;
        Console.SetOut(output);
        try { await run(); }
        finally { Console.SetOut(original); }
        return output.ToString();
    }
}
