// The server's settings: where it listens, the API key, and the limits that protect it (queue, batch, prompt and output
// lengths, body size, per-request timeout). `managedt5 serve` fills one from its flags.
namespace ManagedT5.Server;

/// <summary>Settings of a <see cref="T5Server"/>. Every limit is checked by <see cref="Validate"/> before the server starts.</summary>
public sealed record T5ServerOptions
{
    /// <summary>Address to listen on (default 127.0.0.1: loopback only; "0.0.0.0" or "::" for every interface).</summary>
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>TCP port (default 8000; 0: any free port, read it back from <see cref="T5Server.Address"/>).</summary>
    public int Port { get; init; } = 8000;
    /// <summary>When set, every /v1 request must carry <c>Authorization: Bearer KEY</c> (compared in constant time);
    /// /health, /ready and /metrics stay open for probes and scrapers.</summary>
    public string? ApiKey { get; init; }
    /// <summary>The model name clients send in "model" and /v1/models lists (default: the name the model was loaded by).</summary>
    public string ModelId { get; init; } = "t5";
    /// <summary>Most requests waiting for a place in the running batch; one more gets 429 with Retry-After.</summary>
    public int MaxQueue { get; init; } = 64;
    /// <summary>Most rows decoding together in the continuous batch.</summary>
    public int MaxBatch { get; init; } = 16;
    /// <summary>Longest prompt accepted, in tokens (EOS included); longer is 400 context_length_exceeded.</summary>
    public int MaxPromptTokens { get; init; } = 512;
    /// <summary>Most new tokens one choice may ask for (max_tokens); a request without max_tokens gets the model's
    /// generation_config.json length, capped at this.</summary>
    public int MaxNewTokens { get; init; } = 512;
    /// <summary>Most choices per request (n times the number of prompts).</summary>
    public int MaxChoices { get; init; } = 16;
    /// <summary>A request still running after this long is cancelled and answered 408 (or ends its stream with an error event).</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(120);
    /// <summary>Most inputs in one /v1/embeddings request (OpenAI's own limit is 2048); more is 400 on "input". Each input is
    /// cut to the embedder's max_seq_length tokens, as sentence-transformers does, and the cut ones are counted.</summary>
    public int MaxEmbeddingInputs { get; init; } = 2048;
    /// <summary>Largest request body accepted, in bytes; larger is 413.</summary>
    public long MaxBodySize { get; init; } = 1 << 20;
    /// <summary>How long a stop (SIGTERM) waits for in-flight requests to finish before closing them.</summary>
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Checks every setting; an <see cref="ArgumentException"/> whose ParamName is the CLI option's name
    /// (snake_case) and whose message begins with it.</summary>
    public void Validate()
    {
        static void Fail(string name, string message) => throw new ArgumentException($"{name}: {message}", name);
        if (string.IsNullOrWhiteSpace(Host)) Fail("host", "give an address such as 127.0.0.1 or 0.0.0.0.");
        if (Port is < 0 or > 65535) Fail("port", $"must be in [0, 65535], got {Port}.");
        if (ApiKey is not null && ApiKey.Length == 0) Fail("api_key", "is empty; give a key or leave it out.");
        if (string.IsNullOrWhiteSpace(ModelId)) Fail("served_model_name", "is empty; give the name clients send as \"model\".");
        if (MaxQueue < 0) Fail("max_queue", $"must not be negative, got {MaxQueue}.");
        if (MaxBatch < 1) Fail("max_batch", $"must be at least 1, got {MaxBatch}.");
        if (MaxPromptTokens < 1) Fail("max_prompt_tokens", $"must be at least 1, got {MaxPromptTokens}.");
        if (MaxNewTokens < 1) Fail("max_new_tokens", $"must be at least 1, got {MaxNewTokens}.");
        if (MaxChoices < 1) Fail("max_choices", $"must be at least 1, got {MaxChoices}.");
        if (MaxEmbeddingInputs < 1) Fail("max_embedding_inputs", $"must be at least 1, got {MaxEmbeddingInputs}.");
        if (RequestTimeout <= TimeSpan.Zero) Fail("request_timeout", $"must be positive, got {RequestTimeout.TotalSeconds} s.");
        if (MaxBodySize < 1) Fail("max_body_size", $"must be at least 1 byte, got {MaxBodySize}.");
        if (ShutdownTimeout < TimeSpan.Zero) Fail("shutdown_timeout", "must not be negative.");
    }
}
