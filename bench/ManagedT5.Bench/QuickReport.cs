// A fast stopwatch report (no BenchmarkDotNet): the machine's roofline, then batch-1 decode GEMV per weight format as
// GB/s of weights streamed, and encoder GEMM as GFLOP/s, each as a fraction of the roofline. `-- --quick`.
using System.Diagnostics;
using ManagedT5.Kernels;
using ManagedT5.Kernels.Cpu;

namespace ManagedT5.Bench;

/// <summary>The roofline report.</summary>
public static class QuickReport
{
    public static void Run(int threads, bool gemmOnly = false)
    {
        threads = threads <= 0 ? Environment.ProcessorCount : threads;
        Console.WriteLine($"threads {threads}, SIMD {SimdLevels.Best}");
        double bandwidth = Roofline.ReadBandwidthGBps(threads);
        double peak = Roofline.FmaPeakGflops(threads);
        double peakOne = Roofline.FmaPeakGflops(1);
        Console.WriteLine($"roofline: read bandwidth {bandwidth:F1} GB/s, FMA peak {peak:F0} GFLOP/s ({peakOne:F0} on one thread)");

        using var cpu = new CpuBackend(threads);
        foreach (T5Shape shape in gemmOnly ? Array.Empty<T5Shape>() : new[] { T5Shape.Small, T5Shape.Base })
        {
            double f32Time = 0;
            foreach (WeightFormat format in new[] { WeightFormat.F32, WeightFormat.BF16, WeightFormat.F16, WeightFormat.Int8 })
            {
                using var store = new WeightStore();
                var step = shape.DecoderStepLinears().Select(d => (Weight: store.Create(cpu, d.Out, d.In, format), d.In, d.Out)).ToList();
                long bytes = step.Sum(s => s.Weight.ByteLength);
                using IBuffer x = WeightStore.Random(cpu, Math.Max(shape.DFf, shape.DModel)), y = cpu.Allocate(shape.Vocab);
                double seconds = Best(() => { foreach (var s in step) cpu.Linear(x, s.Weight, y, 1); }, 20);
                if (format == WeightFormat.F32) f32Time = seconds;
                double gbps = bytes / seconds / 1e9;
                Console.WriteLine($"{shape.Name} decode-step GEMV {format,-4}: {bytes / 1e6,7:F1} MB in {seconds * 1e3,7:F2} ms = {gbps,6:F1} GB/s " +
                    $"({gbps / bandwidth:P0} of bandwidth; time {seconds / f32Time:F2}x f32)");
            }
        }

        // Cache-hot GEMV: a weight that fits L2, so the number is the kernel's compute ceiling per format.
        foreach (WeightFormat format in new[] { WeightFormat.F32, WeightFormat.BF16, WeightFormat.F16, WeightFormat.Int8 })
        {
            using var store = new WeightStore();
            IWeight w = store.Create(cpu, 256, 512, format);
            using IBuffer x = WeightStore.Random(cpu, 512), y = cpu.Allocate(256);
            double seconds = Best(() => { for (int i = 0; i < 100; i++) cpu.Linear(x, w, y, 1); }, 20) / 100;
            Console.WriteLine($"hot GEMV 256x512 {format,-4}: {seconds * 1e6,7:F2} us = {w.ByteLength / seconds / 1e9,6:F1} GB/s");
        }

        foreach ((int rows, int inDim, int outDim) in new[] { (8, 512, 1024), (128, 512, 1024), (128, 1024, 512), (128, 512, 384), (512, 768, 2048) })
            foreach (WeightFormat format in new[] { WeightFormat.F32, WeightFormat.BF16, WeightFormat.Int8 })
            {
                using var store = new WeightStore();
                IWeight w = store.Create(cpu, outDim, inDim, format);
                using IBuffer x = WeightStore.Random(cpu, rows * inDim), y = cpu.Allocate(rows * outDim);
                double seconds = Best(() => cpu.Linear(x, w, y, rows), 10);
                double gflops = 2.0 * rows * inDim * outDim / seconds / 1e9;
                Console.WriteLine($"GEMM {rows}x{inDim}x{outDim} {format,-4}: {seconds * 1e3,7:F3} ms = {gflops,6:F1} GFLOP/s ({gflops / peak:P0} of FMA peak)");
            }
    }

    /// <summary>Best wall time of <paramref name="repeats"/> runs after a warm-up.</summary>
    public static double Best(Action action, int repeats)
    {
        for (int i = 0; i < 3; i++) action();
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
