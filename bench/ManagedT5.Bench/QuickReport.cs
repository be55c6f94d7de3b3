// A fast stopwatch report (no BenchmarkDotNet), `-- --quick [threads]`: the machine's roofline, then batch-1 decode
// GEMV per weight format as GB/s of weights streamed (a whole decoder step on distinct weights, so from memory),
// cache-hot GEMV, the GEMV/GEMM switch over row counts, and encoder GEMM as GFLOP/s. Every number is the best of
// several interleaved trials: on a shared machine the least-disturbed run is the closest to the truth.
using System.Diagnostics;
using ManagedT5.Kernels;
using ManagedT5.Kernels.Cpu;

namespace ManagedT5.Bench;

/// <summary>The roofline report.</summary>
public static class QuickReport
{
    private static readonly WeightFormat[] Formats = [WeightFormat.F32, WeightFormat.BF16, WeightFormat.F16, WeightFormat.Int8];

    public static void Run(int threads, bool gemmOnly = false, int trials = 5)
    {
        threads = threads <= 0 ? Environment.ProcessorCount : threads;
        Console.WriteLine($"threads {threads}, SIMD {SimdLevels.Best}, best of {trials} trials");
        using var cpu = new CpuBackend(threads);
        var best = new Dictionary<string, double>();
        void Keep(string key, double seconds) => best[key] = Math.Min(best.GetValueOrDefault(key, double.MaxValue), seconds);

        var steps = new List<(string Key, Action Run, long Bytes)>();
        var stores = new List<WeightStore>();
        if (!gemmOnly)
            foreach (T5Shape shape in new[] { T5Shape.Small, T5Shape.Base })
                foreach (WeightFormat format in Formats)
                {
                    var store = new WeightStore();
                    stores.Add(store);
                    var weights = shape.DecoderStepLinears().Select((d, i) => store.Create(cpu, d.Out, d.In, format, i)).ToList();
                    IBuffer x = WeightStore.Random(cpu, Math.Max(shape.DFf, shape.DModel)), y = cpu.Allocate(shape.Vocab);
                    steps.Add(($"{shape.Name} decode-step GEMV {format}", () => { foreach (IWeight w in weights) cpu.Linear(x, w, y, 1); },
                        weights.Sum(w => w.ByteLength)));
                }

        double bandwidth = 0, peak = 0;
        for (int trial = 0; trial < trials; trial++)
        {
            bandwidth = Math.Max(bandwidth, Roofline.ReadBandwidthGBps(threads, repeats: 3));
            peak = Math.Max(peak, Roofline.FmaPeakGflops(threads, repeats: 2));
            foreach (var step in steps) Keep(step.Key, Best(step.Run, 5));
        }
        Console.WriteLine($"roofline: read bandwidth {bandwidth:F1} GB/s, FMA peak {peak:F0} GFLOP/s");
        foreach (var step in steps)
        {
            double seconds = best[step.Key], gbps = step.Bytes / seconds / 1e9;
            double f32 = best[step.Key[..step.Key.LastIndexOf(' ')] + " F32"];
            Console.WriteLine($"{step.Key,-40} {step.Bytes / 1e6,7:F1} MB in {seconds * 1e3,7:F2} ms = {gbps,5:F1} GB/s " +
                $"({gbps / bandwidth,4:P0} of bandwidth; {seconds / f32:F2}x the f32 time)");
        }
        foreach (WeightStore store in stores) store.Dispose();

        // One big GEMV (lm_head, 32128 x d_model) per thread count: scaling of the bandwidth-bound kernel alone.
        foreach (WeightFormat format in new[] { WeightFormat.F32, WeightFormat.BF16, WeightFormat.Int8 })
        {
            using var store = new WeightStore();
            IWeight w = store.Create(cpu, 32128, 512, format);
            var line = new List<string>();
            for (int t = 1; t <= threads; t++)
            {
                using var backend = new CpuBackend(t);
                using IBuffer x = WeightStore.Random(backend, 512), y = backend.Allocate(32128);
                double seconds = Best(() => backend.Linear(x, w, y, 1), 30);
                line.Add($"{t} thread(s) {w.ByteLength / seconds / 1e9:F1} GB/s");
            }
            double bw1 = Roofline.ReadBandwidthGBps(1, repeats: 3);
            Console.WriteLine($"lm_head GEMV {format,-4}: {string.Join(", ", line)} (roofline 1 thread {bw1:F1} GB/s)");
        }

        // Cache-hot GEMV (the weight fits L2): the kernel's compute ceiling per format.
        foreach (WeightFormat format in Formats)
        {
            using var store = new WeightStore();
            IWeight w = store.Create(cpu, 256, 512, format);
            using IBuffer x = WeightStore.Random(cpu, 512), y = cpu.Allocate(256);
            double seconds = Best(() => { for (int i = 0; i < 100; i++) cpu.Linear(x, w, y, 1); }, 20) / 100;
            Console.WriteLine($"hot GEMV 256x512 {format,-4}: {seconds * 1e6,7:F2} us = {w.ByteLength / seconds / 1e9,6:F1} GB/s");
        }

        // Where GEMV (weight streamed once, converted per row) stops beating the packed GEMM: time per row.
        foreach (WeightFormat format in Formats)
        {
            using var store = new WeightStore();
            IWeight w = store.Create(cpu, 1024, 512, format);
            using IBuffer x = WeightStore.Random(cpu, 16 * 512), y = cpu.Allocate(16 * 1024);
            var line = new List<string>();
            foreach (int rows in new[] { 1, 2, 3, 4, 5, 6, 8, 12, 16 })
                line.Add($"{rows}:{Best(() => cpu.Linear(x, w, y, rows), 20) * 1e6 / rows:F1}");
            Console.WriteLine($"us per row, 1024x512 {format,-4} (GEMV up to {(format == WeightFormat.F32 ? LinearKernel.GemvMaxRows : LinearKernel.NarrowGemvMaxRows)} rows): {string.Join("  ", line)}");
        }

        foreach ((int rows, int inDim, int outDim) in new[] { (128, 512, 1024), (128, 1024, 512), (128, 512, 384), (512, 768, 2048) })
            foreach (WeightFormat format in new[] { WeightFormat.F32, WeightFormat.BF16, WeightFormat.Int8 })
            {
                using var store = new WeightStore();
                IWeight w = store.Create(cpu, outDim, inDim, format);
                using IBuffer x = WeightStore.Random(cpu, rows * inDim), y = cpu.Allocate(rows * outDim);
                double seconds = Best(() => cpu.Linear(x, w, y, rows), 10);
                double gflops = 2.0 * rows * inDim * outDim / seconds / 1e9;
                string path = format == WeightFormat.Int8 ? $" ({Int8Gemm.Isa(SimdLevels.Best)})" : "";   // the integer path taken
                Console.WriteLine($"GEMM {rows}x{inDim}x{outDim} {format,-4}{path}: {seconds * 1e3,7:F3} ms = {gflops,6:F1} GFLOP/s ({gflops / peak:P0} of FMA peak)");
                if (format == WeightFormat.F32)
                {
                    // The packed GEMM the in-place one replaced for F32 (AVX-512), for comparison.
                    var packed = new KernelChoices { InPlaceF32Gemm = false };
                    seconds = Best(() => cpu.Linear(x, w, y, rows, accumulate: false, packed), 10);
                    gflops = 2.0 * rows * inDim * outDim / seconds / 1e9;
                    Console.WriteLine($"GEMM {rows}x{inDim}x{outDim} F32 packed: {seconds * 1e3,7:F3} ms = {gflops,6:F1} GFLOP/s ({gflops / peak:P0} of FMA peak)");
                }
            }
    }

    /// <summary>One F32 Linear (rows x in -> out) through the backend, best of 10: GFLOP/s.</summary>
    public static void GemmShape(int threads, int rows, int inDim, int outDim)
    {
        using var cpu = new CpuBackend(threads <= 0 ? Environment.ProcessorCount : threads);
        using var store = new WeightStore();
        IWeight w = store.Create(cpu, outDim, inDim, WeightFormat.F32);
        using IBuffer x = WeightStore.Random(cpu, rows * inDim), y = cpu.Allocate(rows * outDim);
        double seconds = Best(() => cpu.Linear(x, w, y, rows), 10);
        Console.WriteLine($"GEMM {rows}x{inDim}x{outDim} F32: {seconds * 1e3,7:F3} ms = {2.0 * rows * inDim * outDim / seconds / 1e9,6:F1} GFLOP/s");
    }

    /// <summary>A flan-t5-small and -base decoder step's Linears (distinct weights, so streamed from memory) at 1, 2, 4
    /// and 8 rows, per format: ms per step and GB/s of weights. Rows > 1 is beam search or batched decoding, timed
    /// three ways with fp32 activations: separate dots per row (1x1), the multi-row GEMV kernel (1x4/1x8), the packed
    /// GEMM; int8 also on its integer path (quantized activations); F32 also with weights 8 bytes past a cache line (1, 4 and 8 rows), read plainly
    /// or in aligned chunks. Each case passes its <see cref="KernelChoices"/> to the one backend.</summary>
    public static void DecodeRows(int threads, int trials = 7)
    {
        threads = threads <= 0 ? Environment.ProcessorCount : threads;
        using var cpu = new CpuBackend(threads);
        Console.WriteLine($"threads {threads}, SIMD {SimdLevels.Best}, best of {trials} interleaved trials");
        int[] rowCounts = [1, 2, 4, 8];
        var cases = new List<(string Key, KernelChoices Options, List<IWeight> Weights, int Rows, IBuffer X, IBuffer Y)>();
        var stores = new List<WeightStore>();
        foreach (T5Shape shape in new[] { T5Shape.Small, T5Shape.Base })
            foreach (WeightFormat format in new[] { WeightFormat.F32, WeightFormat.BF16, WeightFormat.Int8 })
            {
                var store = new WeightStore();
                stores.Add(store);
                var weights = shape.DecoderStepLinears().Select((d, i) => store.Create(cpu, d.Out, d.In, format, i)).ToList();
                IBuffer x = WeightStore.Random(cpu, 8 * Math.Max(shape.DFf, shape.DModel)), y = cpu.Allocate(8 * shape.Vocab);
                if (format == WeightFormat.F32)
                {
                    var shifted = shape.DecoderStepLinears().Select((d, i) => store.Create(cpu, d.Out, d.In, format, i, misalign: 8)).ToList();
                    foreach (int rows in new[] { 1, 4, 8 })
                    {
                        foreach (bool align in new[] { false, true })
                            cases.Add(($"{shape.Name} {format,-4} rows {rows} at +8 B{(align ? " chunks" : "")}",
                                new KernelChoices { AlignedChunks = align, GemvMaxRows = 8 }, shifted, rows, x, y));
                        if (rows == 1)
                            cases.Add(($"{shape.Name} {format,-4} rows 1 at +8 B no steal",
                                new KernelChoices { Stealing = false }, shifted, rows, x, y));
                        if (rows > 1)
                            cases.Add(($"{shape.Name} {format,-4} rows {rows} at +8 B gemm",
                                new KernelChoices { GemvMaxRows = 1, ChunkedF32GemvMaxRows = 1, GroupedGemvMaxRows = 1 }, shifted, rows, x, y));
                    }
                }
                foreach (int rows in rowCounts)
                {
                    // The widening kernels three ways (one dot per row, the multi-row GEMV, the GEMM); int8 also on its
                    // integer path (named: avxvnni, avx512bw or avx2).
                    var modes = new List<(string Name, KernelChoices Options)>();
                    if (rows > 1) modes.Add(("1x1", new KernelChoices { MultiRowGemv = false, NarrowGemvMaxRows = 8, GemvMaxRows = 8, Int8Integer = false }));
                    modes.Add((rows > 1 ? "1x4" : "", new KernelChoices { NarrowGemvMaxRows = 8, GemvMaxRows = 8, Int8Integer = false }));
                    if (rows > 1) modes.Add(("gemm", new KernelChoices { NarrowGemvMaxRows = 1, GemvMaxRows = 1, ChunkedF32GemvMaxRows = 1, GroupedGemvMaxRows = 1, Int8Integer = false }));
                    string integer = Int8Gemm.Isa(SimdLevels.Best).ToString().ToLowerInvariant();
                    if (format == WeightFormat.Int8) modes.Add((integer, new KernelChoices()));
                    if (rows == 1) modes.Add((format == WeightFormat.Int8 ? $"{integer} no steal" : "no steal", new KernelChoices { Stealing = false }));
                    foreach (var (name, options) in modes)
                        cases.Add(($"{shape.Name} {format,-4} rows {rows} {name}".TrimEnd(), options, weights, rows, x, y));
                }
            }
        var best = new Dictionary<string, double>();
        for (int trial = 0; trial < trials; trial++)
            foreach (var c in cases)
            {
                best[c.Key] = Math.Min(best.GetValueOrDefault(c.Key, double.MaxValue),
                    Best(() => { foreach (IWeight w in c.Weights) cpu.Linear(c.X, w, c.Y, c.Rows, accumulate: false, c.Options); }, 3));
            }
        foreach (var c in cases)
        {
            long bytes = c.Weights.Sum(w => w.ByteLength);
            Console.WriteLine($"{c.Key,-28} {best[c.Key] * 1e3,7:F3} ms/step  {bytes / best[c.Key] / 1e9,5:F1} GB/s");
        }
        foreach (WeightStore store in stores) store.Dispose();
    }


    /// <summary>Best wall time of <paramref name="repeats"/> runs after a warm-up.</summary>
    public static double Best(Action action, int repeats)
    {
        for (int i = 0; i < 2; i++) action();
        double best = double.MaxValue;
        for (int i = 0; i < repeats; i++)
        {
            long start = Stopwatch.GetTimestamp();
            action();
            best = Math.Min(best, Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
        return best;
    }
}
