// `-- --quick-train [threads] [small|base]`: one flan-t5 training step's matrix products (batch 8 x 128 source / 32 target
// tokens) and attention, timed op by op with TrainingKernels, as GFLOP/s and as milliseconds per step: where a step's
// time goes, without the trainer around it. Best of several runs per op. Then whole steps of the model (random weights)
// with dropout off and on (0.1; LoRA: lora_dropout 0.1), interleaved: what dropout costs.
using ManagedT5.Adapters;
using ManagedT5.Kernels.Cpu.Training;
using ManagedT5.Training;

namespace ManagedT5.Bench;

/// <summary>The training-step breakdown report.</summary>
public static class TrainingQuick
{
    public static void Run(int threads, string size)
    {
        // Twice: the first pass lets the JIT tier every kernel up (a first pass timed attention 5x slow), the second reports.
        for (int pass = 0; pass < 2; pass++) Run(threads, size, report: pass == 1);
    }

    private static void Run(int threads, string size, bool report)
    {
        var output = report ? Console.Out : TextWriter.Null;
        threads = threads <= 0 ? Environment.ProcessorCount : threads;
        bool isBase = size == "base";
        int d = isBase ? 768 : 512, inner = isBase ? 768 : 384, ff = isBase ? 2048 : 1024, layers = isBase ? 12 : 8, heads = isBase ? 12 : 6;
        const int vocab = 32128, batch = 8, source = 128, target = 32;
        int enc = batch * source, dec = batch * target;
        using var k = new TrainingKernels(threads);
        output.WriteLine($"flan-t5-{size} shapes, threads {threads}");

        // (name, rows, in, out, count per step)
        var linears = new List<(string Name, int Rows, int In, int Out, int Count)>
        {
            ("enc qkv", enc, d, inner, 3 * layers), ("enc o", enc, inner, d, layers), ("enc wi", enc, d, ff, 2 * layers), ("enc wo", enc, ff, d, layers),
            ("dec self qkv+cross q", dec, d, inner, 4 * layers), ("dec o x2", dec, inner, d, 2 * layers), ("dec cross kv", enc, d, inner, 2 * layers),
            ("dec wi", dec, d, ff, 2 * layers), ("dec wo", dec, ff, d, layers), ("head", dec, d, vocab, 1),
        };
        double forward = 0, inputGrad = 0, weightGrad = 0;
        foreach (var (name, rows, inF, outF, count) in linears)
        {
            float[] x = Data(rows * inF), w = Data(outF * inF), y = new float[rows * outF], dx = new float[rows * inF], dw = new float[outF * inF];
            double flops = 2.0 * rows * inF * outF;
            double f = QuickReport.Best(() => k.LinearForward(x, w, y, rows, inF, outF), 3);
            double bx = QuickReport.Best(() => k.LinearBackwardInput(y, w, dx, rows, inF, outF), 3);
            double bw = QuickReport.Best(() => k.LinearBackwardWeight(y, x, dw, rows, inF, outF), 3);
            forward += f * count; inputGrad += bx * count; weightGrad += bw * count;
            output.WriteLine($"{name,-22} {rows,5}x{inF,5}->{outF,5} x{count,3}: forward {flops / f / 1e9,6:F1}  dX {flops / bx / 1e9,6:F1}  dW {flops / bw / 1e9,6:F1} GFLOP/s");
        }
        output.WriteLine($"linears per step: forward {forward * 1e3:F0} ms, dX {inputGrad * 1e3:F0} ms, dW {weightGrad * 1e3:F0} ms");

        // LoRA (r 8) on q and v: a module's six narrow products (as T5TrainingModel runs them) at the encoder's shape.
        {
            const int r = 8;
            int rows = enc, inF = d, outF = inner, modules = 2 * 3 * layers; // q, v of encoder self, decoder self and cross
            float[] x = Data(rows * inF), a = Data(r * inF), bl = Data(outF * r), saved = new float[rows * r], y = new float[rows * outF];
            float[] dy = Data(rows * outF), t = new float[rows * r], dA = new float[r * inF], dB = new float[outF * r], dx = new float[rows * inF];
            // Narrow products (NarrowProducts) against the packed GEMM for the same six products, alternated.
            double fwd = 0, bwd = 0, packedFwd = 0, packedBwd = 0;
            for (int round = 0; round < 2; round++)
                foreach (bool narrow in new[] { true, false })
                {
                    k.Narrow = narrow;
                    double f = QuickReport.Best(() =>
                    {
                        k.LinearForward(x, a, saved, rows, inF, r);
                        k.LinearForward(saved, bl, y, rows, r, outF, accumulate: true);
                    }, 5);
                    double b = QuickReport.Best(() =>
                    {
                        k.MatMul(dy, rows, outF, false, bl, r, t, accumulate: false);
                        k.MatMul(t, r, rows, true, x, inF, dA, accumulate: true);
                        k.MatMul(dy, outF, rows, true, saved, r, dB, accumulate: true);
                        k.MatMul(t, rows, r, false, a, inF, dx, accumulate: true);
                    }, 5);
                    if (narrow) { fwd = round == 0 ? f : Math.Min(fwd, f); bwd = round == 0 ? b : Math.Min(bwd, b); }
                    else { packedFwd = round == 0 ? f : Math.Min(packedFwd, f); packedBwd = round == 0 ? b : Math.Min(packedBwd, b); }
                }
            k.Narrow = true;
            if (Environment.GetEnvironmentVariable("NARROW_PARTS") == "1")
                for (int round = 0; round < 2; round++)
                    foreach (bool narrow in new[] { true, false })
                    {
                        k.Narrow = narrow;
                        double p1 = QuickReport.Best(() => k.LinearForward(x, a, saved, rows, inF, r), 5);
                        double p2 = QuickReport.Best(() => k.LinearForward(saved, bl, y, rows, r, outF, accumulate: true), 5);
                        double p3 = QuickReport.Best(() => k.MatMul(dy, rows, outF, false, bl, r, t, accumulate: false), 5);
                        double p4 = QuickReport.Best(() => k.MatMul(t, r, rows, true, x, inF, dA, accumulate: true), 5);
                        double p5 = QuickReport.Best(() => k.MatMul(dy, outF, rows, true, saved, r, dB, accumulate: true), 5);
                        double p6 = QuickReport.Best(() => k.MatMul(t, rows, r, false, a, inF, dx, accumulate: true), 5);
                        output.WriteLine($"  narrow={narrow}: x·Aᵀ {p1 * 1e3:F3} saved·Bᵀ {p2 * 1e3:F3} dy·B {p3 * 1e3:F3} tᵀ·x {p4 * 1e3:F3} dyᵀ·saved {p5 * 1e3:F3} t·A {p6 * 1e3:F3} ms");
                        k.Narrow = true;
                    }
            output.WriteLine($"LoRA module {rows}x{inF}->{outF} r {r}: forward {fwd * 1e3:F2} ms, backward {bwd * 1e3:F2} ms; x{modules} (upper bound: decoder self is 256 rows) = {(fwd + bwd) * modules * 1e3:F0} ms per step");
            output.WriteLine($"  the same through the packed GEMM: forward {packedFwd * 1e3:F2} ms, backward {packedBwd * 1e3:F2} ms = {(packedFwd + packedBwd) * modules * 1e3:F0} ms per step");
        }

        double attention = 0, attentionBackward = 0;
        foreach (var (name, qLen, kLen, count) in new[] { ("enc self", source, source, layers), ("dec self", target, target, layers), ("dec cross", target, source, layers) })
        {
            float[] q = Data(batch * qLen * inner), kk = Data(batch * kLen * inner), v = Data(batch * kLen * inner), bias = Data(heads * qLen * kLen);
            float[] probs = new float[batch * heads * qLen * kLen], context = new float[batch * qLen * inner];
            int[] mask = Enumerable.Repeat(1, batch * kLen).ToArray();
            float[] dq = new float[q.Length], dk = new float[kk.Length], dv = new float[v.Length], dScores = new float[probs.Length], dBias = new float[bias.Length];
            double f = QuickReport.Best(() => k.Attention(q, kk, v, bias, mask, name == "dec self", batch, heads, inner / heads, qLen, kLen, probs, context), 3);
            double b = QuickReport.Best(() => k.AttentionBackward(q, kk, v, probs, context, batch, heads, inner / heads, qLen, kLen, dq, dk, dv, dScores, dBias), 3);
            attention += f * count; attentionBackward += b * count;
            double flops = 4.0 * batch * heads * qLen * kLen * (inner / heads);
            output.WriteLine($"attention {name,-10} {qLen}x{kLen} x{count}: forward {f * 1e3:F2} ms ({flops / f / 1e9:F1} GFLOP/s), backward {b * 1e3:F2} ms");
        }
        output.WriteLine($"attention per step: forward {attention * 1e3:F0} ms, backward {attentionBackward * 1e3:F0} ms");
        if (report) DropoutSteps(threads, size);
    }

    /// <summary>ForwardBackward of a whole step, full and LoRA (q, v; r 8), dropout 0 beside 0.1, in interleaved rounds;
    /// and the dropout kernel alone over one activation of the encoder's feed-forward (1024 x d_ff).</summary>
    public static void DropoutSteps(int threads, string size)
    {
        threads = threads <= 0 ? Environment.ProcessorCount : threads;
        var config = TrainingStepBenchmarks.Config(size);
        var random = new Random(3);
        int[] Row(int length) => [.. Enumerable.Range(0, length).Select(t => t == length - 1 ? 1 : random.Next(2, config.VocabSize))];
        TrainingBatch batch = TrainingBatch.FromIds([.. Enumerable.Range(0, 8).Select(_ => Row(128))], [.. Enumerable.Range(0, 8).Select(_ => Row(32))], 0);
        foreach (bool lora in new[] { false, true })
        {
            var models = new List<(string Name, T5TrainingModel Model)>();
            // (dropout_rate, lora_dropout): off, the model's alone, and for LoRA the adapter's alone and both.
            (double, double)[] rates = lora ? [(0, 0), (0.1, 0), (0, 0.1), (0.1, 0.1)] : [(0, 0), (0.1, 0)];
            foreach (var (p, loraP) in rates)
            {
                T5TrainingModel model = T5TrainingModel.CreateRandom(config, seed: 1, new TrainingModelOptions { Threads = threads, DropoutRate = p });
                if (lora) model.AttachLora(LoraAdapter.Create(new LoraConfig { R = 8, LoraAlpha = 16, LoraDropout = loraP }, model.Modules, config, seed: 2));
                model.ForwardBackward(batch, 1f, DropoutMask.RunKey(1, 0, 0));   // sizes the buffers, tiers the JIT
                models.Add((lora ? $"dropout {p}/lora {loraP}" : $"dropout {p}", model));
            }
            // Rounds of one step per model, back to back; each model's time in a round against the first model's in the
            // same round (a shared machine's load drifts slower than a round): the median of those ratios, and the best times.
            const int rounds = 7;
            var wall = new double[models.Count, rounds];
            for (int round = 0; round < rounds; round++)
                for (int i = 0; i < models.Count; i++)
                {
                    long start = System.Diagnostics.Stopwatch.GetTimestamp();
                    models[i].Model.ZeroGrad();
                    models[i].Model.ForwardBackward(batch, 1f, DropoutMask.RunKey(1, round + 1, 0));
                    wall[i, round] = System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds;
                }
            Console.WriteLine($"{(lora ? "LoRA" : "full")} step (forward + backward), {rounds} interleaved rounds: " + string.Join(", ", Enumerable.Range(0, models.Count).Select(i =>
            {
                double best = Enumerable.Range(0, rounds).Min(r => wall[i, r]);
                double[] ratios = [.. Enumerable.Range(0, rounds).Select(r => wall[i, r] / wall[0, r]).Order()];
                return $"{models[i].Name} best {best * 1e3:F0} ms, median ratio {(ratios[rounds / 2] - 1) * 100:+0.0;-0.0}%";
            })));
            foreach (var m in models) m.Model.Dispose();
        }
        using var k = new TrainingKernels(threads);
        float[] x = Data(1024 * config.DFf), y = new float[x.Length];
        double t = QuickReport.Best(() => k.Dropout(x, y, 0.1, 12345), 5);
        Console.WriteLine($"dropout kernel over 1024x{config.DFf}: {t * 1e6:F0} us ({x.Length / t / 1e9:F2} G elements/s)");
    }

    private static float[] Data(int length)
    {
        var random = new Random(length);
        var data = new float[length];
        for (int i = 0; i < length; i++) data[i] = (float)(random.NextDouble() - 0.5);
        return data;
    }
}

/// <summary>The AVX2 micro-kernel alone on L1-resident panels: the ceiling of every packed product here.</summary>
public static unsafe class MicroKernelCeiling
{
    public static void Run()
    {
        float* a = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(6 * 256 * 4, 64);
        float* b = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(16 * 256 * 4, 64);
        float* c = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(6 * 16 * 4, 64);
        for (int i = 0; i < 6 * 256; i++) a[i] = 0.001f * i;
        for (int i = 0; i < 16 * 256; i++) b[i] = 0.002f;
        double best = double.MaxValue;
        for (int trial = 0; trial < 10; trial++)
        {
            long start = System.Diagnostics.Stopwatch.GetTimestamp();
            for (int i = 0; i < 20000; i++) ManagedT5.Kernels.Cpu.MicroKernel256.Run(a, b, 256, c, 16, false);
            best = Math.Min(best, System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
        Console.WriteLine($"micro-kernel 6x16x256 in L1, one thread: {20000.0 * 2 * 6 * 16 * 256 / best / 1e9:F1} GFLOP/s");
        System.Runtime.InteropServices.NativeMemory.AlignedFree(a);
        System.Runtime.InteropServices.NativeMemory.AlignedFree(b);
        System.Runtime.InteropServices.NativeMemory.AlignedFree(c);
    }
}
