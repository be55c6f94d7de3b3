// What a served answer means: stop sequences cut text and end generation, seeded sampling repeats, n choices differ,
// beam search by its HF name, and a stop that drains in-flight requests instead of dropping them.
using System.Text.Json;

namespace ManagedT5.Server.Tests;

public sealed class BehaviourTests(ModelFixture model) : IClassFixture<ModelFixture>
{
    private const string M = ModelFixture.ModelId;

    [Fact]
    public async Task Stop_sequence_cuts_the_text_whole_and_streamed()
    {
        await using T5Server server = await model.StartAsync();
        using HttpClient client = Http.Client(server);
        const string prompt = "Summarize: the cat sat on the mat and looked at the dog.";
        var full = model.Expected(prompt, model.Generator.DefaultOptions with { MaxNewTokens = 20, DoSample = false });
        string[] words = full.Text.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(words.Length >= 4, full.Text);
        string stop = " " + words[2];
        string expected = full.Text[..full.Text.IndexOf(stop, StringComparison.Ordinal)];

        var (status, json, _) = await Http.PostAsync(client, "/v1/completions",
            $$"""{"model":"{{M}}","prompt":"{{prompt}}","max_tokens":20,"temperature":0,"stop":{{JsonSerializer.Serialize(stop)}}}""");
        Assert.Equal(200, status);
        JsonElement choice = json.GetProperty("choices")[0];
        Assert.Equal(expected, choice.GetProperty("text").GetString());
        Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());
        Assert.True(json.GetProperty("usage").GetProperty("completion_tokens").GetInt32() < full.Tokens);

        HttpResponseMessage r = await client.PostAsync("/v1/completions", Http.Json(
            $$"""{"model":"{{M}}","prompt":"{{prompt}}","max_tokens":20,"temperature":0,"stream":true,"stop":[{{JsonSerializer.Serialize(stop)}}]}"""));
        var (text, finish, done) = ReadStream(await r.Content.ReadAsStringAsync(), "text");
        Assert.Equal(expected, text);
        Assert.Equal("stop", finish);
        Assert.True(done);
    }

    [Fact]
    public async Task Seeded_sampling_repeats_and_n_choices_use_seed_plus_index()
    {
        await using T5Server server = await model.StartAsync();
        using HttpClient client = Http.Client(server);
        string body = $$"""{"model":"{{M}}","prompt":"Tell me a story","max_tokens":12,"temperature":0.9,"top_p":0.95,"seed":7,"n":3}""";
        var (s1, a, _) = await Http.PostAsync(client, "/v1/completions", body);
        var (s2, b, _) = await Http.PostAsync(client, "/v1/completions", body);
        Assert.Equal((200, 200), (s1, s2));
        string[] first = a.GetProperty("choices").EnumerateArray().Select(c => c.GetProperty("text").GetString()!).ToArray();
        string[] second = b.GetProperty("choices").EnumerateArray().Select(c => c.GetProperty("text").GetString()!).ToArray();
        Assert.Equal(first, second);
        Assert.True(first.Distinct().Count() > 1, "the n choices should differ");
        for (int i = 0; i < 3; i++)
        {
            var o = model.Generator.DefaultOptions with { MaxNewTokens = 12, DoSample = true, Temperature = 0.9f, TopP = 0.95f, Seed = 7UL + (ulong)i };
            Assert.Equal(model.Expected("Tell me a story", o).Text, first[i]);
        }
    }

    [Fact]
    public async Task Hf_fields_reach_generate_beam_search_and_repetition_penalty()
    {
        await using T5Server server = await model.StartAsync();
        using HttpClient client = Http.Client(server);
        const string prompt = "Translate English to French: the house is blue";
        var (status, json, _) = await Http.PostAsync(client, "/v1/completions",
            $$"""{"model":"{{M}}","prompt":"{{prompt}}","max_tokens":10,"num_beams":3,"length_penalty":0.8,"repetition_penalty":1.3}""");
        Assert.Equal(200, status);
        var o = model.Generator.DefaultOptions with { MaxNewTokens = 10, NumBeams = 3, LengthPenalty = 0.8f, RepetitionPenalty = 1.3f };
        Assert.Equal(model.Expected(prompt, o).Text, json.GetProperty("choices")[0].GetProperty("text").GetString());
    }

    [Fact]
    public async Task Stop_drains_in_flight_requests()
    {
        T5Server server = await model.StartAsync(new T5ServerOptions { MaxNewTokens = 4000 });
        using HttpClient client = Http.Client(server);
        // Long enough to be running when the stop comes (EOS blocked for 1500 tokens), short enough for the drain.
        Task<(int, JsonElement, HttpResponseMessage)> inFlight = Http.PostAsync(client, "/v1/completions",
            $$"""{"model":"{{M}}","prompt":"count","max_tokens":1500,"min_new_tokens":1500}""");
        await Http.Until(() => server.RunningRows == 1, "the request to run");
        Task stopping = server.StopAsync();
        var (status, json, _) = await inFlight;
        await stopping;
        Assert.Equal(200, status);
        Assert.Equal(1500, json.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => client.GetAsync("/health"));   // no longer listening
        await server.DisposeAsync();
    }

    /// <summary>The concatenated text of an SSE stream's choice 0, its finish reason, and whether it ended with [DONE].</summary>
    internal static (string Text, string? Finish, bool Done) ReadStream(string sse, string field)
    {
        var text = new System.Text.StringBuilder();
        string? finish = null;
        bool done = false;
        foreach (string line in sse.Split('\n'))
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
            string data = line[6..];
            if (data == "[DONE]") { done = true; continue; }
            JsonElement chunk = JsonDocument.Parse(data).RootElement;
            foreach (JsonElement c in chunk.GetProperty("choices").EnumerateArray())
            {
                JsonElement source = field == "text" ? c : c.GetProperty("delta");
                if (source.TryGetProperty(field == "text" ? "text" : "content", out JsonElement t)) text.Append(t.GetString());
                if (c.GetProperty("finish_reason").ValueKind == JsonValueKind.String) finish = c.GetProperty("finish_reason").GetString();
            }
        }
        return (text.ToString(), finish, done);
    }
}
