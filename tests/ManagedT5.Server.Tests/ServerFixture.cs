// What the server tests share: the tiny-flan-t5 fixture loaded once, loopback servers on port 0 (real Kestrel), and
// raw HTTP helpers for the error-path tests.
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using ManagedT5.Generation;

namespace ManagedT5.Server.Tests;

/// <summary>One loaded model for every test class (a class fixture of each).</summary>
public sealed class ModelFixture : IDisposable
{
    public const string ModelId = "tiny-flan-t5";

    /// <summary>tests/fixtures/models/tiny-flan-t5, found above the test's output folder.</summary>
    public static string TinyModel
    {
        get
        {
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            {
                string candidate = Path.Combine(d.FullName, "tests", "fixtures", "models", "tiny-flan-t5");
                if (Directory.Exists(candidate)) return candidate;
            }
            throw new DirectoryNotFoundException("tests/fixtures/models/tiny-flan-t5 not found above " + AppContext.BaseDirectory);
        }
    }

    public T5TextGenerator Generator { get; } = T5TextGenerator.Load(TinyModel, new T5LoadOptions { Threads = 1 });

    /// <summary>A started server on a free loopback port; dispose it to stop.</summary>
    public async Task<T5Server> StartAsync(T5ServerOptions? options = null)
    {
        var server = new T5Server(Generator, (options ?? new T5ServerOptions()) with { Port = 0, ModelId = ModelId });
        await server.StartAsync();
        return server;
    }

    /// <summary>What the engine generates alone for this text (encoded with special tokens as text), as the server
    /// should answer it: the decoded text and the generated token count (EOS included).</summary>
    public (string Text, int Tokens, int PromptTokens) Expected(string prompt, GenerationOptions options) => Expected(Generator, prompt, options);

    /// <summary><see cref="Expected(string, GenerationOptions)"/> with another generator (an adapter's).</summary>
    public static (string Text, int Tokens, int PromptTokens) Expected(T5TextGenerator generator, string prompt, GenerationOptions options)
    {
        int[] ids = generator.Encode([prompt], parseSpecialTokens: false)[0];
        int[] seq = generator.GenerateIds([ids], options).Sequences[0];
        int eos = generator.Model.Config.EosTokenId;
        int end = Array.IndexOf(seq, eos, 1);
        int generated = end < 0 ? seq.Length - 1 : end;   // tokens after the start token, EOS included
        return (generator.Tokenizer.Decode(seq), generated, ids.Length);
    }

    /// <summary>tests/fixtures/&lt;relative&gt;, found above the test's output folder.</summary>
    public static string Fixture(string relative)
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, "tests", "fixtures", relative);
            if (Directory.Exists(candidate)) return candidate;
        }
        throw new DirectoryNotFoundException($"tests/fixtures/{relative} not found above " + AppContext.BaseDirectory);
    }

    public void Dispose() => Generator.Dispose();
}

/// <summary>Raw HTTP against a server.</summary>
internal static class Http
{
    public static HttpClient Client(T5Server server, string? key = null)
    {
        var client = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(60) };
        if (key is not null) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return client;
    }

    public static StringContent Json(string body) => new(body, Encoding.UTF8, "application/json");

    public static async Task<(int Status, JsonElement Body, HttpResponseMessage Response)> PostAsync(HttpClient client, string path, string body,
        CancellationToken ct = default)
    {
        HttpResponseMessage response = await client.PostAsync(path, Json(body), ct);
        string text = await response.Content.ReadAsStringAsync(ct);
        return ((int)response.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone(), response);
    }

    /// <summary>Checks an OpenAI-style error body and returns its error object.</summary>
    public static JsonElement Error(JsonElement body, int status, int expected)
    {
        Assert.True(status == expected, $"expected {expected}, got {status}: {body}");
        Assert.Equal(JsonValueKind.Object, body.ValueKind);
        JsonElement error = body.GetProperty("error");
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        Assert.DoesNotContain("   at ", error.GetProperty("message").GetString());   // never a stack trace
        Assert.Equal(JsonValueKind.String, error.GetProperty("type").ValueKind);
        return error;
    }

    public static string? Param(JsonElement error) => error.GetProperty("param").ValueKind == JsonValueKind.String ? error.GetProperty("param").GetString() : null;

    /// <summary>Waits (bounded) until a condition holds.</summary>
    public static async Task Until(Func<bool> condition, string what, int seconds = 20)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) Assert.Fail($"timed out waiting for {what}");
            await Task.Delay(10);
        }
    }
}
