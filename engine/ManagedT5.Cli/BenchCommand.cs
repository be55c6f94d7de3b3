// managedt5 bench: the end-to-end timing protocol of the PyTorch peer (shared/bench/torch_peer.py), on random
// weights of a real config, plus roofline figures measured here (read bandwidth, FMA peak) and what one token costs.
using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using ManagedT5.Benchmarks;
using ManagedT5.Generation;
using ManagedT5.Kernels;
using ManagedT5.Kernels.Cpu;
using ManagedT5.Loading;
using ManagedT5.Model;

namespace ManagedT5.Cli;

internal static class BenchCommand
{
    public static Command Create()
    {
        var config = new Option<string>("--config") { Description = "config.json of the shape to time (e.g. tests/fixtures/configs/flan-t5-small.json)", Required = true };
        var random = new Option<bool>("--random-weights") { Description = "Random weights of that shape (the only mode: no download needed)" };
        var dtype = new Option<string>("--dtype") { Description = "f32, bf16 or int8", DefaultValueFactory = _ => "f32" };
        Option<int> threads = CliCommon.ThreadsOption(2);
        Option<string> device = CliCommon.DeviceOption();
        var json = new Option<bool>("--json") { Description = "One JSON line (the peer's field names)" };
        var noRoofline = new Option<bool>("--no-roofline") { Description = "Skip the bandwidth / FMA measurements" };
        var profile = new Option<bool>("--profile") { Description = "Instead of the four figures: time every op of encode, greedy, beam4 and batch8 decoding and print where the time goes" };
        var steady = new Option<int>("--steady") { Description = "After the four figures, repeat the greedy run N times and add its median as greedy_steady_ms_per_token (not part of the peers' protocol, which times one run)", DefaultValueFactory = _ => 0 };
        var command = new Command("bench", "Time encode / greedy / beam4 / batch8 like the PyTorch and ORT peers")
        {
            config, random, dtype, threads, device, json, noRoofline, profile, steady,
        };
        command.SetAction(r =>
        {
            CliCommon.Doing = "timing random weights";
            string configPath = r.GetValue(config)!;
            T5Config c = T5Config.Load(configPath);
            WeightFormat format = r.GetValue(dtype)!.ToLowerInvariant() switch
            {
                "f32" => WeightFormat.F32, "bf16" => WeightFormat.BF16, "int8" => WeightFormat.Int8,
                var v => throw new ArgumentException($"--dtype: '{v}' is not f32, bf16 or int8."),
            };
            int threadCount = r.GetValue(threads);
            int repeats = r.GetValue(steady);
            if (repeats < 0) throw new ArgumentException($"--steady: {repeats} is negative; give how many greedy runs to repeat (0 for none).");
            string dir = RandomWeights.GatedUntiedModel(configPath, "managedt5-bench-");
            // Measurement hygiene, as the peers start from settled state: the freshly written checkpoint goes to disk now
            // (not as background writeback during the timings) and the hundreds of MB of arrays that built it are
            // collected now (not by a background GC taking one of the two cores mid-run).
            foreach (string file in Directory.GetFiles(dir))
            {
                using var stream = new FileStream(file, FileMode.Open, FileAccess.ReadWrite);
                stream.Flush(flushToDisk: true);
            }
            GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
            GC.WaitForPendingFinalizers();
            try
            {
                IBackend backend = BackendFactory.Create(r.GetValue(device)!, threadCount);
                if (r.GetValue(profile))
                {
                    using var profiler = new ProfilingBackend(backend);
                    using T5Model profiled = T5Model.Load(dir, profiler, new T5ModelOptions { WeightFormat = format });
                    Profile(profiled, profiler);
                    return 0;
                }
                using var owned = backend;
                var options = new T5ModelOptions { WeightFormat = format };
                // Load: the first load in this process (checkpoint in the page cache, as just written, but load code not
                // yet compiled) and a second one (warm: what a service that reloads, or a second model, pays).
                long start = Stopwatch.GetTimestamp();
                T5Model.Load(dir, backend, options).Dispose();
                double firstLoadMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
                start = Stopwatch.GetTimestamp();
                using T5Model model = T5Model.Load(dir, backend, options);
                double warmLoadMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                long residentAfterLoad = Environment.WorkingSet;
                var result = new Dictionary<string, object>
                {
                    ["engine"] = $"managedt5-{backend.Name}-{r.GetValue(dtype)}",
                    ["threads"] = threadCount,
                    // The machine, so a figure is never read on the wrong one: its model and what the kernels used there.
                    ["cpu_model"] = CpuFeatures.Model,
                    ["cpu_isa"] = string.Join(" ", CpuFeatures.InstructionSets),
                };
                if (backend is CpuBackend cpu) result["kernels"] = CpuFeatures.KernelsAt(cpu.Simd);
                Run(model, result, repeats);
                result["load_first_ms"] = Math.Round(firstLoadMs, 1);
                result["load_warm_ms"] = Math.Round(warmLoadMs, 1);
                result["checkpoint_mb"] = Math.Round(Directory.GetFiles(dir).Sum(f => new FileInfo(f).Length) / 1e6, 1);
                // Resident set of the whole process (runtime included): after the load, and after the timings (every
                // weight page touched, KV caches and beam/batch buffers allocated).
                result["resident_after_load_mb"] = Math.Round(residentAfterLoad / 1e6, 1);
                result["resident_after_run_mb"] = Math.Round(Environment.WorkingSet / 1e6, 1);
                long perToken = WeightBytesPerToken(c, CpuWeight.BytesPerElement(format));
                result["weight_bytes_per_token"] = perToken;
                result["encoder_gflop_128"] = Math.Round(EncoderFlops(c, 128) / 1e9, 3);
                if (!r.GetValue(noRoofline) && backend is CpuBackend)
                {
                    double gbps = Roofline.ReadBandwidthGBps(threadCount);
                    double gflops = Roofline.FmaPeakGflops(threadCount);
                    result["read_gb_s"] = Math.Round(gbps, 1);
                    result["fma_gflop_s"] = Math.Round(gflops, 1);
                    double boundMs = perToken / (gbps * 1e9) * 1e3;
                    result["greedy_bandwidth_bound_ms"] = Math.Round(boundMs, 3);
                    result["greedy_fraction_of_bound"] = Math.Round(boundMs / (double)result["greedy_ms_per_token"], 3);
                    if (result.TryGetValue("greedy_steady_ms_per_token", out object? steadyMs))
                        result["greedy_steady_fraction_of_bound"] = Math.Round(boundMs / (double)steadyMs, 3);
                    result["encode_128_fraction_of_fma_peak"] = Math.Round(EncoderFlops(c, 128) / 1e9 / gflops / ((double)result["encode_128_ms"] / 1e3), 3);
                }
                result["config"] = Path.GetFileName(configPath);
                if (r.GetValue(json)) Console.WriteLine(JsonSerializer.Serialize(result));
                else foreach (var (k, v) in result) Console.WriteLine($"{k,-34} {v}");
            }
            finally
            {
                Directory.Delete(dir, recursive: true);
            }
            return 0;
        });
        return command;
    }

    /// <summary>The four figures, measured exactly as torch_peer.py's timing() does; with <paramref name="steadyRepeats"/>
    /// above 0, after them the greedy figure that many times more and their median (greedy_steady_ms_per_token), the decode
    /// speed once nothing is warming up.</summary>
    private static void Run(T5Model model, Dictionary<string, object> result, int steadyRepeats)
    {
        var rng = new Random(1);
        int[] RandomIds(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(3, 32000)).ToArray();
        int[] ids128 = RandomIds(128), ones128 = Enumerable.Repeat(1, 128).ToArray();

        // encode_128_ms: batch 1, 128 tokens, best of 5 after one warm-up.
        model.Encode(ids128, ones128, 1).Dispose();
        double best = double.MaxValue;
        for (int i = 0; i < 5; i++)
        {
            long t = Stopwatch.GetTimestamp();
            model.Encode(ids128, ones128, 1).Dispose();
            best = Math.Min(best, Stopwatch.GetElapsedTime(t).TotalMilliseconds);
        }
        result["encode_128_ms"] = Math.Round(best, 2);

        // greedy: 32-token prompt, 64 new tokens, encoder time excluded.
        int[] prompt = ids128[..32], ones32 = ones128[..32];
        double encodeMs = EncodeMs(model, prompt, ones32);
        Greedy(model, prompt, ones32, 1, 4);
        result["greedy_ms_per_token"] = Math.Round(GreedyMsPerToken(model, prompt, ones32, encodeMs), 3);

        // beam4: same prompt, 4 beams, 32 new tokens, fixed length, encoder time excluded.
        Beam(model, prompt, ones32, 4, 2);
        long b0 = Stopwatch.GetTimestamp();
        Beam(model, prompt, ones32, 4, 32);
        result["beam4_ms_per_token"] = Math.Round((Stopwatch.GetElapsedTime(b0).TotalMilliseconds - encodeMs) / 32, 3);

        // batch8: 8 prompts of 32 tokens, greedy, 32 new tokens each, everything included.
        int[] batch = RandomIds(8 * 32), batchMask = Enumerable.Repeat(1, 8 * 32).ToArray();
        long t8 = Stopwatch.GetTimestamp();
        Greedy(model, batch, batchMask, 8, 32);
        result["batch8_tokens_per_s"] = Math.Round(8 * 32 / Stopwatch.GetElapsedTime(t8).TotalSeconds, 1);

        // Not part of the protocol, so after it: the greedy figure again, the median of steadyRepeats runs.
        if (steadyRepeats > 0)
        {
            var perToken = new List<double>();
            for (int i = 0; i < steadyRepeats; i++) perToken.Add(GreedyMsPerToken(model, prompt, ones32, EncodeMs(model, prompt, ones32)));
            perToken.Sort();
            result["greedy_steady_ms_per_token"] = Math.Round(perToken[perToken.Count / 2], 3);
        }
    }

    /// <summary>One encode of the prompt, in ms: what the decode figures take off (they encode the prompt too).</summary>
    private static double EncodeMs(T5Model model, int[] prompt, int[] mask)
    {
        long t = Stopwatch.GetTimestamp();
        model.Encode(prompt, mask, 1).Dispose();
        return Stopwatch.GetElapsedTime(t).TotalMilliseconds;
    }

    /// <summary>The protocol's greedy figure: 64 new tokens from the prompt, minus <paramref name="encodeMs"/>, per
    /// token (as torch_peer.py's timing()).</summary>
    private static double GreedyMsPerToken(T5Model model, int[] prompt, int[] mask, double encodeMs)
    {
        long t = Stopwatch.GetTimestamp();
        Greedy(model, prompt, mask, 1, 64);
        return (Stopwatch.GetElapsedTime(t).TotalMilliseconds - encodeMs) / 64;
    }

    /// <summary>Runs encode_128, greedy, beam4 and batch8 as <see cref="Run"/> does, each under the profiler, and prints the ops
    /// that took the time; "outside ops" is wall time no backend op accounts for (host-side work, dispatch).</summary>
    private static void Profile(T5Model model, ProfilingBackend profiler)
    {
        var rng = new Random(1);
        int[] ids = Enumerable.Range(0, 128).Select(_ => rng.Next(3, 32000)).ToArray(), ones = Enumerable.Repeat(1, 128).ToArray();
        int[] prompt = ids[..32], ones32 = ones[..32];
        (string Name, int Units, Action Body)[] phases =
        [
            ("encode_128 (per call)", 1, () => model.Encode(ids, ones, 1).Dispose()),
            ("greedy (per token, 64 tokens)", 64, () => Greedy(model, prompt, ones32, 1, 64)),
            ("beam4 (per token, 32 tokens)", 32, () => Beam(model, prompt, ones32, 4, 32)),
            ("batch8 (per step of 8 tokens, 32 steps, encode included)", 32,
                () => Greedy(model, [.. Enumerable.Range(0, 8).SelectMany(_ => prompt)], [.. Enumerable.Repeat(1, 8 * 32)], 8, 32)),
        ];
        foreach (var (name, units, body) in phases)
        {
            body();                     // warm-up
            profiler.Reset();
            long t0 = Stopwatch.GetTimestamp();
            body();
            double wall = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            IReadOnlyList<OpProfile> ops = profiler.Report();
            double inOps = ops.Sum(o => o.Milliseconds);
            Console.WriteLine($"{name}: {wall / units:F3} ms wall, {inOps / units:F3} ms in ops, {(wall - inOps) / units:F3} ms outside ops");
            Console.WriteLine($"  {"op",-14} {"shape",-44} {"calls",8} {"ms/unit",9} {"share",6} {"GB/s",7}");
            foreach (OpProfile o in ops.Take(24))
                Console.WriteLine($"  {o.Op,-14} {o.Shape,-44} {o.Calls,8} {o.Milliseconds / units,9:F4} {o.Milliseconds / wall,6:P0} {(o.Bytes > 0 ? o.GigabytesPerSecond.ToString("F1") : ""),7}");
            Console.WriteLine();
        }
    }

    /// <summary>Greedy decoding of a fixed number of tokens (EOS never stops it), argmax on the backend.</summary>
    private static void Greedy(T5Model model, int[] ids, int[] mask, int batch, int steps)
    {
        using EncoderOutput encoded = model.Encode(ids, mask, batch);
        using DecoderState state = model.StartDecoder(encoded, steps);
        var next = new int[batch];
        for (int s = 0; s < steps; s++)
        {
            model.Decode(state, next, 1);
            model.Backend.ArgMax(state.Logits, batch, model.Config.VocabSize, next);
        }
    }

    /// <summary>Fixed-length beam search (EOS suppressed): the cost of HF's beam search without early stops.</summary>
    private static void Beam(T5Model model, int[] ids, int[] mask, int beams, int steps)
    {
        int vocab = model.Config.VocabSize;
        using EncoderOutput encoded = model.Encode(ids, mask, 1);
        using DecoderState state = model.StartDecoder(encoded, steps, expand: beams);
        var scores = new float[beams];
        for (int k = 1; k < beams; k++) scores[k] = -1e9f;
        var logits = new float[beams * vocab];
        var next = new int[beams];
        var source = new int[beams];
        var topScores = new float[beams];
        var topIndex = new int[beams];
        for (int s = 0; s < steps; s++)
        {
            model.Decode(state, next, 1);
            model.Backend.Download(state.Logits, logits);
            for (int k = 0; k < beams; k++)
            {
                Span<float> row = logits.AsSpan(k * vocab, vocab);
                LogitsProcessors.LogSoftmax(row);
                row[1] = float.NegativeInfinity;                       // EOS suppressed: fixed length
                ScoreKernels.Add(row, scores[k]);
            }
            LogitsProcessors.TopK(logits, topScores, topIndex);
            for (int k = 0; k < beams; k++) { source[k] = topIndex[k] / vocab; next[k] = topIndex[k] % vocab; scores[k] = topScores[k]; }
            state.Reorder(source);
        }
    }

    /// <summary>Bytes of weights one decoded token streams: every decoder matrix but the cross-attention K/V
    /// (computed once per prompt), plus the output head.</summary>
    private static long WeightBytesPerToken(T5Config c, int bytesPerElement)
    {
        long d = c.DModel, inner = c.InnerDim, ff = c.DFf;
        long perLayer = 4 * d * inner /* self q k v o */ + 2 * d * inner /* cross q o */ + (c.IsGatedAct ? 3 : 2) * d * ff;
        return (perLayer * c.NumDecoderLayers + (long)c.VocabSize * d) * bytesPerElement;
    }

    /// <summary>Multiply-adds x 2 of the encoder on one sequence of <paramref name="n"/> tokens.</summary>
    private static double EncoderFlops(T5Config c, int n)
    {
        double d = c.DModel, inner = c.InnerDim, ff = c.DFf;
        double linear = 4 * d * inner + (c.IsGatedAct ? 3 : 2) * d * ff;
        double attention = 2.0 * n * inner;        // q.k and p.v per query
        return 2.0 * n * (linear + attention) * c.NumLayers;
    }

}
