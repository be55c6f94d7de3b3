// The soak: many clients with mixed prompt and output lengths (some streamed, some abandoned) against a small queue for a
// fixed time. Every request must end in 200 or 429 (none hangs, none 500s), and resident memory must stay flat.
// 30 seconds in the default run; 5 minutes in the Slow category.
using System.Diagnostics;
using System.Text.Json;

namespace ManagedT5.Server.Tests;

/// <summary>The soak runs alone: other classes loading their models beside it would grow the RSS it measures.</summary>
[CollectionDefinition(nameof(SoakTests), DisableParallelization = true)]
public sealed class SoakCollection;

[Collection(nameof(SoakTests))]
public sealed class SoakTests(ModelFixture model, ITestOutputHelper output) : IClassFixture<ModelFixture>
{
    [Fact]
    public Task Soak_30_seconds() => Soak(TimeSpan.FromSeconds(30));

    [Fact]
    [Trait("Category", "Slow")]
    public Task Soak_5_minutes() => Soak(TimeSpan.FromMinutes(5));

    private async Task Soak(TimeSpan duration)
    {
        await using T5Server server = await model.StartAsync(new T5ServerOptions { MaxBatch = 8, MaxQueue = 8, RequestTimeout = TimeSpan.FromSeconds(60) });
        using var client = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(90) };
        string[] prompts =
        [
            "hi", "Translate English to German: How old are you?", "Summarize: " + string.Join(' ', Enumerable.Repeat("the cat sat on the mat", 20)),
            "Answer the question: what is the capital of France?", "List five fruits",
        ];
        int ok = 0, busy = 0, abandoned = 0;
        var bad = new List<string>();
        var stop = Stopwatch.StartNew();
        long rssStart = 0;
        async Task Client(int c)
        {
            var rng = new Random(c);
            while (stop.Elapsed < duration)
            {
                string prompt = prompts[rng.Next(prompts.Length)];
                int max = rng.Next(1, 48);
                bool stream = rng.Next(3) == 0, abandon = rng.Next(10) == 0;
                string body = $$"""{"model":"{{ModelFixture.ModelId}}","prompt":{{JsonSerializer.Serialize(prompt)}},"max_tokens":{{max}},"stream":{{(stream ? "true" : "false")}}}""";
                using var cts = new CancellationTokenSource(abandon ? TimeSpan.FromMilliseconds(rng.Next(1, 30)) : TimeSpan.FromSeconds(80));
                try
                {
                    using HttpResponseMessage r = await client.PostAsync("/v1/completions", Http.Json(body), cts.Token);
                    string text = await r.Content.ReadAsStringAsync(cts.Token);
                    int status = (int)r.StatusCode;
                    if (status == 200 && (!stream || text.EndsWith("data: [DONE]\n\n", StringComparison.Ordinal))) Interlocked.Increment(ref ok);
                    else if (status == 429 && r.Headers.RetryAfter is not null)
                    {
                        Interlocked.Increment(ref busy);
                        await Task.Delay(rng.Next(10, 100));   // a client backs off (less than the second Retry-After asks, to keep the queue full)
                    }
                    else lock (bad) bad.Add($"{status}: {text[..Math.Min(200, text.Length)]}");
                }
                catch (OperationCanceledException) when (abandon) { Interlocked.Increment(ref abandoned); }
                catch (Exception e) { lock (bad) bad.Add($"{e.GetType().Name}: {e.Message}"); }
            }
        }
        Task warm = Task.WhenAll(Enumerable.Range(0, 4).Select(i => Client(1000 + i)));   // warm up so the baseline is not cold
        await Task.Delay(TimeSpan.FromSeconds(Math.Min(5, duration.TotalSeconds / 6)));
        GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
        rssStart = Process.GetCurrentProcess().WorkingSet64;
        await Task.WhenAll(Enumerable.Range(0, 24).Select(Client).Append(warm));
        await Http.Until(() => server.RunningRows == 0 && server.QueueDepth == 0, "the batch to empty");
        GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
        long rssEnd = Process.GetCurrentProcess().WorkingSet64;
        output.WriteLine($"{duration.TotalSeconds} s: {ok} ok, {busy} 429, {abandoned} abandoned, {bad.Count} bad; RSS {rssStart >> 20} -> {rssEnd >> 20} MiB");
        Assert.True(bad.Count == 0, string.Join("\n", bad.Take(5)));
        Assert.True(ok > 50, $"only {ok} requests served");
        // Flat: growth bounded by 64 MiB (pools and JIT settle); a leak of a KV cache or buffers per request is far more.
        Assert.True(rssEnd - rssStart < 64L << 20, $"RSS grew {rssStart >> 20} -> {rssEnd >> 20} MiB");
    }
}
