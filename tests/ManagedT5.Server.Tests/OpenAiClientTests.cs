// Real clients, unchanged, against a loopback server: the official OpenAI .NET package and Microsoft.Extensions.AI.OpenAI.
// Greedy answers must be exactly what the engine generates alone for the same prompt.
using System.ClientModel;
using System.Text;
using ManagedT5.Generation;
using Microsoft.Extensions.AI;
using OpenAI;
using OpenAI.Chat;
using AIChatMessage = Microsoft.Extensions.AI.ChatMessage;
using ChatFinishReason = OpenAI.Chat.ChatFinishReason;

namespace ManagedT5.Server.Tests;

public sealed class OpenAiClientTests(ModelFixture model) : IClassFixture<ModelFixture>
{
    private const string Key = "test-key-123";

    private static ChatClient Client(T5Server server, string key = Key) =>
        new(ModelFixture.ModelId, new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = new Uri(server.Address, "v1") });

    private GenerationOptions Greedy(int maxNew) => model.Generator.DefaultOptions with { MaxNewTokens = maxNew, DoSample = false };

    [Fact]
    public async Task Official_client_chat_completion_is_the_engines_greedy_answer()
    {
        await using T5Server server = await model.StartAsync(new T5ServerOptions { ApiKey = Key });
        const string prompt = "Translate English to German: How old are you?";
        ChatCompletion c = await Client(server).CompleteChatAsync([new UserChatMessage(prompt)],
            new ChatCompletionOptions { MaxOutputTokenCount = 12, Temperature = 0 });
        var expected = model.Expected(prompt, Greedy(12));
        Assert.Equal(expected.Text, c.Content[0].Text);
        Assert.Equal(expected.Tokens, c.Usage.OutputTokenCount);
        Assert.Equal(expected.PromptTokens, c.Usage.InputTokenCount);
        Assert.Equal(expected.Tokens == 12 ? ChatFinishReason.Length : ChatFinishReason.Stop, c.FinishReason);
        Assert.Equal(ModelFixture.ModelId, c.Model);
    }

    [Fact]
    public async Task Official_client_streams_the_same_text_with_usage()
    {
        await using T5Server server = await model.StartAsync(new T5ServerOptions { ApiKey = Key });
        const string prompt = "Summarize: the cat sat on the mat and looked at the dog.";
        var text = new StringBuilder();
        int updates = 0;
        ChatTokenUsage? usage = null;
        ChatFinishReason? finish = null;
        await foreach (StreamingChatCompletionUpdate u in Client(server).CompleteChatStreamingAsync([new UserChatMessage(prompt)],
                           new ChatCompletionOptions { MaxOutputTokenCount = 20, Temperature = 0 }))
        {
            foreach (ChatMessageContentPart part in u.ContentUpdate) text.Append(part.Text);
            updates++;
            usage ??= u.Usage;
            finish ??= u.FinishReason;
        }
        var expected = model.Expected(prompt, Greedy(20));
        Assert.Equal(expected.Text, text.ToString());
        Assert.True(updates > 3, $"only {updates} updates: not streamed");
        Assert.NotNull(finish);
        if (usage is not null) Assert.Equal(expected.Tokens, usage.OutputTokenCount);   // sent when the client asks (include_usage)
    }

    [Fact]
    public async Task Official_client_lists_the_model_and_is_refused_with_a_wrong_key()
    {
        await using T5Server server = await model.StartAsync(new T5ServerOptions { ApiKey = Key });
        var models = new OpenAI.Models.OpenAIModelClient(new ApiKeyCredential(Key), new OpenAIClientOptions { Endpoint = new Uri(server.Address, "v1") });
        OpenAI.Models.OpenAIModelCollection list = await models.GetModelsAsync();
        Assert.Equal(ModelFixture.ModelId, Assert.Single(list).Id);
        var e = await Assert.ThrowsAsync<ClientResultException>(() => Client(server, "wrong").CompleteChatAsync([new UserChatMessage("hi")]));
        Assert.Equal(401, e.Status);
    }

    [Fact]
    public async Task Extensions_AI_chat_client_gets_the_same_answer_whole_and_streamed()
    {
        await using T5Server server = await model.StartAsync(new T5ServerOptions { ApiKey = Key });
        IChatClient chat = Client(server).AsIChatClient();
        AIChatMessage[] messages = [new(ChatRole.System, "Answer briefly."), new(ChatRole.User, "What is the capital of France?")];
        var options = new ChatOptions { MaxOutputTokens = 10, Temperature = 0 };
        ChatResponse whole = await chat.GetResponseAsync(messages, options);
        // The documented template: message texts in order, joined with newlines, roles not written.
        var expected = model.Expected("Answer briefly.\nWhat is the capital of France?", Greedy(10));
        Assert.Equal(expected.Text, whole.Text);
        Assert.Equal(expected.Tokens, whole.Usage?.OutputTokenCount);

        var streamed = new StringBuilder();
        await foreach (ChatResponseUpdate u in chat.GetStreamingResponseAsync(messages, options)) streamed.Append(u.Text);
        Assert.Equal(expected.Text, streamed.ToString());
    }
}
