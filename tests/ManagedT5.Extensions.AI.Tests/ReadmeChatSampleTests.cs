// The README's IChatClient sample is this file's usings and ChatAsync, verbatim: the test checks the README still holds
// them and runs the sample on a fixture model. The namespace is not under ManagedT5, so only the sample's own usings
// (and the implicit ones of a console app) bring names in: the sample compiles as shown.
// README:begin
using ManagedT5.Extensions.AI;
using Microsoft.Extensions.AI;
// README:usings-end

namespace ReadmeSamples;

[Collection(ConsoleCollection.Name)]
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

    [Fact]
    public async Task ReadmeHoldsTheChatSampleAndTheSampleRuns()
    {
        string repo = RepoRoot;
        ReadmeSample.AssertInReadme(repo, Path.Combine(repo, "tests", "ManagedT5.Extensions.AI.Tests", "ReadmeChatSampleTests.cs"));
        string output = await ReadmeSample.CaptureConsoleAsync(() => ChatAsync(ManagedT5.Extensions.AI.Tests.TinyModel.Folder));
        Assert.Contains("principau vorbi Bankingelli", output);   // "Hello world" on the fixture model
    }
}
