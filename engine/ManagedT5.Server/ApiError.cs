// OpenAI-style errors: {"error": {"message", "type", "param", "code"}} with the HTTP status, thrown by request handling
// and written by one place (T5Server), so no client ever sees a stack trace or an empty 500.
using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace ManagedT5.Server;

/// <summary>A request that cannot be served, with what the client is told.</summary>
internal sealed class ApiError(int status, string message, string? param = null, string? code = null, string? type = null) : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string? Code { get; } = code;
    public string Type { get; } = type ?? status switch
    {
        401 => "authentication_error",
        404 => "not_found_error",
        408 => "timeout_error",
        429 => "rate_limit_error",
        >= 500 => "server_error",
        _ => "invalid_request_error",
    };

    public static ApiError BadRequest(string message, string? param = null, string? code = null) => new(400, message, param, code);

    /// <summary>The error object alone (also the payload of an SSE error event).</summary>
    public void WriteObject(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteStartObject("error");
        w.WriteString("message", Message);
        w.WriteString("type", Type);
        w.WriteString("param", Param);
        w.WriteString("code", Code);
        w.WriteEndObject();
        w.WriteEndObject();
    }

    /// <summary>Writes the status and the body (and Retry-After for 429).</summary>
    public async Task WriteAsync(HttpResponse response)
    {
        if (response.HasStarted) return;
        response.StatusCode = Status;
        if (Status == 429) response.Headers.RetryAfter = "1";
        if (Status == 401) response.Headers.WWWAuthenticate = "Bearer";
        response.ContentType = "application/json";
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, T5Server.JsonOptions)) WriteObject(w);
        await response.Body.WriteAsync(buffer.GetBuffer().AsMemory(0, (int)buffer.Length));
    }
}
