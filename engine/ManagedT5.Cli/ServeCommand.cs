// managedt5 serve: loads a model once and serves it over an OpenAI-compatible HTTP API (ManagedT5.Server) until SIGTERM
// or Ctrl+C, which drain in-flight requests first. Prints the address it listens on once it is ready.
using System.CommandLine;
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
                                           "/v1/models, /health, /ready, /metrics) until SIGTERM or Ctrl+C, which finish in-flight requests first")
        {
            model, device, dtype, threads, compat, host, port, apiKey, servedName, maxQueue, maxBatch, maxPrompt, maxNew, timeout, maxBody,
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
            };
            options.Validate();   // before the model loads: a bad flag should not wait for the weights

            string dir = CliCommon.ResolveModel(r, r.GetValue(model)!);
            CliCommon.Doing = $"loading the model from {dir}";
            using T5TextGenerator generator = T5TextGenerator.Load(dir, new T5LoadOptions
            {
                Device = r.GetValue(device)!,
                Threads = r.GetValue(threads),
                WeightFormat = GenerateCommand.ParseDType(r.GetValue(dtype)),
                TokenizerCompat = TokenizeCommands.ParseCompat(r.GetValue(compat)),
            });
            CliCommon.Doing = $"starting the server on {options.Host}:{options.Port}";
            return Serve(generator, options).GetAwaiter().GetResult();
        });
        return command;
    }

    private static async Task<int> Serve(T5TextGenerator generator, T5ServerOptions options)
    {
        await using var server = new T5Server(generator, options);
        try { await server.StartAsync(); }
        catch (IOException e)   // Kestrel: the address is in use or cannot be bound
        {
            throw new IOException($"cannot listen on {options.Host}:{options.Port}: {e.Message} Choose another --port or --host.", e);
        }
        Console.WriteLine($"Serving '{options.ModelId}' on {server.Address} (OpenAI-compatible: {server.Address}v1; " +
                          $"{(options.ApiKey is null ? "no API key" : "API key required")}). Ctrl+C or SIGTERM stops it.");
        CliCommon.Doing = "serving";
        await server.WaitForShutdownAsync();
        return 0;
    }

    private static Option<int> Int(string name, int defaultValue, string description) =>
        new(name) { HelpName = "n", Description = description, DefaultValueFactory = _ => defaultValue };
}
