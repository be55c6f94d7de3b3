// Every way a request can be wrong or unlucky, with raw HTTP: each gets its status and an OpenAI-style error body that
// names the field, never a 500 or a stack trace. Also the protections: 401, 413, 429 + Retry-After, 408, disconnects.
using System.Net;
using System.Text.Json;

namespace ManagedT5.Server.Tests;

public sealed class ErrorPathTests(ModelFixture model) : IClassFixture<ModelFixture>
{
    private const string M = ModelFixture.ModelId;

    /// <summary>A request that runs until cancelled: 20000 tokens with EOS blocked.</summary>
    private const string Endless = $$"""{"model":"{{M}}","prompt":"count to a very large number","max_tokens":20000,"min_new_tokens":20000}""";

    public static TheoryData<string, string, int, string?, string?> BadRequests => new()
    {
        // path, body, status, param, code
        { "/v1/completions", "{not json", 400, null, null },
        { "/v1/completions", "", 400, null, null },
        { "/v1/completions", "[1,2]", 400, null, null },
        { "/v1/completions", $$"""{"model":"{{M}}"}""", 400, "prompt", null },
        { "/v1/completions", """{"prompt":"hi"}""", 400, "model", null },
        { "/v1/completions", """{"model":"gpt-4","prompt":"hi"}""", 404, "model", "model_not_found" },
        { "/v1/completions", """{"model":5,"prompt":"hi"}""", 400, "model", null },
        { "/v1/completions", $$"""{"model":"{{M}}","prompt":42}""", 400, "prompt", null },
        { "/v1/completions", $$"""{"model":"{{M}}","prompt":[1,2,3]}""", 400, "prompt", null },
        { "/v1/completions", $$"""{"model":"{{M}}","prompt":"   "}""", 400, "prompt", null },
        { "/v1/completions", $$"""{"model":"{{M}}","prompt":"hi","max_tokens":"ten"}""", 400, "max_tokens", null },
        { "/v1/completions", $$"""{"model":"{{M}}","prompt":"hi","max_tokens":0}""", 400, "max_tokens", null },
        { "/v1/completions", $$"""{"model":"{{M}}","prompt":"hi","max_tokens":100000}""", 400, "max_tokens", null },
        { "/v1/completions", $$"""{"model":"{{M}}","prompt":"hi","temperature":"hot"}""", 400, "temperature", null },
        { "/v1/completions", $$"""{"model":"{{M}}","prompt":"hi","temperature":3}""", 400, "temperature", null },
        { "/v1/completions", $$"""{"model":"{{M}}","prompt":"hi","top_p":0}""", 400, "top_p", null },
        { "/v1/completions", $$"""{"model":"{{M}}","prompt":"hi","n":2}""", 400, "n", null },
        { "/v1/completions", $$"""{"model":"{{M}}","prompt":"hi","n":1000,"temperature":1}""", 400, "n", null },
        { "/v1/completions", $$"""{"model":"{{M}}","prompt":"hi","seed":-1}""", 400, "seed", null },
        { "/v1/completions", $$"""{"model":"{{M}}","prompt":"hi","stop":7}""", 400, "stop", null },
        { "/v1/completions", $$"""{"model":"{{M}}","prompt":"hi","stop":["a","b","c","d","e"]}""", 400, "stop", null },
        { "/v1/completions", $$"""{"model":"{{M}}","prompt":"hi","stream":"yes"}""", 400, "stream", null },
        { "/v1/completions", $$"""{"model":"{{M}}","prompt":"hi","presence_penalty":1}""", 400, "presence_penalty", null },
        { "/v1/completions", $$"""{"model":"{{M}}","prompt":"hi","logprobs":3}""", 400, "logprobs", null },
        { "/v1/completions", $$"""{"model":"{{M}}","prompt":"hi","frobnicate":true}""", 400, "frobnicate", null },
        { "/v1/completions", $$"""{"model":"{{M}}","prompt":"hi","num_beams":"two"}""", 400, "num_beams", null },
        { "/v1/completions", $$"""{"model":"{{M}}","prompt":"hi","num_beams":0}""", 400, "num_beams", null },
        { "/v1/completions", $$"""{"model":"{{M}}","prompt":"hi","repetition_penalty":-1}""", 400, "repetition_penalty", null },
        { "/v1/completions", $$"""{"model":"{{M}}","prompt":"hi","num_beams":2,"stream":true}""", 400, "stream", null },
        { "/v1/completions", $$"""{"model":"{{M}}","prompt":"hi","max_length":100000}""", 400, "max_length", null },
        { "/v1/completions", $$"""{"model":"{{M}}","messages":[{"role":"user","content":"hi"}]}""", 400, "messages", null },
        { "/v1/chat/completions", $$"""{"model":"{{M}}","messages":[]}""", 400, "messages", null },
        { "/v1/chat/completions", $$"""{"model":"{{M}}","messages":"hi"}""", 400, "messages", null },
        { "/v1/chat/completions", $$"""{"model":"{{M}}","messages":[{"role":"wizard","content":"hi"}]}""", 400, "messages[0].role", null },
        { "/v1/chat/completions", $$"""{"model":"{{M}}","messages":[{"content":"hi"}]}""", 400, "messages[0].role", null },
        { "/v1/chat/completions", $$"""{"model":"{{M}}","messages":[{"role":"user","content":5}]}""", 400, "messages[0].content", null },
        { "/v1/chat/completions", $$$"""{"model":"{{{M}}}","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}""", 400, "messages[0].content[0]", null },
        { "/v1/chat/completions", $$"""{"model":"{{M}}","messages":[{"role":"user","content":""}]}""", 400, "messages", null },
        { "/v1/chat/completions", $$"""{"model":"{{M}}","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function"}]}""", 400, "tools", null },
        { "/v1/embeddings", $$"""{"model":"{{M}}","input":"hi"}""", 404, "model", "model_not_found" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task Bad_request_gets_its_status_and_an_error_naming_the_field(string path, string body, int status, string? param, string? code)
    {
        await using T5Server server = await model.StartAsync();
        using HttpClient client = Http.Client(server);
        var (actual, json, _) = await Http.PostAsync(client, path, body);
        JsonElement error = Http.Error(json, actual, status);
        Assert.Equal(param, Http.Param(error));
        if (code is not null) Assert.Equal(code, error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task Prompt_over_the_token_limit_is_context_length_exceeded()
    {
        await using T5Server server = await model.StartAsync(new T5ServerOptions { MaxPromptTokens = 8 });
        using HttpClient client = Http.Client(server);
        var (status, json, _) = await Http.PostAsync(client, "/v1/completions",
            $$"""{"model":"{{M}}","prompt":"one two three four five six seven eight nine ten"}""");
        JsonElement error = Http.Error(json, status, 400);
        Assert.Equal("context_length_exceeded", error.GetProperty("code").GetString());
        Assert.Equal("prompt", Http.Param(error));
    }

    [Fact]
    public async Task Wrong_method_and_unknown_route_get_error_bodies()
    {
        await using T5Server server = await model.StartAsync();
        using HttpClient client = Http.Client(server);
        HttpResponseMessage get = await client.GetAsync("/v1/completions");
        Http.Error(JsonDocument.Parse(await get.Content.ReadAsStringAsync()).RootElement, (int)get.StatusCode, 405);
        HttpResponseMessage nowhere = await client.GetAsync("/v2/everything");
        Http.Error(JsonDocument.Parse(await nowhere.Content.ReadAsStringAsync()).RootElement, (int)nowhere.StatusCode, 404);
        HttpResponseMessage other = await client.GetAsync("/v1/models/gpt-4");
        Http.Error(JsonDocument.Parse(await other.Content.ReadAsStringAsync()).RootElement, (int)other.StatusCode, 404);
    }

    [Fact]
    public async Task Api_key_is_required_on_v1_but_not_on_probes()
    {
        await using T5Server server = await model.StartAsync(new T5ServerOptions { ApiKey = "s3cret" });
        string body = $$"""{"model":"{{M}}","prompt":"hi","max_tokens":2}""";
        foreach (string? key in new[] { null, "wrong", "s3cre", "s3cret-and-more" })
        {
            using HttpClient bad = Http.Client(server, key);
            var (status, json, response) = await Http.PostAsync(bad, "/v1/completions", body);
            Assert.Equal("invalid_api_key", Http.Error(json, status, 401).GetProperty("code").GetString());
            Assert.Equal(HttpStatusCode.Unauthorized, (await bad.GetAsync("/v1/models")).StatusCode);
        }
        using HttpClient good = Http.Client(server, "s3cret");
        Assert.Equal(200, (await Http.PostAsync(good, "/v1/completions", body)).Status);
        using HttpClient none = Http.Client(server);
        Assert.Equal(HttpStatusCode.OK, (await none.GetAsync("/health")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await none.GetAsync("/ready")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await none.GetAsync("/metrics")).StatusCode);
    }

    [Fact]
    public async Task Body_over_the_limit_is_413_with_or_without_a_length()
    {
        await using T5Server server = await model.StartAsync(new T5ServerOptions { MaxBodySize = 200 });
        using HttpClient client = Http.Client(server);
        string big = $$"""{"model":"{{M}}","prompt":"{{new string('a', 500)}}"}""";
        var (status, json, _) = await Http.PostAsync(client, "/v1/completions", big);
        Assert.Equal("request_too_large", Http.Error(json, status, 413).GetProperty("code").GetString());
        // Chunked (no Content-Length): the limit holds while reading.
        var chunked = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StreamContent(new MemoryStream(System.Text.Encoding.UTF8.GetBytes(big))) };
        chunked.Headers.TransferEncodingChunked = true;
        HttpResponseMessage r = await client.SendAsync(chunked);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, r.StatusCode);
        Assert.Equal(200, (await Http.PostAsync(client, "/v1/completions", $$"""{"model":"{{M}}","prompt":"hi","max_tokens":2}""")).Status);
    }

    [Fact]
    public async Task Full_queue_is_429_with_Retry_After_and_disconnects_free_their_places()
    {
        await using T5Server server = await model.StartAsync(new T5ServerOptions { MaxBatch = 1, MaxQueue = 1, MaxNewTokens = 60000 });
        using HttpClient client = Http.Client(server);
        using var gone = new CancellationTokenSource();
        Task<HttpResponseMessage> running = client.PostAsync("/v1/completions", Http.Json(Endless), gone.Token);
        await Http.Until(() => server.RunningRows == 1, "the first request to run");
        Task<HttpResponseMessage> waiting = client.PostAsync("/v1/completions", Http.Json(Endless), gone.Token);
        await Http.Until(() => server.QueueDepth == 1, "the second request to wait");

        var (status, json, response) = await Http.PostAsync(client, "/v1/completions", Endless);
        Assert.Equal("queue_full", Http.Error(json, status, 429).GetProperty("code").GetString());
        Assert.Equal("1", response.Headers.GetValues("Retry-After").Single());
        using HttpClient probe = Http.Client(server);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await probe.GetAsync("/ready")).StatusCode);

        gone.Cancel();   // both clients go away: their rows and queue places are freed
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);
        await Http.Until(() => server.RunningRows == 0 && server.QueueDepth == 0, "the freed places");
        Assert.Equal(200, (await Http.PostAsync(client, "/v1/completions", $$"""{"model":"{{M}}","prompt":"hi","max_tokens":2}""")).Status);
        string metrics = await probe.GetStringAsync("/metrics");
        Assert.Contains("managedt5_requests_total{endpoint=\"completions\",status=\"429\"} 1", metrics);
        Assert.Contains("managedt5_requests_total{endpoint=\"completions\",status=\"499\"} 2", metrics);
    }

    [Fact]
    public async Task Request_past_the_timeout_is_408_and_frees_its_row()
    {
        await using T5Server server = await model.StartAsync(new T5ServerOptions { RequestTimeout = TimeSpan.FromMilliseconds(300), MaxNewTokens = 60000 });
        using HttpClient client = Http.Client(server);
        var (status, json, _) = await Http.PostAsync(client, "/v1/completions", Endless);
        Assert.Equal("timeout", Http.Error(json, status, 408).GetProperty("code").GetString());
        await Http.Until(() => server.RunningRows == 0, "the timed-out row to leave");

        // Streaming: headers are out, so the stream ends with an error event (and no [DONE]).
        string stream = Endless.Replace("}", ",\"stream\":true}");
        HttpResponseMessage r = await client.PostAsync("/v1/completions", Http.Json(stream));
        string text = await r.Content.ReadAsStringAsync();
        Assert.Contains("\"code\":\"timeout\"", text);
        Assert.DoesNotContain("[DONE]", text);
    }

    [Fact]
    public async Task Special_token_spellings_in_content_stay_text()
    {
        await using T5Server server = await model.StartAsync();
        using HttpClient client = Http.Client(server);
        const string prompt = "Repeat: </s> <pad> <extra_id_0> done";
        var (status, json, _) = await Http.PostAsync(client, "/v1/chat/completions",
            $$"""{"model":"{{M}}","messages":[{"role":"user","content":"{{prompt}}"}],"max_tokens":6,"temperature":0}""");
        Assert.Equal(200, status);
        int[] asText = model.Generator.Encode([prompt], parseSpecialTokens: false)[0];
        int[] asControl = model.Generator.Encode([prompt], parseSpecialTokens: true)[0];
        Assert.NotEqual(asText.Length, asControl.Length);   // the test can tell the two apart
        Assert.Equal(asText.Length, json.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        var expected = model.Expected(prompt, model.Generator.DefaultOptions with { MaxNewTokens = 6, DoSample = false });
        Assert.Equal(expected.Text, json.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
    }
}
