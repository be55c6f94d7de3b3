// Continuous batching throughput on a random-weight model of a config's shape (default tests/fixtures/configs/
// flan-t5-small.json): for N = 1, 4, 16 clients, N requests (random prompts of 8-40 tokens, 32 new tokens each, EOS
// banned so every request makes all 32) served one at a time through Generator.Generate, then all at once through
// ContinuousBatcher; tokens/s of each and their ratio, in the same process, interleaved over a few rounds.
// Usage: dotnet run -c Release --project bench/ManagedT5.Bench.Batching [-- CONFIG [ROUNDS]]
using System.Diagnostics;
using ManagedT5;
using ManagedT5.Batching;
using ManagedT5.Benchmarks;
using ManagedT5.Generation;
using ManagedT5.Kernels.Cpu;
using ManagedT5.Loading;
using ManagedT5.Model;

string configPath = args.Length > 0 ? args[0] : Path.Combine("tests", "fixtures", "configs", "flan-t5-small.json");
int rounds = args.Length > 1 ? int.Parse(args[1]) : 2;
string dir = RandomWeights.GatedUntiedModel(configPath, "managedt5-batching-");   // as `managedt5 bench --random-weights`
using var model = T5Model.Load(dir, new CpuBackend(), ownsBackend: true);
var options = new GenerationOptions { MaxNewTokens = 32, MinNewTokens = 32 };
var random = new Random(1);
int[][] prompts = [.. Enumerable.Range(0, 16).Select(_ =>
{
    int n = random.Next(8, 41);
    int[] p = new int[n + 1];
    for (int i = 0; i < n; i++) p[i] = random.Next(2, model.Config.VocabSize);
    p[n] = 1;
    return p;
})];
Sequential(prompts.Take(2).ToArray());   // warm-up
await Concurrent(prompts.Take(2).ToArray());

Console.WriteLine($"config {Path.GetFileName(configPath)}, {Environment.ProcessorCount} cores, 32 new tokens per request, best of {rounds} rounds");
Console.WriteLine($"{"clients",8} {"one at a time tok/s",20} {"batched tok/s",14} {"ratio",6}");
foreach (int clients in new[] { 1, 4, 16 })
{
    double seq = 0, bat = 0;
    for (int r = 0; r < rounds; r++)
    {
        seq = Math.Max(seq, Sequential(prompts.Take(clients).ToArray()));
        bat = Math.Max(bat, await Concurrent(prompts.Take(clients).ToArray()));
    }
    Console.WriteLine($"{clients,8} {seq,20:F1} {bat,14:F1} {bat / seq,6:F2}");
}
Directory.Delete(dir, recursive: true);

double Sequential(int[][] batch)
{
    var sw = Stopwatch.StartNew();
    long tokens = 0;
    foreach (int[] p in batch) tokens += Generator.Generate(model, [p], options).Sequences[0].Length - 1;
    return tokens / sw.Elapsed.TotalSeconds;
}

async Task<double> Concurrent(int[][] batch)
{
    await using var batcher = new ContinuousBatcher(model, new ContinuousBatchingOptions { MaxBatch = 16 });
    var sw = Stopwatch.StartNew();
    int[] counts = await Task.WhenAll(batch.Select(async p =>
    {
        int n = 0;
        await foreach (int _ in batcher.GenerateAsync(p, options)) n++;
        return n;
    }));
    return counts.Sum() / sw.Elapsed.TotalSeconds;
}

