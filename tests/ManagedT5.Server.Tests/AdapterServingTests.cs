// LoRA adapters served by name on one base (tiny-flan-t5 + tests/fixtures/training/tiny-flan-t5/lora_final): the
// adapter's answers are exactly generator.ForAdapter(name)'s in-process, the base's stay the base's, both at once;
// /v1/models lists both; an unknown name is 404 model_not_found as OpenAI answers it.
using System.ClientModel;
using System.Text.Json;
using ManagedT5.Generation;
using OpenAI;
using OpenAI.Chat;

namespace ManagedT5.Server.Tests;

/// <summary>A base generator of its own (adapters added to the shared one would show in other tests' /v1/models).</summary>
public sealed class AdapterFixture : IDisposable
{
    public const string Adapter = "lora-final";

    public T5TextGenerator Generator { get; }

    public AdapterFixture()
    {
        Generator = T5TextGenerator.Load(ModelFixture.TinyModel, new T5LoadOptions { Threads = 1 });
        Generator.AddAdapter(Adapter, ModelFixture.Fixture("training/tiny-flan-t5/lora_final"));
    }

    public async Task<T5Server> StartAsync()
    {
        var server = new T5Server(Generator, new T5ServerOptions { Port = 0, ModelId = ModelFixture.ModelId });
        await server.StartAsync();
        return server;
    }

    public void Dispose() => Generator.Dispose();
}

public sealed class AdapterServingTests(AdapterFixture fixture) : IClassFixture<AdapterFixture>
{
    private const string Base = ModelFixture.ModelId, Adapter = AdapterFixture.Adapter;

    private static readonly string[] Prompts =
    [
        "Translate English to German: How old are you?",
        "Summarize: the cat sat on the mat and looked at the dog.",
        "What is the capital of France?",
        "question: who wrote hamlet? context: Hamlet is a play by William Shakespeare.",
    ];

    private GenerationOptions Greedy => fixture.Generator.DefaultOptions with { MaxNewTokens = 16, DoSample = false };

    [Fact]
    public async Task Adapter_and_base_answer_by_name_at_once_each_as_in_process()
    {
        await using T5Server server = await fixture.StartAsync();
        T5TextGenerator adapter = fixture.Generator.ForAdapter(Adapter);
        var expectedBase = Prompts.Select(p => ModelFixture.Expected(fixture.Generator, p, Greedy)).ToArray();
        var expectedAdapter = Prompts.Select(p => ModelFixture.Expected(adapter, p, Greedy)).ToArray();
        Assert.True(expectedBase.Zip(expectedAdapter).Any(x => x.First.Text != x.Second.Text),
            "the adapter changes no greedy answer: this test could not tell the two apart");

        ChatClient Client(string model) => new(model, new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(server.Address, "v1") });
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 16, Temperature = 0 };
        // Every prompt on both models, all in flight together: the two batchers run side by side.
        var calls = Prompts.SelectMany((p, i) => new[] { (Model: Base, Index: i), (Model: Adapter, Index: i) })
            .Select(async c => (c.Model, c.Index, Answer: (ChatCompletion)await Client(c.Model).CompleteChatAsync([new UserChatMessage(Prompts[c.Index])], options)))
            .ToArray();
        foreach (var (model, index, answer) in await Task.WhenAll(calls))
        {
            var expected = model == Base ? expectedBase[index] : expectedAdapter[index];
            Assert.Equal(expected.Text, answer.Content[0].Text);
            Assert.Equal(expected.Tokens, answer.Usage.OutputTokenCount);
            Assert.Equal(model, answer.Model);
        }
    }

    [Fact]
    public async Task Models_lists_the_base_and_the_adapter_and_unknown_names_are_404()
    {
        await using T5Server server = await fixture.StartAsync();
        using HttpClient client = Http.Client(server);
        JsonElement[] data = JsonDocument.Parse(await client.GetStringAsync("/v1/models")).RootElement.GetProperty("data").EnumerateArray().ToArray();
        Assert.Equal([Base, Adapter], data.Select(m => m.GetProperty("id").GetString()));
        Assert.False(data[0].TryGetProperty("parent", out _));
        Assert.Equal(Base, data[1].GetProperty("parent").GetString());
        JsonElement one = JsonDocument.Parse(await client.GetStringAsync($"/v1/models/{Adapter}")).RootElement;
        Assert.Equal(Adapter, one.GetProperty("id").GetString());

        foreach (string path in new[] { "/v1/completions", "/v1/chat/completions" })
        {
            string body = path.EndsWith("chat/completions", StringComparison.Ordinal)
                ? """{"model":"lora-other","messages":[{"role":"user","content":"hi"}]}"""
                : """{"model":"lora-other","prompt":"hi"}""";
            var (status, json, _) = await Http.PostAsync(client, path, body);
            JsonElement error = Http.Error(json, status, 404);
            Assert.Equal("model_not_found", error.GetProperty("code").GetString());
            Assert.Equal("model", Http.Param(error));
            Assert.Contains(Adapter, error.GetProperty("message").GetString());   // says which names exist
        }
        HttpResponseMessage missing = await client.GetAsync("/v1/models/lora-other");
        Assert.Equal(404, (int)missing.StatusCode);
        // No embedder on this server: embeddings by the adapter's name are 404 too, not a 500.
        var (s, j, _) = await Http.PostAsync(client, "/v1/embeddings", $$"""{"model":"{{Adapter}}","input":"hi"}""");
        Http.Error(j, s, 404);
    }

    [Fact]
    public void An_adapter_named_like_the_served_model_is_refused_by_name()
    {
        var e = Assert.Throws<ArgumentException>(() => new T5Server(fixture.Generator, new T5ServerOptions { Port = 0, ModelId = Adapter }));
        Assert.Equal("adapter", e.ParamName);
        Assert.StartsWith("adapter:", e.Message);
    }
}
