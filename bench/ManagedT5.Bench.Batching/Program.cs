// Continuous batching throughput on a random-weight model of a config's shape (default tests/fixtures/configs/
// flan-t5-small.json): for N = 1, 4, 16 clients, N requests (random prompts of 8-40 tokens, 32 new tokens each, EOS
// banned so every request makes all 32) served one at a time through Generator.Generate, then all at once through
// ContinuousBatcher; tokens/s of each and their ratio, in the same process, interleaved over a few rounds.
// Usage: dotnet run -c Release --project bench/ManagedT5.Bench.Batching [-- CONFIG [ROUNDS]]
using System.Diagnostics;
using ManagedT5;
using ManagedT5.Batching;
using ManagedT5.Generation;
using ManagedT5.Kernels.Cpu;
using ManagedT5.Loading;
using ManagedT5.Model;

string configPath = args.Length > 0 ? args[0] : Path.Combine("tests", "fixtures", "configs", "flan-t5-small.json");
int rounds = args.Length > 1 ? int.Parse(args[1]) : 2;
string dir = RandomCheckpoint(configPath);
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

// Random weights with HF names and the config's shapes, as `managedt5 bench --random-weights` makes them (gated FFN,
// untied head; norms ones, matrices normals scaled by 1/sqrt(in_features)).
static string RandomCheckpoint(string configPath)
{
    T5Config c = T5Config.Load(configPath);
    string dir = Directory.CreateTempSubdirectory("managedt5-batching-").FullName;
    var rng = new Random(0);
    float[] Randn(long rows, long cols, bool scaled)
    {
        var v = new float[rows * cols];
        float scale = scaled ? 1f / MathF.Sqrt(cols) : 1f;
        for (long i = 0; i < v.Length; i += 2)
        {
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble(), radius = Math.Sqrt(-2 * Math.Log(u1));
            v[i] = (float)(radius * Math.Cos(2 * Math.PI * u2)) * scale;
            if (i + 1 < v.Length) v[i + 1] = (float)(radius * Math.Sin(2 * Math.PI * u2)) * scale;
        }
        return v;
    }
    var modules = new T5Modules(c with { IsGatedAct = true, TieWordEmbeddings = false, IsEncoderOnly = false });
    var w = new SafeTensorsWriter();
    foreach (T5Parameter p in modules.Parameters)
        w.Add(p.Name, p.Role == T5ParameterRole.Norm ? Enumerable.Repeat(1f, p.Shape[0]).ToArray()
            : Randn(p.Shape[0], p.Shape[1], scaled: p.Role == T5ParameterRole.Matrix && p != modules.Shared), p.Shape);
    w.Save(Path.Combine(dir, "model.safetensors"));
    var node = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
    node["tie_word_embeddings"] = false;
    node["is_gated_act"] = true;
    node["dense_act_fn"] = "gelu_new";
    File.WriteAllText(Path.Combine(dir, "config.json"), node.ToJsonString());
    return dir;
}
