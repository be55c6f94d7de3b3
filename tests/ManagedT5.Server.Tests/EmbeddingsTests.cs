// POST /v1/embeddings against a loopback server on tests/fixtures/models/tiny-sentence-t5: the official OpenAI client
// (which asks for base64), Microsoft.Extensions.AI's embedding generator and raw HTTP (float and base64 forms) get the
// vectors T5Embedder computes in-process (within 1e-6), with its token counts; bad requests name their field.
using System.ClientModel;
using System.Text.Json;
using ManagedT5.Embeddings;
using Microsoft.Extensions.AI;
using OpenAI;
using OpenAI.Embeddings;
using AIEmbeddingOptions = Microsoft.Extensions.AI.EmbeddingGenerationOptions;
using OaiEmbeddingOptions = OpenAI.Embeddings.EmbeddingGenerationOptions;

namespace ManagedT5.Server.Tests;

/// <summary>The sentence-transformers fixture loaded once.</summary>
public sealed class EmbedderFixture : IDisposable
{
    public const string ModelId = "tiny-sentence-t5";

    public T5Embedder Embedder { get; } = T5Embedder.Load(ModelFixture.Fixture("models/tiny-sentence-t5"), new T5EmbedderOptions { Threads = 1 });

    public async Task<T5Server> StartAsync(T5ServerOptions? options = null)
    {
        var server = new T5Server(Embedder, (options ?? new T5ServerOptions()) with { Port = 0, ModelId = ModelId });
        await server.StartAsync();
        return server;
    }

    public void Dispose() => Embedder.Dispose();
}

public sealed class EmbeddingsTests(EmbedderFixture fixture) : IClassFixture<EmbedderFixture>
{
    private const string M = EmbedderFixture.ModelId;
    private const string Key = "embed-key";

    /// <summary>Short, long (past max_seq_length, so truncated) and special-token spellings that must stay text.</summary>
    private static readonly string[] Texts =
    [
        "A man is eating food.",
        "The quick brown fox jumps over the lazy dog. " + string.Concat(Enumerable.Repeat("and again, and again ", 60)),
        "</s> <extra_id_0> are only text here",
        "x",
    ];

    /// <summary>The brief's bound: the engine's own results move by ~3e-8 between the calling thread and a thread-pool
    /// thread (the server embeds on the pool), so the wire is checked against the in-process vector within 1e-6, and
    /// bit-exactly between its own two encodings.</summary>
    private const float Tolerance = 1e-6f;

    private static void Close(float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        float worst = expected.Zip(actual, (e, a) => MathF.Abs(e - a)).Max();
        Assert.True(worst <= Tolerance, $"max |difference| {worst:E2} exceeds {Tolerance:E0}");
    }

    private static EmbeddingClient Client(T5Server server) =>
        new(M, new ApiKeyCredential(Key), new OpenAIClientOptions { Endpoint = new Uri(server.Address, "v1") });

    [Fact]
    public async Task Official_client_gets_the_embedders_vectors_exactly_with_usage()
    {
        await using T5Server server = await fixture.StartAsync(new T5ServerOptions { ApiKey = Key });
        EmbeddingBatchResult expected = fixture.Embedder.Embed(Texts);
        Assert.True(expected.TruncatedTexts >= 1, "the long text should be cut (else truncation is untested)");

        OpenAIEmbeddingCollection got = await Client(server).GenerateEmbeddingsAsync(Texts);   // the client asks for base64
        Assert.Equal(Texts.Length, got.Count);
        for (int i = 0; i < Texts.Length; i++)
        {
            Assert.Equal(i, got[i].Index);
            Close(expected.Embeddings[i], got[i].ToFloats().ToArray());
        }
        Assert.Equal(expected.TokenCounts.Sum(), got.Usage.InputTokenCount);
        Assert.Equal(expected.TokenCounts.Sum(), got.Usage.TotalTokenCount);
        Assert.Equal(M, got.Model);

        // dimensions equal to the model's is accepted; one embedding alone is the same vector as in the batch
        OpenAIEmbedding one = await Client(server).GenerateEmbeddingAsync(Texts[0],
            new OaiEmbeddingOptions { Dimensions = fixture.Embedder.Dimension });
        Close(expected.Embeddings[0], one.ToFloats().ToArray());
    }

    [Fact]
    public async Task Extensions_AI_embedding_generator_gets_the_same_vectors()
    {
        await using T5Server server = await fixture.StartAsync(new T5ServerOptions { ApiKey = Key });
        IEmbeddingGenerator<string, Embedding<float>> generator = Client(server).AsIEmbeddingGenerator();
        EmbeddingBatchResult expected = fixture.Embedder.Embed(Texts);
        GeneratedEmbeddings<Embedding<float>> got = await generator.GenerateAsync(Texts);
        Assert.Equal(Texts.Length, got.Count);
        for (int i = 0; i < Texts.Length; i++) Close(expected.Embeddings[i], got[i].Vector.ToArray());
        Assert.Equal(expected.TokenCounts.Sum(), got.Usage?.InputTokenCount);
        var wrong = new AIEmbeddingOptions { Dimensions = fixture.Embedder.Dimension - 1 };
        var e = await Assert.ThrowsAsync<ClientResultException>(() => generator.GenerateAsync(Texts, wrong));
        Assert.Equal(400, e.Status);
    }

    [Fact]
    public async Task Float_form_reads_back_to_the_same_floats_and_counts_truncation()
    {
        await using T5Server server = await fixture.StartAsync();
        using HttpClient client = Http.Client(server);
        EmbeddingBatchResult expected = fixture.Embedder.Embed(Texts);
        var (status, json, _) = await Http.PostAsync(client, "/v1/embeddings",
            JsonSerializer.Serialize(new { model = M, input = Texts, encoding_format = "float" }));
        Assert.True(status == 200, $"{status}: {json}");
        Assert.Equal(expected.TokenCounts.Sum(), json.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal("list", json.GetProperty("object").GetString());
        JsonElement[] data = json.GetProperty("data").EnumerateArray().ToArray();
        Assert.Equal(Texts.Length, data.Length);
        for (int i = 0; i < data.Length; i++)
        {
            Assert.Equal("embedding", data[i].GetProperty("object").GetString());
            Assert.Equal(i, data[i].GetProperty("index").GetInt32());
            Close(expected.Embeddings[i], data[i].GetProperty("embedding").EnumerateArray().Select(x => x.GetSingle()).ToArray());
        }
        // base64 (little-endian float32 bytes) decodes to exactly the floats the float form spells
        var (status64, json64, _) = await Http.PostAsync(client, "/v1/embeddings",
            JsonSerializer.Serialize(new { model = M, input = Texts, encoding_format = "base64" }));
        Assert.Equal(200, status64);
        JsonElement[] data64 = json64.GetProperty("data").EnumerateArray().ToArray();
        for (int i = 0; i < data.Length; i++)
            Assert.Equal(data[i].GetProperty("embedding").EnumerateArray().Select(x => x.GetSingle()).ToArray(),
                System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(Convert.FromBase64String(data64[i].GetProperty("embedding").GetString()!)).ToArray());
        JsonElement usage = json.GetProperty("usage");
        Assert.Equal(expected.TokenCounts.Sum(), usage.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(expected.TokenCounts.Sum(), usage.GetProperty("total_tokens").GetInt32());
        Assert.Equal(expected.TruncatedTexts, usage.GetProperty("truncated_inputs").GetInt32());
        Assert.Equal(fixture.Embedder.MaxSeqLength, expected.TokenCounts[1]);   // the long text was cut to max_seq_length

        // a single string is one embedding, equal to the first of the batch
        var (status1, one, _) = await Http.PostAsync(client, "/v1/embeddings", $$"""{"model":"{{M}}","input":{{JsonSerializer.Serialize(Texts[0])}}}""");
        Assert.Equal(200, status1);
        Close(expected.Embeddings[0], Assert.Single(one.GetProperty("data").EnumerateArray()).GetProperty("embedding")
            .EnumerateArray().Select(x => x.GetSingle()).ToArray());
    }

    public static TheoryData<string, int, string?, string?> BadRequests => new()
    {
        // body, status, param, code
        { $$"""{"model":"{{M}}"}""", 400, "input", null },
        { $$"""{"model":"{{M}}","input":""}""", 400, "input", null },
        { $$"""{"model":"{{M}}","input":[]}""", 400, "input", null },
        { $$"""{"model":"{{M}}","input":["a",""]}""", 400, "input", null },
        { $$"""{"model":"{{M}}","input":42}""", 400, "input", null },
        { $$"""{"model":"{{M}}","input":["a",7]}""", 400, "input", null },
        { $$"""{"model":"{{M}}","input":[[1,2,3]]}""", 400, "input", null },
        { $$"""{"model":"{{M}}","input":["a",{"text":"b"}]}""", 400, "input", null },
        { $$"""{"model":"{{M}}","input":["a","b","c","d","e"]}""", 400, "input", null },   // over MaxEmbeddingInputs = 4
        { $$"""{"model":"{{M}}","input":"hi","encoding_format":"int8"}""", 400, "encoding_format", null },
        { $$"""{"model":"{{M}}","input":"hi","encoding_format":1}""", 400, "encoding_format", null },
        { $$"""{"model":"{{M}}","input":"hi","dimensions":3}""", 400, "dimensions", null },
        { $$"""{"model":"{{M}}","input":"hi","dimensions":"all"}""", 400, "dimensions", null },
        { $$"""{"model":"{{M}}","input":"hi","frobnicate":1}""", 400, "frobnicate", null },
        { """{"input":"hi"}""", 400, "model", null },
        { """{"model":7,"input":"hi"}""", 400, "model", null },
        { """{"model":"text-embedding-3-small","input":"hi"}""", 404, "model", "model_not_found" },
        { "[\"hi\"]", 400, null, null },
        { "{oops", 400, null, null },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task Bad_request_names_the_field(string body, int status, string? param, string? code)
    {
        await using T5Server server = await fixture.StartAsync(new T5ServerOptions { MaxEmbeddingInputs = 4 });
        using HttpClient client = Http.Client(server);
        var (actual, json, _) = await Http.PostAsync(client, "/v1/embeddings", body);
        JsonElement error = Http.Error(json, actual, status);
        Assert.Equal(param, Http.Param(error));
        if (code is not null) Assert.Equal(code, error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task Embedding_only_server_lists_its_model_and_refuses_generation_by_name()
    {
        await using T5Server server = await fixture.StartAsync();
        using HttpClient client = Http.Client(server);
        JsonElement list = JsonDocument.Parse(await client.GetStringAsync("/v1/models")).RootElement;
        Assert.Equal(M, Assert.Single(list.GetProperty("data").EnumerateArray()).GetProperty("id").GetString());
        var (status, json, _) = await Http.PostAsync(client, "/v1/completions", $$"""{"model":"{{M}}","prompt":"hi"}""");
        JsonElement error = Http.Error(json, status, 404);
        Assert.Equal("model_not_found", error.GetProperty("code").GetString());
        Assert.Contains("/v1/embeddings", error.GetProperty("message").GetString());
    }
}
