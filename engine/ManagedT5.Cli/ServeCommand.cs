// managedt5 serve: loads a model once and serves it over an OpenAI-compatible HTTP API (ManagedT5.Server) until SIGTERM
// or Ctrl+C, which drain in-flight requests first. Prints the address it listens on once it is ready. An embedding model
// (modules.json or T5EncoderModel) serves /v1/embeddings only; a generation model serves generation, each --adapter by
// its name, and /v1/embeddings too (encoder + mean pooling) unless --no-embeddings.
using System.CommandLine;
using ManagedT5.Embeddings;
using ManagedT5.Server;

namespace ManagedT5.Cli;

internal static class ServeCommand
{
    /// <summary>The environment variable read for the API key when --api-key is not given.</summary>
    public const string ApiKeyVariable = "MANAGEDT5_API_KEY";

    public static Command Create()
    {
        var defaults = new T5ServerOptions();
        Option<string> model = CliCommon.ModelOption();
        Option<string> device = CliCommon.DeviceOption();
        var dtype = new Option<string?>("--dtype") { HelpName = "type", Description = "Keep weights as f32, bf16, f16 or int8 (default: as stored)" };
        Option<int> threads = CliCommon.ThreadsOption(0);
        Option<string> compat = TokenizeCommands.TokenizerCompatOption();
        var host = new Option<string>("--host")
        {
            Description = "Address to listen on (127.0.0.1: this machine only; 0.0.0.0 or :: for every interface)",
            DefaultValueFactory = _ => defaults.Host,
        };
        var port = new Option<int>("--port") { Description = "TCP port (0: any free port)", DefaultValueFactory = _ => defaults.Port };
        var apiKey = new Option<string?>("--api-key")
        {
            HelpName = "key",
            Description = $"Require 'Authorization: Bearer KEY' on /v1 routes (default: ${ApiKeyVariable} if set, else no key)",
        };
        var servedName = new Option<string?>("--served-model-name")
        {
            HelpName = "name",
            Description = "The model name clients send as \"model\" and /v1/models lists (default: --model as given)",
        };
        var adapters = new Option<string[]>("--adapter")
        {
            HelpName = "name=dir",
            Description = "Serve a LoRA adapter (HF PEFT folder) on the same base, chosen by requests with \"model\": \"name\"; " +
                          "repeat for more. Each adapter has its own continuous batch",
            AllowMultipleArgumentsPerToken = false,
        };
        var noEmbeddings = new Option<bool>("--no-embeddings")
        {
            Description = "For a generation model: do not also serve /v1/embeddings (saves a second copy of the encoder's weights)",
        };
        var maxInputs = Int("--max-embedding-inputs", defaults.MaxEmbeddingInputs, "Most inputs in one /v1/embeddings request");
        var maxQueue = Int("--max-queue", defaults.MaxQueue, "Most requests waiting for the batch; one more gets 429 with Retry-After");
        var maxBatch = Int("--max-batch", defaults.MaxBatch, "Most requests decoding together (continuous batching)");
        var maxPrompt = Int("--max-prompt-tokens", defaults.MaxPromptTokens, "Longest prompt accepted, in tokens");
        var maxNew = Int("--max-new-tokens", defaults.MaxNewTokens, "Most tokens one choice may generate (max_tokens)");
        var timeout = new Option<double>("--request-timeout")
        {
            HelpName = "seconds", Description = "Cancel a request running longer than this (408)",
            DefaultValueFactory = _ => defaults.RequestTimeout.TotalSeconds,
        };
        var maxBody = new Option<long>("--max-body-size")
        {
            HelpName = "bytes", Description = "Largest request body accepted (413)", DefaultValueFactory = _ => defaults.MaxBodySize,
        };
        var command = new Command("serve", "Serve a model over an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, " +
                                           "/v1/embeddings, /v1/models, /health, /ready, /metrics) until SIGTERM or Ctrl+C, which finish " +
                                           "in-flight requests first. A sentence-transformers or T5EncoderModel folder serves embeddings only")
        {
            model, device, dtype, threads, compat, host, port, apiKey, servedName, adapters, noEmbeddings, maxInputs, maxQueue, maxBatch,
            maxPrompt, maxNew, timeout, maxBody,
        };
        command.SetAction(r =>
        {
            double seconds = r.GetValue(timeout);
            if (!(seconds > 0) || !double.IsFinite(seconds) || seconds > TimeSpan.MaxValue.TotalSeconds / 2)
                throw new ArgumentException($"request_timeout: must be a positive number of seconds, got {seconds}.", "request_timeout");
            var options = new T5ServerOptions
            {
                Host = r.GetValue(host)!,
                Port = r.GetValue(port),
                ApiKey = r.GetValue(apiKey) ?? (Environment.GetEnvironmentVariable(ApiKeyVariable) is { Length: > 0 } k ? k : null),
                ModelId = r.GetValue(servedName) ?? r.GetValue(model)!,
                MaxQueue = r.GetValue(maxQueue),
                MaxBatch = r.GetValue(maxBatch),
                MaxPromptTokens = r.GetValue(maxPrompt),
                MaxNewTokens = r.GetValue(maxNew),
                RequestTimeout = TimeSpan.FromSeconds(seconds),
                MaxBodySize = r.GetValue(maxBody),
                MaxEmbeddingInputs = r.GetValue(maxInputs),
            };
            options.Validate();   // before the model loads: a bad flag should not wait for the weights
            (string Name, string Dir)[] adapterList = ParseAdapters(r.GetValue(adapters) ?? [], options.ModelId);

            string dir = CliCommon.ResolveModel(r, r.GetValue(model)!);
            var weightFormat = GenerateCommand.ParseDType(r.GetValue(dtype));
            T5Embedder? embedder = null;
            T5TextGenerator? generator = null;
            try
            {
                if (IsEmbeddingModel(dir))
                {
                    if (adapterList.Length > 0)
                        throw new ArgumentException($"adapter: '{dir}' is an embedding model (modules.json or T5EncoderModel); adapters serve " +
                                                    "generation, so give a generation model with --adapter.", "adapter");
                    CliCommon.Doing = $"loading the embedding model from {dir}";
                    embedder = T5Embedder.Load(dir, new T5EmbedderOptions
                    {
                        Device = r.GetValue(device)!, Threads = r.GetValue(threads), WeightFormat = weightFormat,
                    });
                }
                else
                {
                    CliCommon.Doing = $"loading the model from {dir}";
                    generator = T5TextGenerator.Load(dir, new T5LoadOptions
                    {
                        Device = r.GetValue(device)!,
                        Threads = r.GetValue(threads),
                        WeightFormat = weightFormat,
                        TokenizerCompat = TokenizeCommands.ParseCompat(r.GetValue(compat)),
                    });
                    foreach (var (name, adapterDir) in adapterList)
                    {
                        CliCommon.Doing = $"adding the adapter '{name}' from {adapterDir}";
                        generator.AddAdapter(name, adapterDir);
                    }
                    if (!r.GetValue(noEmbeddings))
                    {
                        CliCommon.Doing = $"loading the encoder of {dir} for /v1/embeddings (--no-embeddings skips this)";
                        embedder = T5Embedder.Load(dir, new T5EmbedderOptions
                        {
                            Device = r.GetValue(device)!, Threads = r.GetValue(threads), WeightFormat = weightFormat,
                        });
                    }
                }
                CliCommon.Doing = $"starting the server on {options.Host}:{options.Port}";
                return Serve(generator, embedder, options).GetAwaiter().GetResult();
            }
            finally
            {
                embedder?.Dispose();
                generator?.Dispose();
            }
        });
        return command;
    }

    /// <summary>--adapter NAME=DIR values: names non-empty, unique and not the served model's name.</summary>
    private static (string Name, string Dir)[] ParseAdapters(string[] values, string servedName)
    {
        var list = new List<(string, string)>();
        foreach (string value in values)
        {
            int eq = value.IndexOf('=');
            if (eq <= 0 || eq == value.Length - 1)
                throw new ArgumentException($"adapter: '{value}' is not NAME=DIR; give the name clients send as \"model\" and the PEFT " +
                                            "adapter folder, e.g. --adapter summarize=./lora_final.", "adapter");
            string name = value[..eq].Trim(), dir = value[(eq + 1)..].Trim();
            if (name == servedName)
                throw new ArgumentException($"adapter: '{name}' is the served model's own name; give the adapter another name.", "adapter");
            if (list.Any(a => a.Item1 == name))
                throw new ArgumentException($"adapter: the name '{name}' is given twice; give each adapter its own name.", "adapter");
            list.Add((name, dir));
        }
        return [.. list];
    }

    /// <summary>A sentence-transformers folder (modules.json) or a T5EncoderModel checkpoint: embeddings only.</summary>
    private static bool IsEmbeddingModel(string dir) =>
        File.Exists(Path.Combine(dir, SentenceTransformerFolder.ModulesFile))
        || (File.Exists(Path.Combine(dir, "config.json")) && T5Config.Load(Path.Combine(dir, "config.json")).IsEncoderOnly);

    private static async Task<int> Serve(T5TextGenerator? generator, T5Embedder? embedder, T5ServerOptions options)
    {
        await using var server = new T5Server(generator, embedder, options);
        try { await server.StartAsync(); }
        catch (IOException e)   // Kestrel: the address is in use or cannot be bound
        {
            throw new IOException($"cannot listen on {options.Host}:{options.Port}: {e.Message} Choose another --port or --host.", e);
        }
        string what = generator is null ? "embeddings only"
            : string.Join(", ", server.GenerationModels.Select(m => $"'{m}'")) + (embedder is null ? "" : " and embeddings");
        Console.WriteLine($"Serving '{options.ModelId}' ({what}) on {server.Address} (OpenAI-compatible: {server.Address}v1; " +
                          $"{(options.ApiKey is null ? "no API key" : "API key required")}). Ctrl+C or SIGTERM stops it.");
        CliCommon.Doing = "serving";
        await server.WaitForShutdownAsync();
        return 0;
    }

    private static Option<int> Int(string name, int defaultValue, string description) =>
        new(name) { HelpName = "n", Description = description, DefaultValueFactory = _ => defaultValue };
}
