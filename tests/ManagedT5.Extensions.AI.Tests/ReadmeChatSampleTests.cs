// The README's IChatClient sample is this file's usings and ChatAsync, verbatim: the test checks the README still holds
// them and runs the sample on a fixture model. The namespace is not under ManagedT5, so only the sample's own usings
// (and the implicit ones of a console app) bring names in: the sample compiles as shown.
// README:begin
using ManagedT5.Extensions.AI;
using Microsoft.Extensions.AI;
// README:usings-end

namespace ReadmeSamples;

public sealed class ReadmeChatSampleTests
{
    // README:body
    static async Task ChatAsync(string model)  // a folder or a hub id, as for T5TextGenerator.Load
    {
        using IChatClient client = T5ChatClient.Load(model);

        ChatResponse response = await client.GetResponseAsync("translate English to German: How old are you?",
            new ChatOptions { MaxOutputTokens = 32 });
        Console.WriteLine(response.Text);

        await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync("Hello world",
                           new ChatOptions { MaxOutputTokens = 16, StopSequences = ["."] }))
            Console.Write(update.Text);
        Console.WriteLine();
    }
    // README:end

    private static string RepoRoot => Path.GetFullPath(Path.Combine(ManagedT5.Extensions.AI.Tests.TinyModel.Folder, "..", "..", "..", ".."));

    /// <summary>The sample as the README shows it: the usings, a blank line, then ChatAsync unindented.</summary>
    private static string Sample(string sourceFile)
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
    public async Task ReadmeHoldsTheChatSampleAndTheSampleRuns()
    {
        string sample = Sample(Path.Combine(RepoRoot, "tests", "ManagedT5.Extensions.AI.Tests", "ReadmeChatSampleTests.cs"));
        Assert.Contains("```csharp\n" + sample + "\n```", File.ReadAllText(Path.Combine(RepoRoot, "README.md")).ReplaceLineEndings("\n"));

        var output = new StringWriter();
        TextWriter original = Console.Out;
        Console.SetOut(output);
        try { await ChatAsync(ManagedT5.Extensions.AI.Tests.TinyModel.Folder); }
        finally { Console.SetOut(original); }
        Assert.Contains("principau vorbi Bankingelli", output.ToString());   // "Hello world" on the fixture model
    }
}
