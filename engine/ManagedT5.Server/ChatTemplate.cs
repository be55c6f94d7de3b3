// The chat template: OpenAI chat messages rendered into the one text a T5 model reads. Flan-T5 was tuned on plain
// instructions, not on conversations with roles, so the template is T5ChatClient's: every message's text in order
// (system, developer, user and assistant alike; roles are not written), trimmed, joined with newlines.
using System.Text.Json;

namespace ManagedT5.Server;

/// <summary>Renders "messages" into one prompt. The text is later encoded with special-token spellings as plain text,
/// so a message holding "&lt;/s&gt;" cannot end the prompt.</summary>
internal static class ChatTemplate
{
    private static readonly HashSet<string> Roles = ["system", "developer", "user", "assistant"];

    /// <summary>The prompt for a "messages" list; any malformed message is an <see cref="ApiError"/> naming it.</summary>
    public static string Render(JsonElement messages)
    {
        if (messages.ValueKind != JsonValueKind.Array || messages.GetArrayLength() == 0)
            throw ApiError.BadRequest($"messages: expected a non-empty list of messages, got {CompletionRequest.Kind(messages)}" +
                                      (messages.ValueKind == JsonValueKind.Array ? " (empty)." : "."), "messages");
        var parts = new List<string>();
        int i = 0;
        foreach (JsonElement m in messages.EnumerateArray())
        {
            string at = $"messages[{i++}]";
            if (m.ValueKind != JsonValueKind.Object)
                throw ApiError.BadRequest($"{at}: expected an object with \"role\" and \"content\", got {CompletionRequest.Kind(m)}.", at);
            if (!m.TryGetProperty("role", out JsonElement role) || role.ValueKind != JsonValueKind.String)
                throw ApiError.BadRequest($"{at}.role: missing or not a string; use system, user or assistant.", $"{at}.role");
            if (!Roles.Contains(role.GetString()!))
                throw ApiError.BadRequest($"{at}.role: '{role.GetString()}' is not supported; use system, developer, user or assistant.", $"{at}.role");
            string text = m.TryGetProperty("content", out JsonElement content) ? Content(content, $"{at}.content") : "";
            if (!string.IsNullOrWhiteSpace(text)) parts.Add(text.Trim());
        }
        if (parts.Count == 0)
            throw ApiError.BadRequest("messages: no message holds any text; give T5 a prompt, e.g. a user message " +
                                      "\"Translate English to German: How old are you?\".", "messages");
        return string.Join('\n', parts);
    }

    /// <summary>A message's content: a string, null, or a list of parts of which only {"type": "text"} ones are accepted.</summary>
    private static string Content(JsonElement content, string at)
    {
        switch (content.ValueKind)
        {
            case JsonValueKind.Null: return "";
            case JsonValueKind.String: return content.GetString()!;
            case JsonValueKind.Array:
                var texts = new List<string>();
                int j = 0;
                foreach (JsonElement part in content.EnumerateArray())
                {
                    string pat = $"{at}[{j++}]";
                    if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out JsonElement type) || type.ValueKind != JsonValueKind.String)
                        throw ApiError.BadRequest($"{pat}: expected a content part {{\"type\": \"text\", \"text\": ...}}.", pat);
                    if (type.GetString() != "text")
                        throw ApiError.BadRequest($"{pat}: '{type.GetString()}' parts are not supported by T5 models; send text.", pat);
                    if (!part.TryGetProperty("text", out JsonElement text) || text.ValueKind != JsonValueKind.String)
                        throw ApiError.BadRequest($"{pat}.text: missing or not a string.", $"{pat}.text");
                    texts.Add(text.GetString()!);
                }
                return string.Join('\n', texts.Where(t => !string.IsNullOrWhiteSpace(t)).Select(t => t.Trim()));
            default:
                throw ApiError.BadRequest($"{at}: expected a string or a list of text parts, got {CompletionRequest.Kind(content)}.", at);
        }
    }
}
