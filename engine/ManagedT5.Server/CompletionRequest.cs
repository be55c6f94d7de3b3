// Reads an OpenAI /v1/completions or /v1/chat/completions body into prompts and GenerationOptions, checking every
// field's type and range: anything wrong is one ApiError naming the field. HF generate() options (num_beams,
// repetition_penalty, ...) are accepted as extra top-level fields by their HF names.
using System.Text.Json;
using ManagedT5.Generation;

namespace ManagedT5.Server;

/// <summary>A checked completion request: one or more prompt texts, each answered by <see cref="N"/> choices.</summary>
internal sealed record CompletionRequest(
    string Model, IReadOnlyList<string> Prompts, GenerationOptions Options, int N, IReadOnlyList<string> Stop, bool Stream, bool IncludeUsage)
{
    /// <summary>OpenAI fields that change nothing here and are accepted as sent.</summary>
    private static readonly HashSet<string> Ignored = ["user", "metadata", "store", "service_tier", "stream_options", "parallel_tool_calls"];

    /// <summary>HF options accepted as extra fields: every option of the table but those an OpenAI field sets and the
    /// server's own prompt guard.</summary>
    private static readonly HashSet<string> HfFields = GenerationOptionTable.All
        .Where(o => o.Name is not ("temperature" or "top_p" or "seed" or "num_return_sequences" or "max_input_tokens"))
        .Select(o => o.Name).ToHashSet();

    /// <summary>Parses a request body. <paramref name="chat"/>: "messages" instead of "prompt".</summary>
    /// <paramref name="models"/>: the names this server generates with (the base model and its adapters); another is 404.
    public static CompletionRequest Parse(JsonElement root, bool chat, IReadOnlyCollection<string> models, GenerationOptions defaults, int vocabSize,
        T5ServerOptions limits)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw ApiError.BadRequest($"The request body must be a JSON object, got {Kind(root)}.");
        GenerationOptions o = defaults with { MaxInputTokens = limits.MaxPromptTokens };
        IReadOnlyList<string>? prompts = null;
        string? model = null;
        int n = 1;
        bool stream = false, includeUsage = false, maxTokensGiven = false;
        float? temperature = null, topP = null;
        var stop = new List<string>();

        foreach (JsonProperty p in root.EnumerateObject())
        {
            JsonElement v = p.Value;
            if (v.ValueKind == JsonValueKind.Null) continue;   // OpenAI clients send null for "not set"
            switch (p.Name)
            {
                case "model": model = String(v, "model"); break;
                case "prompt" when !chat: prompts = ReadPrompt(v); break;
                case "messages" when chat: prompts = [ChatTemplate.Render(v)]; break;
                case "max_tokens" or "max_completion_tokens" or "max_new_tokens":
                    int max = Int(v, p.Name, 1, int.MaxValue);
                    if (max > limits.MaxNewTokens)
                        throw ApiError.BadRequest($"{p.Name}: {max} is more than this server's limit of {limits.MaxNewTokens} new tokens.", p.Name);
                    o = o with { MaxNewTokens = max };
                    maxTokensGiven = true;
                    break;
                case "temperature": temperature = Number(v, "temperature", 0, 2); break;
                case "top_p":
                    topP = Number(v, "top_p", 0, 1);
                    if (topP <= 0) throw ApiError.BadRequest("top_p: must be greater than 0.", "top_p");
                    break;
                case "n": n = Int(v, "n", 1, limits.MaxChoices); break;
                case "seed":
                    if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long seed) || seed < 0)
                        throw ApiError.BadRequest($"seed: expected a non-negative integer, got {Raw(v)}.", "seed");
                    o = o with { Seed = (ulong)seed };
                    break;
                case "stop": stop = ReadStop(v); break;
                case "stream": stream = Bool(v, "stream"); break;
                case "stream_options" when v.ValueKind == JsonValueKind.Object:
                    if (v.TryGetProperty("include_usage", out JsonElement iu) && iu.ValueKind != JsonValueKind.Null)
                        includeUsage = Bool(iu, "stream_options.include_usage");
                    break;
                case "presence_penalty" or "frequency_penalty":
                    if (Number(v, p.Name, -2, 2) != 0)
                        throw ApiError.BadRequest($"{p.Name}: not supported by T5 models; use repetition_penalty (HF) or no_repeat_ngram_size instead.", p.Name);
                    break;
                case "logprobs" or "echo":
                    if (v.ValueKind == JsonValueKind.Number ? v.GetRawText() != "0" : Bool(v, p.Name))
                        throw ApiError.BadRequest($"{p.Name}: not supported by this server; leave it out.", p.Name);
                    break;
                case "best_of":
                    if (Int(v, "best_of", 1, int.MaxValue) != 1)
                        throw ApiError.BadRequest("best_of: not supported; use num_beams (HF beam search) instead.", "best_of");
                    break;
                case "logit_bias":
                    if (v.ValueKind != JsonValueKind.Object || v.EnumerateObject().Any())
                        throw ApiError.BadRequest("logit_bias: not supported by this server; leave it out.", "logit_bias");
                    break;
                case "suffix":
                    if (String(v, "suffix").Length > 0) throw ApiError.BadRequest("suffix: not supported by T5 models; leave it out.", "suffix");
                    break;
                case "response_format":
                    if (v.ValueKind != JsonValueKind.Object || !v.TryGetProperty("type", out JsonElement type) || type.ValueKind != JsonValueKind.String || type.GetString() != "text")
                        throw ApiError.BadRequest("response_format: only {\"type\": \"text\"} is supported.", "response_format");
                    break;
                case "tools" or "functions":
                    if (v.ValueKind != JsonValueKind.Array || v.GetArrayLength() > 0)
                        throw ApiError.BadRequest($"{p.Name}: tool calling is not supported by T5 models; leave it out.", p.Name);
                    break;
                case "tool_choice" or "function_call":
                    if (v.ValueKind != JsonValueKind.String || v.GetString() != "none" && v.GetString() != "auto")
                        throw ApiError.BadRequest($"{p.Name}: tool calling is not supported by T5 models; leave it out.", p.Name);
                    break;
                case var name when Ignored.Contains(name): break;
                case var name when HfFields.Contains(name):
                    if (name == "max_length") maxTokensGiven = true;   // an explicit length is checked against the limit, not capped
                    try { o = GenerationOptionTable.Find(name)!.Set(o, v); }
                    catch (ArgumentException e) { throw ApiError.BadRequest(e.Message, name); }
                    break;
                default:
                    throw ApiError.BadRequest($"Unrecognized request argument supplied: {p.Name}" +
                        (p.Name is "prompt" or "messages" ? $" (this endpoint takes \"{(chat ? "messages" : "prompt")}\")." : "."), p.Name);
            }
        }

        if (model is null) throw ApiError.BadRequest("model: missing; give the model name that GET /v1/models lists.", "model");
        if (!models.Contains(model))
            throw new ApiError(404, models.Count == 0
                ? $"model: '{model}' cannot generate here; this server serves an embedding model only (POST /v1/embeddings)."
                : $"model: The model '{model}' does not exist here; this server generates with {string.Join(", ", models.Select(m => $"'{m}'"))}.",
                "model", "model_not_found");
        if (prompts is null)
        {
            string field = chat ? "messages" : "prompt";
            throw ApiError.BadRequest($"{field}: missing; give {(chat ? "a list of messages" : "the prompt text")}.", field);
        }
        if (prompts.Count * n > limits.MaxChoices)
            throw ApiError.BadRequest($"n: {prompts.Count} prompts x n {n} is more than this server's limit of {limits.MaxChoices} choices.", "n");

        // OpenAI's sampling fields over the model's defaults, as T5ChatClient maps them: temperature 0 is greedy whatever
        // else is set; temperature > 0, or top_p, turns sampling on.
        if (temperature == 0) o = o with { DoSample = false };
        else
        {
            if (temperature is float t) o = o with { DoSample = true, Temperature = t };
            if (topP is float tp) o = o with { DoSample = true, TopP = tp };
        }
        if (n > 1 && !o.DoSample)
            throw ApiError.BadRequest($"n: {n} choices need sampling (greedy and beam search give one answer); set temperature > 0.", "n");
        if (!maxTokensGiven && o.EffectiveMaxLength - 1 > limits.MaxNewTokens) o = o with { MaxNewTokens = limits.MaxNewTokens };
        if (o.EffectiveMaxLength - 1 > limits.MaxNewTokens)
            throw ApiError.BadRequest($"max_length: {o.EffectiveMaxLength} allows more than this server's limit of {limits.MaxNewTokens} new tokens.", "max_length");
        if (o.NumBeams > 1 && stream)
            throw ApiError.BadRequest("stream: beam search (num_beams > 1) cannot stream; set stream false.", "stream");
        try { o.Validate(vocabSize); }
        catch (ArgumentException e) { throw ApiError.BadRequest(e.Message, e.ParamName); }
        return new CompletionRequest(model, prompts, o, n, stop, stream, includeUsage);
    }

    private static IReadOnlyList<string> ReadPrompt(JsonElement v)
    {
        if (v.ValueKind == JsonValueKind.String) return [v.GetString()!];
        if (v.ValueKind == JsonValueKind.Array && v.GetArrayLength() > 0 && v.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String))
            return v.EnumerateArray().Select(e => e.GetString()!).ToArray();
        if (v.ValueKind == JsonValueKind.Array && v.GetArrayLength() > 0 && v[0].ValueKind is JsonValueKind.Number or JsonValueKind.Array)
            throw ApiError.BadRequest("prompt: token-id prompts are not supported; send the text.", "prompt");
        throw ApiError.BadRequest($"prompt: expected a string or a non-empty list of strings, got {Kind(v)}.", "prompt");
    }

    private static List<string> ReadStop(JsonElement v)
    {
        List<string> stops = v.ValueKind switch
        {
            JsonValueKind.String => [v.GetString()!],
            JsonValueKind.Array when v.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String) =>
                v.EnumerateArray().Select(e => e.GetString()!).ToList(),
            _ => throw ApiError.BadRequest($"stop: expected a string or a list of up to 4 strings, got {Kind(v)}.", "stop"),
        };
        if (stops.Count > 4) throw ApiError.BadRequest($"stop: at most 4 sequences, got {stops.Count}.", "stop");
        return stops.Where(s => s.Length > 0).ToList();
    }

    internal static string String(JsonElement v, string name) => v.ValueKind == JsonValueKind.String
        ? v.GetString()!
        : throw ApiError.BadRequest($"{name}: expected a string, got {Kind(v)}.", name);

    private static bool Bool(JsonElement v, string name) => v.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw ApiError.BadRequest($"{name}: expected true or false, got {Kind(v)}.", name),
    };

    private static int Int(JsonElement v, string name, int min, int max)
    {
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int i))
            throw ApiError.BadRequest($"{name}: expected an integer, got {Raw(v)}.", name);
        if (i < min || i > max) throw ApiError.BadRequest($"{name}: must be in [{min}, {max}], got {i}.", name);
        return i;
    }

    private static float Number(JsonElement v, string name, float min, float max)
    {
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double d) || !double.IsFinite(d))
            throw ApiError.BadRequest($"{name}: expected a number, got {Raw(v)}.", name);
        if (d < min || d > max) throw ApiError.BadRequest($"{name}: must be in [{min}, {max}], got {d}.", name);
        return (float)d;
    }

    internal static string Kind(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "a list",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        _ => "null",
    };

    private static string Raw(JsonElement v) => v.GetRawText() is var raw && raw.Length > 40 ? raw[..37] + "..." : raw;
}
