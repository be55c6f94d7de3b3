// Load generator for `managedt5 serve`: starts the server in this process on a loopback port over a model folder (or
// random weights of a config's shape), then for N = 1, 4, 16, 64 concurrent clients sends streamed /v1/completions
// with mixed prompt and output lengths and prints one JSON line per N: tokens/s, p50/p99 latency, p50 time to first
// token, 200s and 429s. N = 1 (one request at a time) is the baseline of vs_one_at_a_time.
//   dotnet run -c Release --project bench/ManagedT5.Bench.Load -- --model tests/fixtures/models/tiny-flan-t5
//   dotnet run -c Release --project bench/ManagedT5.Bench.Load -- --random-config tests/fixtures/configs/flan-t5-small.json --tokenizer tests/fixtures/models/tiny-flan-t5/spiece.model
// Client and server share this process and its cores: the numbers are the server's under its own load generator.
using System.Diagnostics;
using System.Text.Json;
using ManagedT5;
using ManagedT5.Loading;
using ManagedT5.Benchmarks;
using ManagedT5.Model;
using ManagedT5.Server;

string? modelDir = Arg("--model"), randomConfig = Arg("--random-config"), tokenizer = Arg("--tokenizer");
int requestsPerClient = int.Parse(Arg("--requests-per-client") ?? "4");
int[] levels = (Arg("--clients") ?? "1,4,16,64").Split(',').Select(int.Parse).ToArray();
if (modelDir is null && randomConfig is null) { Console.Error.WriteLine("error: give --model DIR or --random-config CONFIG.json --tokenizer spiece.model"); return 2; }
if (randomConfig is not null) modelDir = RandomCheckpoint(randomConfig, tokenizer ?? throw new ArgumentException("--tokenizer: give the spiece.model for --random-config"));

using T5TextGenerator generator = T5TextGenerator.Load(modelDir!);
await using var server = new T5Server(generator, new T5ServerOptions { Port = 0, ModelId = "bench", MaxBatch = 64, MaxQueue = 256, MaxNewTokens = 512 });
await server.StartAsync();
using var http = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromMinutes(10) };

string[] prompts =
[
    "Translate English to German: How old are you?",
    "Summarize: " + string.Join(' ', Enumerable.Repeat("The committee met on Tuesday to discuss the budget for next year.", 6)),
    "Answer the question: what is the boiling point of water?",
    "Write a short poem about the sea",
    "Paraphrase: the quick brown fox jumps over the lazy dog near the river bank",
];
int[] lengths = [8, 16, 32, 64];
string source = randomConfig is null ? Path.GetFileName(Path.TrimEndingDirectorySeparator(modelDir!)) : Path.GetFileNameWithoutExtension(randomConfig) + " (random)";

await Run(4, 4);   // warm-up: JIT and pools
double? oneAtATime = null;
foreach (int n in levels)
{
    var line = await Run(n, Math.Max(requestsPerClient, 16 / n));
    if (n == 1) oneAtATime = line.TokensPerSecond;
    Console.WriteLine(JsonSerializer.Serialize(new
    {
        model = source,
        clients = n,
        requests = line.Requests,
        ok = line.Ok,
        busy_429 = line.Busy,
        tokens = line.Tokens,
        tokens_per_s = Math.Round(line.TokensPerSecond, 1),
        vs_one_at_a_time = oneAtATime is double s ? Math.Round(line.TokensPerSecond / s, 2) : (double?)null,
        p50_latency_ms = Math.Round(line.P50, 1),
        p99_latency_ms = Math.Round(line.P99, 1),
        p50_ttft_ms = Math.Round(line.Ttft50, 1),
    }));
}
return 0;

async Task<(int Requests, int Ok, int Busy, long Tokens, double TokensPerSecond, double P50, double P99, double Ttft50)> Run(
    int clients, int perClient)
{
    var latencies = new List<double>();
    var ttfts = new List<double>();
    long tokens = 0;
    int ok = 0, busy = 0;
    var wall = Stopwatch.StartNew();
    await Task.WhenAll(Enumerable.Range(0, clients).Select(async c =>
    {
        for (int i = 0; i < perClient; i++)
        {
            int k = c * 31 + i * 7;
            string body = JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["model"] = "bench", ["prompt"] = prompts[k % prompts.Length], ["max_tokens"] = lengths[k % lengths.Length],
                ["min_new_tokens"] = lengths[k % lengths.Length], ["stream"] = true, ["stream_options"] = new { include_usage = true },
            });
            var t0 = Stopwatch.StartNew();
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(body, System.Text.Encoding.UTF8, "application/json") };
            using HttpResponseMessage r = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            if ((int)r.StatusCode == 429) { Interlocked.Increment(ref busy); await Task.Delay(100); continue; }
            using var reader = new StreamReader(await r.Content.ReadAsStreamAsync());
            double? first = null;
            string? lineText;
            while ((lineText = await reader.ReadLineAsync()) is not null)
            {
                if (!lineText.StartsWith("data: {")) continue;
                first ??= t0.Elapsed.TotalMilliseconds;
                using JsonDocument d = JsonDocument.Parse(lineText[6..]);
                if (d.RootElement.TryGetProperty("usage", out JsonElement u) && u.ValueKind == JsonValueKind.Object)
                    Interlocked.Add(ref tokens, u.GetProperty("completion_tokens").GetInt32());
            }
            lock (latencies) { latencies.Add(t0.Elapsed.TotalMilliseconds); ttfts.Add(first ?? double.NaN); }
            Interlocked.Increment(ref ok);
        }
    }));
    double seconds = wall.Elapsed.TotalSeconds;
    latencies.Sort();
    ttfts.Sort();
    double P(List<double> v, double q) => v.Count == 0 ? double.NaN : v[Math.Min(v.Count - 1, (int)(q * v.Count))];
    return (clients * perClient, ok, busy, tokens, tokens / seconds, P(latencies, 0.5), P(latencies, 0.99), P(ttfts, 0.5));
}

string? Arg(string name)
{
    int i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
}

// Random weights with HF checkpoint names and the config's own architecture (bench/Shared/RandomWeights.cs), plus the
// given tokenizer.
static string RandomCheckpoint(string configPath, string spiece)
{
    string dir = Directory.CreateTempSubdirectory("managedt5-load-").FullName;
    new RandomWeights(seed: 0).WriteCheckpoint(new T5Modules(T5Config.Load(configPath)), Path.Combine(dir, "model.safetensors"));
    File.Copy(configPath, Path.Combine(dir, "config.json"));
    File.Copy(spiece, Path.Combine(dir, "spiece.model"));
    return dir;
}
