// The managedt5 command line, run as a real process: generate from ids (JSON matches HF), from text, tokenize,
// detokenize, inspect, and bad input giving one line and a non-zero exit code.
using System.Diagnostics;
using System.Text.Json;

namespace ManagedT5.Tests;

public sealed class CliTests
{
    internal static (int Code, string Out, string Err) Run(params string[] args) => RunIn(null, null, args);

    internal static (int Code, string Out, string Err) RunIn(string? directory, IDictionary<string, string>? environment, params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        if (directory is not null) info.WorkingDirectory = directory;
        foreach (var (k, v) in environment ?? new Dictionary<string, string>()) info.Environment[k] = v;
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "ManagedT5.Cli.dll"));
        foreach (string a in args) info.ArgumentList.Add(a);
        using Process p = Process.Start(info)!;
        Task<string> stdout = p.StandardOutput.ReadToEndAsync(), stderr = p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(120_000), "the CLI did not finish");
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    [Theory]
    [InlineData("tiny-flan-t5", "greedy")]
    [InlineData("tiny-flan-t5", "beam4_lp2_ret2")]
    [InlineData("tiny-t5-v1_0", "greedy_norepeat3")]
    [InlineData("tiny-flan-t5-bf16-sharded", "beam4")]
    public void GenerateFromIdsPrintsHuggingFaceSequences(string model, string caseName)
    {
        ReferenceJson reference = ReferenceJson.Load(model);
        GenerationCase c = reference.Cases.Single(x => x.Name == caseName);
        var args = new List<string> { "generate", "--model", Fixtures.Model(model), "--json",
            "--input-ids", string.Join(";", reference.InputIds.Select(r => string.Join(",", r))) };
        foreach (JsonProperty p in c.Settings.EnumerateObject())
        {
            args.Add("--" + p.Name.Replace('_', '-'));
            args.Add(p.Value.ToString().ToLowerInvariant());
        }
        var (code, output, error) = Run(args.ToArray());
        Assert.True(code == 0, error);
        using JsonDocument doc = JsonDocument.Parse(output);
        int[][] sequences = doc.RootElement.GetProperty("sequences").EnumerateArray()
            .Select(r => r.EnumerateArray().Select(x => x.GetInt32()).ToArray()).ToArray();
        GenerationParityTests.AssertSequences(c.Sequences, sequences, 0);
        Assert.Equal(c.Texts, doc.RootElement.GetProperty("texts").EnumerateArray().Select(x => x.GetString()).ToArray());
        if (c.SequencesScores is { } scores)
        {
            var got = doc.RootElement.GetProperty("sequences_scores").EnumerateArray().Select(x => x.GetDouble()).ToArray();
            Assert.True(scores.Zip(got).All(p => Math.Abs(p.First - p.Second) <= 1e-4));
        }
        else Assert.False(doc.RootElement.TryGetProperty("sequences_scores", out _));
    }

    [Fact]
    public void GenerateFromTextAndTokenizeRoundTrip()
    {
        string model = Fixtures.Model("tiny-flan-t5");
        ReferenceJson reference = ReferenceJson.Load("tiny-flan-t5");
        var (code, output, error) = Run("generate", "--model", model, "--max-new-tokens", "20", reference.Texts[0]);
        Assert.True(code == 0, error);
        Assert.Equal(reference.Cases.Single(c => c.Name == "greedy").Texts[0], output.Trim());

        (code, output, error) = Run("tokenize", "--model", model, "--json", reference.Texts[0], reference.Texts[2]);
        Assert.True(code == 0, error);
        using JsonDocument doc = JsonDocument.Parse(output);
        Assert.Equal(reference.InputIds[2], doc.RootElement.GetProperty("ids")[1].EnumerateArray().Select(x => x.GetInt32()).ToArray());

        (code, output, _) = Run("detokenize", "--model", model, "--skip-special-tokens", "8774", "296", "1");
        Assert.Equal(0, code);
        Assert.Equal("Hello world", output.Trim());

        (code, output, _) = Run("inspect", "--model", model);
        Assert.Equal(0, code);
        Assert.Contains("parameters", output);
    }

    [Theory]
    [InlineData("--num-beams:", "generate", "--num-beams", "0", "x")]
    [InlineData("--top-p:", "generate", "--do-sample", "true", "--top-p", "2", "x")]
    [InlineData("--temperature:", "generate", "--do-sample", "true", "--temperature", "0", "x")]
    [InlineData("--num-return-sequences:", "generate", "--num-beams", "2", "--num-return-sequences", "3", "x")]
    [InlineData("--input-ids", "generate", "--input-ids", "1,a")]
    [InlineData("prompt", "generate")]
    [InlineData("--dtype", "generate", "--dtype", "f64", "x")]
    [InlineData("--device:", "generate", "--device", "tpu", "x")]
    public void BadOptionsPrintOneLineAndFail(string mention, params string[] args)
    {
        var (code, _, error) = Run([.. args, "--model", Fixtures.Model("tiny-flan-t5")]);
        Assert.NotEqual(0, code);
        Assert.Contains(mention, error);
        Assert.DoesNotContain("   at ", error);   // no stack trace
    }

    /// <summary>`bench` prints the peers' four figures as one JSON line with load time and resident memory (with
    /// `--steady N`, a repeated-greedy figure too; a negative N is refused), and `--profile` names the ops that took the time (random weights of the tiny
    /// fixture's shape: seconds, not minutes).</summary>
    [Fact]
    public void BenchPrintsThePeerFiguresAndAProfile()
    {
        string config = Path.Combine(Fixtures.Model("tiny-flan-t5"), "config.json");
        var (code, output, error) = Run("bench", "--config", config, "--random-weights", "--dtype", "int8", "--json", "--no-roofline", "--steady", "3");
        Assert.True(code == 0, error);
        using (JsonDocument json = JsonDocument.Parse(output.Trim()))
        {
            Assert.Equal("managedt5-cpu-int8", json.RootElement.GetProperty("engine").GetString());
            foreach (string field in new[] { "encode_128_ms", "greedy_ms_per_token", "beam4_ms_per_token", "batch8_tokens_per_s", "greedy_steady_ms_per_token",
                         "load_first_ms", "load_warm_ms", "checkpoint_mb", "resident_after_load_mb", "resident_after_run_mb" })
                Assert.True(json.RootElement.GetProperty(field).GetDouble() > 0, field);
            // The machine the figures belong to: the CPU's model, its instruction sets, the kernels taken.
            foreach (string field in new[] { "cpu_model", "cpu_isa", "kernels" })
                Assert.False(string.IsNullOrWhiteSpace(json.RootElement.GetProperty(field).GetString()), field);
            Assert.Contains("int8 ", json.RootElement.GetProperty("kernels").GetString());
        }
        (code, _, error) = Run("bench", "--config", config, "--random-weights", "--json", "--no-roofline", "--steady", "-1");
        Assert.NotEqual(0, code);
        Assert.Contains("--steady", error);

        (code, output, error) = Run("bench", "--config", config, "--random-weights", "--profile");
        Assert.True(code == 0, error);
        foreach (string phase in new[] { "encode_128 (per call)", "greedy (per token, 64 tokens)", "beam4 (per token, 32 tokens)" })
            Assert.Contains(phase, output);
        Assert.Contains("Linear", output);
        Assert.Contains("Attention", output);
        // q/k/v and wi_0/wi_1 run as one op each (IBackend.Linears), timed as one line with the weight count.
        Assert.Matches(@"Linears +rows 1, \d+ -> 3 x \d+", output);
        Assert.Matches(@"Linears +rows 1, \d+ -> 2 x \d+", output);
    }

    [Fact]
    public void UnknownModelAndNonT5ModelFailClearly()
    {
        var (code, _, error) = Run("generate", "--model", "no-such-org/no-such-model", "--offline", "x");
        Assert.NotEqual(0, code);
        Assert.Contains("no-such-org/no-such-model", error);
        Assert.DoesNotContain("   at ", error);

        string dir = Directory.CreateTempSubdirectory("mt5-bart-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "config.json"), """{"model_type": "bart", "d_model": 8}""");
            foreach (string f in new[] { "spiece.model", "model.safetensors" })
                File.Copy(Path.Combine(Fixtures.Model("tiny-flan-t5"), f), Path.Combine(dir, f));
            (code, _, error) = Run("generate", "--model", dir, "x");
            Assert.NotEqual(0, code);
            Assert.Contains("model_type", error);
        }
        finally { Directory.Delete(dir, true); }
    }
}

public sealed class TraceTests
{
    [Fact]
    public void TraceWritesNamedTensorsWhoseScoresReproduceTheAttention()
    {
        string path = Path.Combine(Path.GetTempPath(), $"mt5-trace-{Guid.NewGuid():N}.safetensors");
        try
        {
            var (code, _, error) = CliTests.Run("trace", "--model", Fixtures.Model("tiny-flan-t5"), "--out", path, "Hello world");
            Assert.True(code == 0, error);
            using var file = ManagedT5.Loading.SafeTensorsFile.Open(path);
            foreach (string name in new[] { "input_ids", "encoder.embed_tokens", "encoder.block.0.layer.0.layer_norm",
                         "encoder.block.2.layer.1.DenseReluDense.act", "encoder.final_layer_norm", "decoder.block.1.layer.1.EncDecAttention.q",
                         "decoder.block.0.layer.0.SelfAttention.scores", "lm_head" })
                Assert.True(file.Contains(name), $"trace lacks {name}");
            Assert.Equal([8774L, 296L, 1L], file.GetTensor("input_ids").ToInt64Array());

            // softmax(scores) . v must equal the fused kernel's attention output (head 0 of encoder block 0).
            float[] scores = file.GetTensor("encoder.block.0.layer.0.SelfAttention.scores").ToSingleArray();
            float[] v = file.GetTensor("encoder.block.0.layer.0.SelfAttention.v").ToSingleArray();
            float[] attention = file.GetTensor("encoder.block.0.layer.0.SelfAttention.attention").ToSingleArray();
            int n = 3, inner = 48, dk = 8;
            for (int i = 0; i < n; i++)
            {
                double max = Enumerable.Range(0, n).Max(j => scores[i * n + j]);
                double[] p = Enumerable.Range(0, n).Select(j => Math.Exp(scores[i * n + j] - max)).ToArray();
                double sum = p.Sum();
                for (int d = 0; d < dk; d++)
                {
                    double expected = Enumerable.Range(0, n).Sum(j => p[j] / sum * v[j * inner + d]);
                    Assert.True(Math.Abs(expected - attention[i * inner + d]) < 1e-5, $"query {i} dim {d}");
                }
            }
        }
        finally { File.Delete(path); }
    }
}

/// <summary>The README's main command against a loopback server that serves a fixture model in the hub's URL layout.</summary>
public sealed class HubEndToEndTests
{
    [Fact]
    public void GenerateDownloadsFromTheHubEndpointIntoTheHfCacheThenWorksOffline()
    {
        using var listener = new System.Net.HttpListener();
        var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);   // a free loopback port
        probe.Start();
        int port = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        listener.Prefixes.Add($"http://127.0.0.1:{port}/");
        listener.Start();
        int requests = 0;
        using var cts = new CancellationTokenSource();
        Task server = Task.Run(async () =>
        {
            while (!cts.IsCancellationRequested)
            {
                System.Net.HttpListenerContext context;
                try { context = await listener.GetContextAsync(); } catch { return; }
                Interlocked.Increment(ref requests);
                // /test-org/tiny-flan-t5/resolve/main/{file}
                string[] parts = context.Request.Url!.AbsolutePath.Trim('/').Split('/');
                // A repository the fixtures lack is a 404 (Fixtures.Model would throw a SkipException here and leave the
                // request unanswered).
                string file = parts.Length > 1 && Fixtures.Has(parts[1]) ? Path.Combine(Fixtures.Model(parts[1]), parts[^1]) : "";
                if (parts.Length == 5 && parts[0] == "test-org" && File.Exists(file))
                {
                    byte[] bytes = await File.ReadAllBytesAsync(file);
                    context.Response.ContentLength64 = bytes.Length;
                    if (context.Request.HttpMethod != "HEAD")   // the client asks HEAD first (size, commit), then GET
                        await context.Response.OutputStream.WriteAsync(bytes);
                }
                else context.Response.StatusCode = 404;
                context.Response.Close();
            }
        });
        string work = Directory.CreateTempSubdirectory("mt5-hub-e2e-").FullName;
        try
        {
            var env = new Dictionary<string, string> { ["HF_ENDPOINT"] = $"http://127.0.0.1:{port}", ["HF_HOME"] = Path.Combine(work, "hf") };
            var (code, output, error) = CliTests.RunIn(work, env, "generate", "--model", "test-org/tiny-flan-t5", "--max-new-tokens", "20", "Hello world");
            Assert.True(code == 0, error);
            Assert.Equal(ReferenceJson.Load("tiny-flan-t5").Cases.Single(c => c.Name == "greedy").Texts[2], output.Trim());
            // Downloads land in the HF cache (HF_HOME/hub) in huggingface_hub's layout, never in weights/ under the working folder.
            string repo = Path.Combine(work, "hf", "hub", "models--test-org--tiny-flan-t5");
            Assert.Single(Directory.GetDirectories(Path.Combine(repo, "snapshots")));
            Assert.True(File.Exists(Path.Combine(Directory.GetDirectories(Path.Combine(repo, "snapshots"))[0], "model.safetensors")));
            Assert.True(File.Exists(Path.Combine(repo, "refs", "main")));
            Assert.False(Directory.Exists(Path.Combine(work, "weights")));

            int before = requests;
            (code, output, error) = CliTests.RunIn(work, env, "generate", "--offline", "--model", "test-org/tiny-flan-t5", "--max-new-tokens", "20", "Hello world");
            Assert.True(code == 0, error);
            Assert.Equal(before, requests);   // the second run downloads nothing

            (code, _, error) = CliTests.RunIn(work, env, "generate", "--model", "test-org/no-such-model", "x");
            Assert.NotEqual(0, code);
            Assert.Contains("test-org/no-such-model", error);
            Assert.False(Directory.Exists(Path.Combine(work, "hf", "hub", "models--test-org--no-such-model", "snapshots")));
        }
        finally
        {
            cts.Cancel();
            listener.Stop();
            Directory.Delete(work, true);
        }
    }
}
