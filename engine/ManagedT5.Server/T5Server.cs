// The HTTP server: Kestrel on one address, the OpenAI-compatible routes (/v1/completions, /v1/chat/completions,
// /v1/embeddings, /v1/models), /health, /ready, /metrics, the API-key check, and a stop that drains in-flight requests.
// Each served model view (the base model, and each LoRA adapter by its name) has its own ContinuousBatcher: rows of
// different adapters cannot share one Linear, so they never share a batch. Embeddings run on the T5Embedder directly.
using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using ManagedT5.Batching;
using ManagedT5.Embeddings;
using ManagedT5.Generation;
using ManagedT5.Tokenizer;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Prometheus;

namespace ManagedT5.Server;

/// <summary>
/// An OpenAI-compatible server for one loaded <see cref="T5TextGenerator"/> (served as <see cref="T5ServerOptions.ModelId"/>,
/// and each adapter added to it with <see cref="T5TextGenerator.AddAdapter"/> before the server is built, served by the
/// adapter's name), and/or one <see cref="T5Embedder"/> for /v1/embeddings (served as ModelId). <see cref="StartAsync"/> listens;
/// <see cref="StopAsync"/> (or SIGTERM / Ctrl+C, which the host turns into the same stop) stops accepting, lets in-flight
/// requests finish (up to <see cref="T5ServerOptions.ShutdownTimeout"/>) and returns. The models are not disposed.
/// </summary>
public sealed class T5Server : IAsyncDisposable
{
    /// <summary>One name clients send as "model": a generator (the base or an adapter's) and its own batcher.</summary>
    private sealed record ModelView(string Id, T5TextGenerator Generator, ContinuousBatcher Batcher, string? Parent);

    private readonly T5ServerOptions _options;
    private readonly Dictionary<string, ModelView> _views = new(StringComparer.Ordinal);   // base first, then adapters
    private readonly T5Embedder? _embedder;
    private readonly ServerMetrics _metrics;
    private readonly WebApplication _app;
    private readonly byte[]? _keyHash;
    private volatile bool _started, _stopping;

    /// <summary>JSON as clients read it: quotes and non-ASCII text written as they are, not as \u escapes.</summary>
    internal static readonly JsonWriterOptions JsonOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Builds a generation server (nothing listens until <see cref="StartAsync"/>); /v1/embeddings answers 404.</summary>
    /// <exception cref="ArgumentException">A bad option (ParamName: the CLI option's snake_case name).</exception>
    public T5Server(T5TextGenerator generator, T5ServerOptions? options = null) : this(generator, null, options)
    {
    }

    /// <summary>Builds an embedding server: /v1/embeddings only; completions answer 404 model_not_found.</summary>
    /// <exception cref="ArgumentException">A bad option (ParamName: the CLI option's snake_case name).</exception>
    public T5Server(T5Embedder embedder, T5ServerOptions? options = null) : this(null, embedder, options)
    {
    }

    /// <summary>Builds a server for a generator, an embedder or both (at least one); both are served under
    /// <see cref="T5ServerOptions.ModelId"/>, and each adapter of the generator under its own name.</summary>
    /// <exception cref="ArgumentException">A bad option (ParamName: the CLI option's snake_case name), or an adapter named
    /// like the model (ParamName "adapter").</exception>
    public T5Server(T5TextGenerator? generator, T5Embedder? embedder, T5ServerOptions? options = null)
    {
        if (generator is null && embedder is null) throw new ArgumentNullException(nameof(generator), "Give a generator, an embedder or both.");
        _options = options ?? new T5ServerOptions();
        _options.Validate();
        _embedder = embedder;
        IPAddress address = _options.Host == "localhost" ? IPAddress.Loopback
            : IPAddress.TryParse(_options.Host, out IPAddress? ip) ? ip
            : throw new ArgumentException($"host: '{_options.Host}' is not an IP address; give one such as 127.0.0.1, 0.0.0.0 or ::.", "host");
        _keyHash = _options.ApiKey is null ? null : SHA256.HashData(Encoding.UTF8.GetBytes(_options.ApiKey));
        if (generator is not null)
        {
            var batching = new ContinuousBatchingOptions { MaxBatch = _options.MaxBatch, MaxQueue = _options.MaxQueue };
            string[] adapters = [.. generator.AdapterNames.Order(StringComparer.Ordinal)];
            if (adapters.Contains(_options.ModelId))
                throw new ArgumentException($"adapter: the adapter '{_options.ModelId}' has the served model's own name; give the adapter or " +
                                            "--served-model-name another name.", "adapter");
            _views[_options.ModelId] = new ModelView(_options.ModelId, generator, new ContinuousBatcher(generator.Model, batching), null);
            foreach (string name in adapters)
            {
                T5TextGenerator view = generator.ForAdapter(name);
                _views[name] = new ModelView(name, view, new ContinuousBatcher(view.Model, batching), _options.ModelId);
            }
        }
        _metrics = new ServerMetrics(() => QueueDepth, () => RunningRows, _options.MaxQueue);

        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            ApplicationName = "ManagedT5.Server",
            ContentRootPath = AppContext.BaseDirectory,
        });
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning);
        builder.Services.Configure<ConsoleLifetimeOptions>(o => o.SuppressStatusMessages = true);
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = _options.ShutdownTimeout);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Listen(address, _options.Port);
            // The handler reads at most MaxBodySize and answers 413 itself; Kestrel's own cap, above it, only stops a body
            // sent to a route that never reads one.
            k.Limits.MaxRequestBodySize = _options.MaxBodySize + (1 << 20);
            k.AddServerHeader = false;
        });
        _app = builder.Build();
        Map(_app);
    }

    /// <summary>The address the server listens on (known after <see cref="StartAsync"/>; with port 0, the port chosen).</summary>
    public Uri Address { get; private set; } = new("http://127.0.0.1/");

    /// <summary>Requests waiting for a place in a batch (all served models together).</summary>
    public int QueueDepth => _views.Values.Sum(v => v.Batcher.QueueDepth);

    /// <summary>Rows decoding in the running batches (all served models together).</summary>
    public int RunningRows => _views.Values.Sum(v => v.Batcher.RunningRows);

    /// <summary>The names clients may send as "model" to generate: the served model, then its adapters.</summary>
    public IReadOnlyCollection<string> GenerationModels => _views.Keys;

    /// <summary>Starts listening; returns once requests are accepted.</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        _app.Lifetime.ApplicationStopping.Register(() => _stopping = true);
        await _app.StartAsync(cancellationToken).ConfigureAwait(false);
        string url = _app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.First();
        Address = new Uri(url);
        _started = true;
    }

    /// <summary>Completes when the host stops (SIGTERM, Ctrl+C or <see cref="StopAsync"/>), after the drain.</summary>
    public Task WaitForShutdownAsync(CancellationToken cancellationToken = default) => _app.WaitForShutdownAsync(cancellationToken);

    /// <summary>Stops accepting requests and waits for in-flight ones (up to <see cref="T5ServerOptions.ShutdownTimeout"/>).</summary>
    public Task StopAsync(CancellationToken cancellationToken = default)
    {
        _stopping = true;
        return _app.StopAsync(cancellationToken);
    }

    /// <summary>Stops (draining) and releases the host and the batcher.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_started && !_stopping) await StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
        foreach (ModelView view in _views.Values) await view.Batcher.DisposeAsync().ConfigureAwait(false);
    }

    private void Map(WebApplication app)
    {
        // Empty error answers from routing (405 wrong method) get an OpenAI error body too.
        app.UseStatusCodePages(async context =>
        {
            HttpResponse r = context.HttpContext.Response;
            await new ApiError(r.StatusCode, r.StatusCode == 405
                ? $"{context.HttpContext.Request.Method} is not allowed on {context.HttpContext.Request.Path}."
                : $"HTTP {r.StatusCode}.").WriteAsync(r);
        });
        app.Use(async (context, next) =>
        {
            if (_keyHash is not null && context.Request.Path.StartsWithSegments("/v1") && !Authorized(context.Request))
            {
                _metrics.Requests.WithLabels(Endpoint(context), "401").Inc();
                await new ApiError(401, "Incorrect or missing API key: send the header 'Authorization: Bearer KEY' with the server's key.",
                    code: "invalid_api_key").WriteAsync(context.Response);
                return;
            }
            await next(context);
        });
        app.MapPost("/v1/completions", context => CompletionsAsync(context, chat: false));
        app.MapPost("/v1/chat/completions", context => CompletionsAsync(context, chat: true));
        app.MapPost("/v1/embeddings", context => Guarded(context, "embeddings", () => EmbeddingsAsync(context)));
        app.MapGet("/v1/models", context => WriteJsonAsync(context.Response, w =>
        {
            w.WriteStartObject();
            w.WriteString("object", "list");
            w.WriteStartArray("data");
            foreach (string id in ModelIds) WriteModel(w, id);
            w.WriteEndArray();
            w.WriteEndObject();
        }));
        app.MapGet("/v1/models/{**id}", context => Guarded(context, "models", () =>
            context.Request.RouteValues["id"] is string id && ModelIds.Contains(id)
                ? WriteJsonAsync(context.Response, w => WriteModel(w, id))
                : throw new ApiError(404, $"The model '{context.Request.RouteValues["id"]}' does not exist here; this server serves " +
                                          $"{string.Join(", ", ModelIds.Select(m => $"'{m}'"))}.", "model", "model_not_found")));
        app.MapGet("/health", context => WriteJsonAsync(context.Response, w => { w.WriteStartObject(); w.WriteString("status", "ok"); w.WriteEndObject(); }));
        app.MapGet("/ready", context =>
        {
            // Ready: started, not draining, and the queue has room (a full queue sends new clients to other replicas); with
            // adapters, the waiting requests of every model count against the one --max-queue.
            string? why = !_started ? "starting" : _stopping ? "draining" : QueueDepth >= _options.MaxQueue ? "queue full" : null;
            if (why is not null) context.Response.StatusCode = 503;
            return WriteJsonAsync(context.Response, w => { w.WriteStartObject(); w.WriteString("status", why ?? "ready"); w.WriteEndObject(); });
        });
        app.MapMetrics("/metrics", _metrics.Registry);
        app.MapFallback(context => (Endpoint(context) == "other"
            ? new ApiError(404, $"No route {context.Request.Method} {context.Request.Path}: this server has /v1/completions, " +
                                "/v1/chat/completions, /v1/embeddings, /v1/models, /health, /ready and /metrics.")
            : new ApiError(405, $"{context.Request.Method} is not allowed on {context.Request.Path}; use POST.")).WriteAsync(context.Response));
    }

    /// <summary>What /v1/models lists: the served model, then each adapter by its name.</summary>
    private IEnumerable<string> ModelIds => _views.Count > 0 ? _views.Keys : [_options.ModelId];

    /// <summary>One /v1/models entry; an adapter names its base as "parent" (and "root"), as vLLM lists LoRA modules.</summary>
    private void WriteModel(Utf8JsonWriter w, string id)
    {
        w.WriteStartObject();
        w.WriteString("id", id);
        w.WriteString("object", "model");
        w.WriteNumber("created", 0);
        w.WriteString("owned_by", "managedt5");
        if (_views.TryGetValue(id, out ModelView? view) && view.Parent is not null)
        {
            w.WriteString("root", view.Parent);
            w.WriteString("parent", view.Parent);
        }
        w.WriteEndObject();
    }

    /// <summary>POST /v1/embeddings on the embedder (its own thread-pool work; not through the batchers).</summary>
    private async Task EmbeddingsAsync(HttpContext context)
    {
        using var timeout = new CancellationTokenSource(_options.RequestTimeout);
        using var request = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, timeout.Token);
        _metrics.InFlight.Inc();
        try
        {
            using JsonDocument body = await ReadJsonAsync(context.Request, request.Token);
            try
            {
                await EmbeddingsEndpoint.HandleAsync(context.Response, body.RootElement, _embedder, _options, _views.Keys,
                    tokens => _metrics.PromptTokens.Inc(tokens), request.Token);
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested && !context.RequestAborted.IsCancellationRequested)
            {
                throw new ApiError(408, $"The request took longer than the server's limit of {_options.RequestTimeout.TotalSeconds:0.###} s " +
                                        "and was cancelled; send fewer inputs.", code: "timeout");
            }
        }
        finally { _metrics.InFlight.Dec(); }
    }

    /// <summary>Constant-time comparison of the bearer token with the key (both hashed, so lengths leak nothing).</summary>
    private bool Authorized(HttpRequest request)
    {
        string header = request.Headers.Authorization.ToString();
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) return false;
        byte[] given = SHA256.HashData(Encoding.UTF8.GetBytes(header["Bearer ".Length..].Trim()));
        return CryptographicOperations.FixedTimeEquals(given, _keyHash);
    }

    private static string Endpoint(HttpContext context) => context.Request.Path.Value switch
    {
        "/v1/completions" => "completions",
        "/v1/chat/completions" => "chat",
        "/v1/embeddings" => "embeddings",
        _ => "other",
    };

    /// <summary>Runs a handler, turning every failure into an OpenAI error body (never a stack trace) and counting it.</summary>
    private async Task Guarded(HttpContext context, string endpoint, Func<Task> handler)
    {
        int status = 200;
        try { await handler(); status = context.Response.StatusCode; }
        catch (Exception e) { status = await FailAsync(context, e, timedOut: false); }
        _metrics.Requests.WithLabels(endpoint, status.ToString()).Inc();
    }

    /// <summary>Answers a failure: the error body when nothing was sent yet, an SSE error event in a started stream.
    /// Returns the status counted (499: the client went away).</summary>
    private async Task<int> FailAsync(HttpContext context, Exception e, bool timedOut)
    {
        if (context.RequestAborted.IsCancellationRequested) return 499;
        ApiError error = e switch
        {
            ApiError a => a,
            QueueFullException => new ApiError(429, $"The server is busy: {_options.MaxQueue} requests are already waiting. Retry after a second.",
                code: "queue_full"),
            OperationCanceledException when timedOut => new ApiError(408,
                $"The request took longer than the server's limit of {_options.RequestTimeout.TotalSeconds:0.###} s and was cancelled; ask for fewer tokens.",
                code: "timeout"),
            BadHttpRequestException b => new ApiError(b.StatusCode, $"Bad request: {b.Message}"),
            ArgumentException a => ApiError.BadRequest(a.Message, a.ParamName),
            _ => null!,
        };
        if (error is null)
        {
            _app.Logger.LogError(e, "Request {Path} failed", context.Request.Path);
            error = new ApiError(500, "The server failed on this request (see its log); the request itself may be fine, retry it.");
        }
        if (!context.Response.HasStarted) await error.WriteAsync(context.Response);
        else if (context.Response.ContentType == "text/event-stream")
        {
            try { await WriteEventAsync(context.Response, error.WriteObject, context.RequestAborted); }
            catch (Exception) { /* the stream is gone; nothing more to tell */ }
        }
        return error.Status;
    }

    private async Task CompletionsAsync(HttpContext context, bool chat)
    {
        string endpoint = chat ? "chat" : "completions";
        long start = Stopwatch.GetTimestamp();
        using var timeout = new CancellationTokenSource(_options.RequestTimeout);
        using var request = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, timeout.Token);
        var runs = new List<ChoiceRun>();
        int status = 200;
        _metrics.InFlight.Inc();
        try
        {
            using JsonDocument body = await ReadJsonAsync(context.Request, request.Token);
            ModelView? first = _views.Values.FirstOrDefault();
            CompletionRequest r = CompletionRequest.Parse(body.RootElement, chat, _views.Keys, first?.Generator.DefaultOptions ?? new GenerationOptions(),
                first?.Generator.Model.Config.VocabSize ?? 0, _options);
            ModelView view = _views[r.Model];
            T5TextGenerator generator = view.Generator;
            int[][] prompts = Encode(generator.Tokenizer, r.Prompts, chat);
            _metrics.PromptTokens.Inc(prompts.Sum(p => p.Length) * r.N);
            int eos = r.Options.EosTokenId ?? generator.Model.Config.EosTokenId;
            foreach (int[] ids in prompts)
                for (int i = 0; i < r.N; i++)
                {
                    // n > 1 with a seed: choice i samples with seed + i, so the choices differ and the answer repeats.
                    GenerationOptions o = r.N > 1 && r.Options.Seed is ulong seed ? r.Options with { Seed = seed + (ulong)i } : r.Options;
                    runs.Add(new ChoiceRun(view.Batcher, generator.Tokenizer, ids, o, eos, r.Stop, request.Token));
                }
            await StartAllAsync(runs, request);
            _metrics.TimeToFirstToken.WithLabels(endpoint).Observe(Stopwatch.GetElapsedTime(start).TotalSeconds);
            string id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");
            long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
            int promptTokens = prompts.Sum(p => p.Length) * r.N;
            if (r.Stream) await StreamAsync(context.Response, r.Model, r, runs, chat, id, created, promptTokens, request.Token);
            else await WholeAsync(context.Response, r.Model, runs, chat, id, created, promptTokens);
        }
        catch (Exception e)
        {
            status = await FailAsync(context, e, timedOut: timeout.IsCancellationRequested && !context.RequestAborted.IsCancellationRequested);
        }
        finally
        {
            foreach (ChoiceRun run in runs)
            {
                _metrics.CompletionTokens.Inc(run.TokenCount);
                await run.DisposeAsync();
            }
            _metrics.InFlight.Dec();
            _metrics.Requests.WithLabels(endpoint, status.ToString()).Inc();
            _metrics.Latency.WithLabels(endpoint).Observe(Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
    }

    /// <summary>Starts every choice; the first failure (a full queue) cancels the rest and is rethrown.</summary>
    private static async Task StartAllAsync(List<ChoiceRun> runs, CancellationTokenSource request)
    {
        var pending = runs.Select(r => r.StartAsync()).ToList();
        Exception? first = null;
        while (pending.Count > 0)
        {
            Task done = await Task.WhenAny(pending);
            pending.Remove(done);
            if (done.Exception is { } e && first is null)
            {
                first = e.InnerException ?? e;
                if (first is not OperationCanceledException) request.Cancel();
            }
            else if (done.IsCanceled && first is null) first = new OperationCanceledException();
        }
        if (first is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(first);
    }

    /// <summary>The prompts' ids, special-token spellings as plain text; empty or too long is 400.</summary>
    private int[][] Encode(T5Tokenizer tokenizer, IReadOnlyList<string> prompts, bool chat)
    {
        string field = chat ? "messages" : "prompt";
        var ids = new int[prompts.Count][];
        for (int i = 0; i < prompts.Count; i++)
        {
            if (string.IsNullOrWhiteSpace(prompts[i])) throw ApiError.BadRequest($"{field}: the prompt is empty; give some text.", field);
            ids[i] = tokenizer.Encode(prompts[i], parseSpecialTokens: false);
            if (ids[i].Length > _options.MaxPromptTokens)
                throw ApiError.BadRequest($"{field}: the prompt has {ids[i].Length} tokens, more than this server's limit of " +
                                          $"{_options.MaxPromptTokens}; shorten it.", field, "context_length_exceeded");
        }
        return ids;
    }

    /// <summary>The body as JSON, read up to <see cref="T5ServerOptions.MaxBodySize"/> bytes (413 beyond).</summary>
    private async Task<JsonDocument> ReadJsonAsync(HttpRequest request, CancellationToken ct)
    {
        long max = _options.MaxBodySize;
        ApiError TooLarge() => new(413, $"The request body is larger than this server's limit of {max} bytes.", code: "request_too_large");
        if (request.ContentLength > max) throw TooLarge();
        using var buffer = new MemoryStream();
        var chunk = new byte[16384];
        int read;
        while ((read = await request.Body.ReadAsync(chunk, ct)) > 0)
        {
            if (buffer.Length + read > max) throw TooLarge();
            buffer.Write(chunk, 0, read);
        }
        if (buffer.Length == 0) throw ApiError.BadRequest("The request body is empty; send a JSON object.");
        try { return JsonDocument.Parse(buffer.GetBuffer().AsMemory(0, (int)buffer.Length), new JsonDocumentOptions { MaxDepth = 32 }); }
        catch (JsonException e) { throw ApiError.BadRequest($"The request body is not valid JSON: {e.Message}"); }
    }

    /// <summary>A whole (non-streamed) answer: every choice's text, then usage.</summary>
    private static async Task WholeAsync(HttpResponse response, string model, List<ChoiceRun> runs, bool chat, string id, long created, int promptTokens)
    {
        string[] texts = await Task.WhenAll(runs.Select(async run =>
        {
            var text = new StringBuilder();
            await foreach (string piece in run.ReadAsync()) text.Append(piece);
            return text.ToString();
        }));
        int completion = runs.Sum(r => r.TokenCount);
        await WriteJsonAsync(response, w =>
        {
            w.WriteStartObject();
            w.WriteString("id", id);
            w.WriteString("object", chat ? "chat.completion" : "text_completion");
            w.WriteNumber("created", created);
            w.WriteString("model", model);
            w.WriteStartArray("choices");
            for (int i = 0; i < runs.Count; i++)
            {
                w.WriteStartObject();
                w.WriteNumber("index", i);
                if (chat)
                {
                    w.WriteStartObject("message");
                    w.WriteString("role", "assistant");
                    w.WriteString("content", texts[i]);
                    w.WriteEndObject();
                }
                else w.WriteString("text", texts[i]);
                w.WriteNull("logprobs");
                w.WriteString("finish_reason", runs[i].FinishReason);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            WriteUsage(w, promptTokens, completion);
            w.WriteEndObject();
        });
    }

    /// <summary>A streamed answer: server-sent events, one chunk per text piece, a last chunk per choice with its
    /// finish reason, usage when asked (stream_options.include_usage), then "data: [DONE]".</summary>
    private static async Task StreamAsync(HttpResponse response, string model, CompletionRequest r, List<ChoiceRun> runs, bool chat, string id,
        long created, int promptTokens, CancellationToken ct)
    {
        response.StatusCode = 200;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        var events = Channel.CreateUnbounded<(int Index, string? Text, string? Finish)>(new UnboundedChannelOptions { SingleReader = true });
        var readers = runs.Select(async (run, index) =>
        {
            await foreach (string piece in run.ReadAsync()) events.Writer.TryWrite((index, piece, null));
            events.Writer.TryWrite((index, null, run.FinishReason));
        }).ToList();
        Task all = Task.WhenAll(readers).ContinueWith(t => events.Writer.TryComplete(t.Exception?.InnerException), TaskScheduler.Default);
        try
        {
            await WriteStreamAsync(response, r, runs, chat, id, model, created, promptTokens, events.Reader, ct);
        }
        finally
        {
            // However the stream ended (a timeout, the client gone), the readers stop before the runs are disposed.
            foreach (ChoiceRun run in runs) run.Cancel();
            try { await all; } catch (Exception) { /* reported through the channel */ }
        }
    }

    private static async Task WriteStreamAsync(HttpResponse response, CompletionRequest r, List<ChoiceRun> runs, bool chat, string id,
        string model, long created, int promptTokens, ChannelReader<(int Index, string? Text, string? Finish)> events, CancellationToken ct)
    {

        void Chunk(Utf8JsonWriter w, int index, Action<Utf8JsonWriter> choice, bool usage = false)
        {
            w.WriteStartObject();
            w.WriteString("id", id);
            w.WriteString("object", chat ? "chat.completion.chunk" : "text_completion");
            w.WriteNumber("created", created);
            w.WriteString("model", model);
            w.WriteStartArray("choices");
            if (index >= 0)
            {
                w.WriteStartObject();
                w.WriteNumber("index", index);
                choice(w);
                w.WriteNull("logprobs");
                w.WriteEndObject();
            }
            w.WriteEndArray();
            if (usage) WriteUsage(w, promptTokens, runs.Sum(x => x.TokenCount));
            w.WriteEndObject();
        }
        if (chat)   // OpenAI's first chat chunk gives the role
            for (int i = 0; i < runs.Count; i++)
                await WriteEventAsync(response, w => Chunk(w, i, c =>
                {
                    c.WriteStartObject("delta"); c.WriteString("role", "assistant"); c.WriteString("content", ""); c.WriteEndObject();
                    c.WriteNull("finish_reason");
                }), ct);
        await foreach (var (index, text, finish) in events.ReadAllAsync(ct))
            await WriteEventAsync(response, w => Chunk(w, index, c =>
            {
                if (chat)
                {
                    c.WriteStartObject("delta");
                    if (text is not null) c.WriteString("content", text);
                    c.WriteEndObject();
                }
                else c.WriteString("text", text ?? "");
                c.WriteString("finish_reason", finish);
            }), ct);
        if (r.IncludeUsage) await WriteEventAsync(response, w => Chunk(w, -1, _ => { }, usage: true), ct);
        await response.Body.WriteAsync("data: [DONE]\n\n"u8.ToArray(), ct);
        await response.Body.FlushAsync(ct);
    }

    private static void WriteUsage(Utf8JsonWriter w, int prompt, int completion)
    {
        w.WriteStartObject("usage");
        w.WriteNumber("prompt_tokens", prompt);
        w.WriteNumber("completion_tokens", completion);
        w.WriteNumber("total_tokens", prompt + completion);
        w.WriteEndObject();
    }

    private static async Task WriteEventAsync(HttpResponse response, Action<Utf8JsonWriter> write, CancellationToken ct)
    {
        using var buffer = new MemoryStream();
        buffer.Write("data: "u8);
        using (var w = new Utf8JsonWriter(buffer, JsonOptions)) write(w);
        buffer.Write("\n\n"u8);
        await response.Body.WriteAsync(buffer.GetBuffer().AsMemory(0, (int)buffer.Length), ct);
        await response.Body.FlushAsync(ct);
    }

    private static async Task WriteJsonAsync(HttpResponse response, Action<Utf8JsonWriter> write)
    {
        response.ContentType = "application/json";
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, JsonOptions)) write(w);
        await response.Body.WriteAsync(buffer.GetBuffer().AsMemory(0, (int)buffer.Length));
    }
}
