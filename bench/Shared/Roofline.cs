// The machine's two ceilings for the kernels, measured: streaming read bandwidth (what batch-1 decode GEMV can reach)
// and fused-multiply-add peak (what the encoder GEMM can reach). Benchmarks report kernels as fractions of these.
// Not part of any library: the benchmark seam compiles this file into the tools that measure (the CLI's bench
// command, bench/ManagedT5.Bench, the kernel tests), as a linked source file.
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace ManagedT5.Kernels.Cpu;

/// <summary>Measured memory-bandwidth and FMA ceilings of this machine.</summary>
internal static unsafe class Roofline
{
    /// <summary>
    /// Read bandwidth in GB/s (10^9 bytes per second): <paramref name="threads"/> threads (0: one per processor) each
    /// sum their slice of a <paramref name="megabytes"/> MB buffer with vector loads; the best of
    /// <paramref name="repeats"/> passes. The buffer must be much larger than the last-level cache.
    /// </summary>
    public static double ReadBandwidthGBps(int threads = 0, int megabytes = 512, int repeats = 5)
    {
        threads = threads <= 0 ? Environment.ProcessorCount : threads;
        long bytes = (long)megabytes << 20;
        long floats = bytes / 4;
        long slice = (floats / threads + 63) & ~63L;
        var buffer = (float*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        try
        {
            // Touch every page on the thread that will read it, then time whole passes.
            OnThreads(threads, t => new Span<float>(buffer + t * slice, (int)Math.Min(slice, floats - t * slice)).Fill(1f));
            double best = double.MaxValue;
            for (int pass = 0; pass < repeats; pass++)
                best = Math.Min(best, OnThreads(threads, t => GC.KeepAlive(Sum(buffer + t * slice, Math.Min(slice, floats - t * slice)))));
            return bytes / best / 1e9;
        }
        finally
        {
            NativeMemory.AlignedFree(buffer);
        }
    }

    /// <summary>
    /// Peak fp32 GFLOP/s (an FMA counts 2) with <paramref name="threads"/> threads (0: one per processor), each running
    /// twelve independent chains of the widest vector FMA; the best of <paramref name="repeats"/> runs.
    /// </summary>
    public static double FmaPeakGflops(int threads = 0, int repeats = 3)
    {
        threads = threads <= 0 ? Environment.ProcessorCount : threads;
        const long Iterations = 10_000_000;
        int lanes = Vector512.IsHardwareAccelerated ? 16 : Vector256.IsHardwareAccelerated ? 8 : 4;
        double flops = 2.0 * 12 * lanes * Iterations * threads;
        double best = double.MaxValue;
        for (int run = 0; run < repeats; run++)
            best = Math.Min(best, OnThreads(threads, _ => GC.KeepAlive(lanes == 16 ? FmaChains512(Iterations)
                : lanes == 8 ? FmaChains256(Iterations) : FmaChains128(Iterations))));
        return flops / best / 1e9;
    }

    /// <summary>Runs <paramref name="work"/>(t) on <paramref name="threads"/> fresh threads released together by a
    /// barrier; returns seconds from the first start to the last finish.</summary>
    private static double OnThreads(int threads, Action<int> work)
    {
        var starts = new long[threads];
        var ends = new long[threads];
        using var barrier = new Barrier(threads);
        var workers = new Thread[threads];
        for (int t = 0; t < threads; t++)
        {
            int index = t;
            workers[t] = new Thread(() =>
            {
                barrier.SignalAndWait();
                starts[index] = Stopwatch.GetTimestamp();
                work(index);
                ends[index] = Stopwatch.GetTimestamp();
            });
            workers[t].Start();
        }
        foreach (Thread worker in workers) worker.Join();
        return (double)(ends.Max() - starts.Min()) / Stopwatch.Frequency;
    }

    private static float Sum(float* p, long count)
    {
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i <= count - 64; i += 64)
            {
                a0 += Vector512.Load(p + i); a1 += Vector512.Load(p + i + 16);
                a2 += Vector512.Load(p + i + 32); a3 += Vector512.Load(p + i + 48);
            }
            return Vector512.Sum(a0 + a1 + a2 + a3) + TailSum(p + i, count - i);
        }
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i <= count - 32; i += 32)
            {
                a0 += Vector256.Load(p + i); a1 += Vector256.Load(p + i + 8);
                a2 += Vector256.Load(p + i + 16); a3 += Vector256.Load(p + i + 24);
            }
            return Vector256.Sum(a0 + a1 + a2 + a3) + TailSum(p + i, count - i);
        }
        return TailSum(p, count);
    }

    private static float TailSum(float* p, long count)
    {
        float sum = 0;
        for (long i = 0; i < count; i++) sum += p[i];
        return sum;
    }

    // a = a * b + c with b just under 1: the chains settle near 1, never overflow or go subnormal.
    private static float FmaChains512(long iterations)
    {
        Vector512<float> b = Vector512.Create(0.9999999f), c = Vector512.Create(1e-7f);
        Vector512<float> a0 = Vector512.Create(1f), a1 = a0 + c, a2 = a1 + c, a3 = a2 + c, a4 = a3 + c, a5 = a4 + c,
            a6 = a5 + c, a7 = a6 + c, a8 = a7 + c, a9 = a8 + c, a10 = a9 + c, a11 = a10 + c;
        for (long i = 0; i < iterations; i++)
        {
            a0 = Vector512.FusedMultiplyAdd(a0, b, c); a1 = Vector512.FusedMultiplyAdd(a1, b, c);
            a2 = Vector512.FusedMultiplyAdd(a2, b, c); a3 = Vector512.FusedMultiplyAdd(a3, b, c);
            a4 = Vector512.FusedMultiplyAdd(a4, b, c); a5 = Vector512.FusedMultiplyAdd(a5, b, c);
            a6 = Vector512.FusedMultiplyAdd(a6, b, c); a7 = Vector512.FusedMultiplyAdd(a7, b, c);
            a8 = Vector512.FusedMultiplyAdd(a8, b, c); a9 = Vector512.FusedMultiplyAdd(a9, b, c);
            a10 = Vector512.FusedMultiplyAdd(a10, b, c); a11 = Vector512.FusedMultiplyAdd(a11, b, c);
        }
        return Vector512.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    private static float FmaChains256(long iterations)
    {
        Vector256<float> b = Vector256.Create(0.9999999f), c = Vector256.Create(1e-7f);
        Vector256<float> a0 = Vector256.Create(1f), a1 = a0 + c, a2 = a1 + c, a3 = a2 + c, a4 = a3 + c, a5 = a4 + c,
            a6 = a5 + c, a7 = a6 + c, a8 = a7 + c, a9 = a8 + c, a10 = a9 + c, a11 = a10 + c;
        for (long i = 0; i < iterations; i++)
        {
            a0 = Vector256.FusedMultiplyAdd(a0, b, c); a1 = Vector256.FusedMultiplyAdd(a1, b, c);
            a2 = Vector256.FusedMultiplyAdd(a2, b, c); a3 = Vector256.FusedMultiplyAdd(a3, b, c);
            a4 = Vector256.FusedMultiplyAdd(a4, b, c); a5 = Vector256.FusedMultiplyAdd(a5, b, c);
            a6 = Vector256.FusedMultiplyAdd(a6, b, c); a7 = Vector256.FusedMultiplyAdd(a7, b, c);
            a8 = Vector256.FusedMultiplyAdd(a8, b, c); a9 = Vector256.FusedMultiplyAdd(a9, b, c);
            a10 = Vector256.FusedMultiplyAdd(a10, b, c); a11 = Vector256.FusedMultiplyAdd(a11, b, c);
        }
        return Vector256.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    private static float FmaChains128(long iterations)
    {
        Vector128<float> b = Vector128.Create(0.9999999f), c = Vector128.Create(1e-7f);
        Vector128<float> a0 = Vector128.Create(1f), a1 = a0 + c, a2 = a1 + c, a3 = a2 + c, a4 = a3 + c, a5 = a4 + c,
            a6 = a5 + c, a7 = a6 + c, a8 = a7 + c, a9 = a8 + c, a10 = a9 + c, a11 = a10 + c;
        for (long i = 0; i < iterations; i++)
        {
            a0 = Vector128.FusedMultiplyAdd(a0, b, c); a1 = Vector128.FusedMultiplyAdd(a1, b, c);
            a2 = Vector128.FusedMultiplyAdd(a2, b, c); a3 = Vector128.FusedMultiplyAdd(a3, b, c);
            a4 = Vector128.FusedMultiplyAdd(a4, b, c); a5 = Vector128.FusedMultiplyAdd(a5, b, c);
            a6 = Vector128.FusedMultiplyAdd(a6, b, c); a7 = Vector128.FusedMultiplyAdd(a7, b, c);
            a8 = Vector128.FusedMultiplyAdd(a8, b, c); a9 = Vector128.FusedMultiplyAdd(a9, b, c);
            a10 = Vector128.FusedMultiplyAdd(a10, b, c); a11 = Vector128.FusedMultiplyAdd(a11, b, c);
        }
        return Vector128.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }
}
