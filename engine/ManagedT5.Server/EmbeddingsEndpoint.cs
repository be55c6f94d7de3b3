// POST /v1/embeddings in OpenAI's schema over a T5Embedder: input as a string or a list of strings, encoding_format
// float or base64 (little-endian float32 bytes, as OpenAI sends them), dimensions only when it equals the model's,
// usage prompt_tokens = total_tokens (after truncation). Every wrong field is one ApiError naming it.
using System.Runtime.InteropServices;
using System.Text.Json;
using ManagedT5.Embeddings;
using Microsoft.AspNetCore.Http;

namespace ManagedT5.Server;

/// <summary>The embeddings endpoint.</summary>
internal static class EmbeddingsEndpoint
{
    /// <summary>OpenAI fields that change nothing here and are accepted as sent.</summary>
    private static readonly HashSet<string> Ignored = ["user"];

    /// <summary>Parses the body, embeds and writes the answer. <paramref name="generationModels"/> only shapes the error
    /// for a generation-only name (an adapter, or a server without an embedder).</summary>
    public static async Task HandleAsync(HttpResponse response, JsonElement root, T5Embedder? embedder, T5ServerOptions options,
        IReadOnlyCollection<string> generationModels, Action<int> countTokens, CancellationToken ct)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw ApiError.BadRequest($"The request body must be a JSON object, got {Kind(root)}.");
        string? model = null, format = null;
        string[]? inputs = null;
        int? dimensions = null;
        foreach (JsonProperty p in root.EnumerateObject())
        {
            JsonElement v = p.Value;
            if (v.ValueKind == JsonValueKind.Null) continue;   // OpenAI clients send null for "not set"
            switch (p.Name)
            {
                case "model":
                    model = v.ValueKind == JsonValueKind.String ? v.GetString()! : throw ApiError.BadRequest($"model: expected a string, got {Kind(v)}.", "model");
                    break;
                case "input": inputs = ReadInput(v, options.MaxEmbeddingInputs); break;
                case "encoding_format":
                    format = v.ValueKind == JsonValueKind.String ? v.GetString() : null;
                    if (format is not ("float" or "base64"))
                        throw ApiError.BadRequest($"encoding_format: expected \"float\" or \"base64\", got {(format is null ? Kind(v) : $"\"{format}\"")}.",
                            "encoding_format");
                    break;
                case "dimensions":
                    dimensions = v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int d) ? d
                        : throw ApiError.BadRequest($"dimensions: expected an integer, got {Kind(v)}.", "dimensions");
                    break;
                case var name when Ignored.Contains(name): break;
                default: throw ApiError.BadRequest($"Unrecognized request argument supplied: {p.Name}.", p.Name);
            }
        }

        if (model is null) throw ApiError.BadRequest("model: missing; give the model name that GET /v1/models lists.", "model");
        if (embedder is null || model != options.ModelId)
            throw new ApiError(404, embedder is null
                    ? $"model: '{model}' cannot embed: this server serves no embedding model (start it with an embedding-capable --model)."
                    : generationModels.Contains(model)
                        ? $"model: '{model}' is a LoRA adapter, which serves generation only; embed with '{options.ModelId}'."
                        : $"model: The model '{model}' does not exist here; this server embeds with '{options.ModelId}'.",
                "model", "model_not_found");
        if (inputs is null) throw ApiError.BadRequest("input: missing; give a string or a list of strings to embed.", "input");
        if (dimensions is int asked && asked != embedder.Dimension)
            throw ApiError.BadRequest($"dimensions: this model's embeddings have {embedder.Dimension} dimensions and cannot be shortened; " +
                                      $"leave dimensions out or send {embedder.Dimension}.", "dimensions");

        EmbeddingBatchResult result = await embedder.EmbedAsync(inputs, ct);
        int tokens = result.TokenCounts.Sum();
        countTokens(tokens);
        bool base64 = format == "base64";

        response.ContentType = "application/json";
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, T5Server.JsonOptions))
        {
            w.WriteStartObject();
            w.WriteString("object", "list");
            w.WriteStartArray("data");
            for (int i = 0; i < result.Embeddings.Length; i++)
            {
                w.WriteStartObject();
                w.WriteString("object", "embedding");
                w.WriteNumber("index", i);
                if (base64) w.WriteBase64String("embedding", MemoryMarshal.AsBytes(result.Embeddings[i].AsSpan()));   // x86/ARM: little-endian
                else
                {
                    w.WriteStartArray("embedding");
                    foreach (float x in result.Embeddings[i]) w.WriteNumberValue(x);   // shortest text that reads back as the same float
                    w.WriteEndArray();
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteString("model", model);
            w.WriteStartObject("usage");
            w.WriteNumber("prompt_tokens", tokens);
            w.WriteNumber("total_tokens", tokens);
            w.WriteNumber("truncated_inputs", result.TruncatedTexts);   // not OpenAI's: inputs cut to max_seq_length
            w.WriteEndObject();
            w.WriteEndObject();
        }
        await response.Body.WriteAsync(buffer.GetBuffer().AsMemory(0, (int)buffer.Length), ct);
    }

    /// <summary>"input": a non-empty string, or a non-empty list of at most <paramref name="max"/> non-empty strings.</summary>
    private static string[] ReadInput(JsonElement v, int max)
    {
        if (v.ValueKind == JsonValueKind.String)
            return v.GetString()!.Length > 0 ? [v.GetString()!] : throw ApiError.BadRequest("input: the text is empty; give some text to embed.", "input");
        if (v.ValueKind != JsonValueKind.Array)
            throw ApiError.BadRequest($"input: expected a string or a list of strings, got {Kind(v)}.", "input");
        int count = v.GetArrayLength();
        if (count == 0) throw ApiError.BadRequest("input: the list is empty; give at least one text to embed.", "input");
        if (count > max)
            throw ApiError.BadRequest($"input: {count} inputs is more than this server's limit of {max} per request; split the list.", "input");
        var texts = new string[count];
        int i = 0;
        foreach (JsonElement e in v.EnumerateArray())
        {
            if (e.ValueKind is JsonValueKind.Number or JsonValueKind.Array)
                throw ApiError.BadRequest("input: token-id inputs are not supported; send the texts.", "input");
            if (e.ValueKind != JsonValueKind.String)
                throw ApiError.BadRequest($"input: item {i} is {Kind(e)}; expected a string.", "input");
            texts[i] = e.GetString()!.Length > 0 ? e.GetString()! : throw ApiError.BadRequest($"input: item {i} is empty; give some text to embed.", "input");
            i++;
        }
        return texts;
    }

    private static string Kind(JsonElement v) => CompletionRequest.Kind(v);   // one wording for every endpoint's errors
}
