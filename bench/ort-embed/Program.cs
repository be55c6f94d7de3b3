// ORT peer for the embedding benchmark: runs embed.onnx (written by export_embed_onnx.py from a sentence-transformers
// folder) on ONNX Runtime's CPU execution provider, 32 texts x 128 tokens per call, timed as ManagedT5's --quick-embed
// times (one warm-up, then the median of 3 to 10 calls within 20 s).
// Usage: dotnet run -c Release -- <folder written by export_embed_onnx.py> [--threads N] [--check]
// Prints one JSON line; --check compares ORT's embeddings with torch's (ref_embeddings.bin) instead.
using System.Diagnostics;
using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

int ti = Array.IndexOf(args, "--threads");
int threads = ti >= 0 ? int.Parse(args[ti + 1]) : 0;
bool check = args.Contains("--check");
string dir = args.Where((a, i) => !a.StartsWith("--") && (i == 0 || args[i - 1] != "--threads")).FirstOrDefault()
    ?? throw new ArgumentException("usage: OrtEmbed <folder written by export_embed_onnx.py> [--threads N] [--check]");

JsonElement inputs = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "inputs.json"))).RootElement;
long[][] rows = inputs.GetProperty("ids").EnumerateArray().Select(r => r.EnumerateArray().Select(e => e.GetInt64()).ToArray()).ToArray();
int batch = rows.Length, seq = rows[0].Length;
var ids = new DenseTensor<long>(rows.SelectMany(r => r).ToArray(), [batch, seq]);
var mask = new DenseTensor<long>(Enumerable.Repeat(1L, batch * seq).ToArray(), [batch, seq]);

using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
if (threads > 0) { options.IntraOpNumThreads = threads; options.InterOpNumThreads = 1; }
using var session = new InferenceSession(Path.Combine(dir, "embed.onnx"), options);
float[] Run()
{
    using var output = session.Run([NamedOnnxValue.CreateFromTensor("input_ids", ids), NamedOnnxValue.CreateFromTensor("attention_mask", mask)]);
    return output.First().AsEnumerable<float>().ToArray();   // embeddings: [batch, dim]
}

float[] first = Run();   // warm-up
if (check)
{
    byte[] b = File.ReadAllBytes(Path.Combine(dir, "ref_embeddings.bin"));
    var expected = new float[b.Length / 4];
    Buffer.BlockCopy(b, 0, expected, 0, b.Length);
    double diff = expected.Zip(first, (e, a) => Math.Abs((double)e - a)).Max();
    Console.WriteLine($"ORT vs torch embeddings [{batch}, {expected.Length / batch}]: max |diff| = {diff:E2} ({(diff <= 1e-4 ? "ok" : "FAIL")})");
    return diff <= 1e-4 ? 0 : 1;
}
var times = new List<double>();
var clock = Stopwatch.StartNew();
while (times.Count < 3 || (clock.Elapsed.TotalSeconds < 20 && times.Count < 10))
{
    long start = Stopwatch.GetTimestamp();
    Run();
    times.Add(Stopwatch.GetElapsedTime(start).TotalSeconds);
}
times.Sort();
double median = times[times.Count / 2];
Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
{
    ["engine"] = $"onnxruntime-{OrtEnv.Instance().GetVersionString()}-cpu",
    ["threads"] = threads,
    ["batch"] = batch,
    ["tokens"] = seq,
    ["embeddings_per_s"] = Math.Round(batch / median, 1),
    ["median_ms"] = Math.Round(median * 1000, 1),
    ["calls"] = times.Count,
}));
return 0;
