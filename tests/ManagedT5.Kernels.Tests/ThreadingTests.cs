// The worker pool's guarantees: the thread count never changes a result (each output is computed by one thread with
// the same code), several threads may call one backend at once (concurrent generations on one model) and all get
// right answers, and a disposed backend stops its workers.
using ManagedT5.Kernels.Cpu;
using ManagedT5.Kernels.Reference;

namespace ManagedT5.Kernels.Tests;

public sealed class ThreadingTests : IDisposable
{
    private readonly TensorStore _store = new();

    [Theory]
    [InlineData(WeightFormat.F32)]
    [InlineData(WeightFormat.BF16)]
    [InlineData(WeightFormat.Int8)]
    public void ThreadCountDoesNotChangeLinear(WeightFormat format)
    {
        using var single = new CpuBackend(1);
        using var two = new CpuBackend(2);
        using var three = new CpuBackend(3);
        HostTensor tensor = _store.Random("w", format, 1000, 512, 1, 0.1f);
        using IWeight weight = single.CreateWeight(tensor, format);
        foreach (int rows in new[] { 1, 3, 40 })
        {
            float[] x = TestData.Random(rows * 512, rows);
            float[] expected = Linear(single, weight, x, rows, 1000);
            Assert.Equal(expected, Linear(two, weight, x, rows, 1000));
            Assert.Equal(expected, Linear(three, weight, x, rows, 1000));
        }
    }

    [Fact]
    public void ThreadCountDoesNotChangeAttentionNormOrActivation()
    {
        using var single = new CpuBackend(1);
        using var two = new CpuBackend(2);
        var s = new AttentionShape(2, 6, 64, 40, 40, 40);
        float[] q = TestData.Random(s.Batch * s.QueryLength * s.InnerDim, 1);
        float[] k = TestData.Random(q.Length, 2), v = TestData.Random(q.Length, 3);
        float[] Attention(IBackend backend)
        {
            using IBuffer bq = TestData.Buffer(backend, q), bk = TestData.Buffer(backend, k), bv = TestData.Buffer(backend, v);
            using IBuffer output = backend.Allocate(q.Length);
            backend.Attention(bq, bk, bv, output, s, null, null);
            return TestData.Read(backend, output, q.Length);
        }
        Assert.Equal(Attention(single), Attention(two));

        HostTensor gamma = _store.Make("norm", DType.F32, [512], TestData.Random(512, 4));
        using IWeight weight = single.CreateWeight(gamma);
        float[] x = TestData.Random(300 * 512, 5);
        float[] NormThenGelu(IBackend backend)
        {
            using IBuffer input = TestData.Buffer(backend, x), output = backend.Allocate(x.Length);
            backend.RmsNorm(input, weight, output, 300, 1e-6f);
            backend.Activate(output, input, ActivationKind.GeluNew, x.Length);
            return TestData.Read(backend, output, x.Length);
        }
        Assert.Equal(NormThenGelu(single), NormThenGelu(two));
    }

    [Fact]
    public void FourThreadsCallingLinearAtOnceGetRightAnswers()
    {
        using var cpu = new CpuBackend(2);
        using var single = new CpuBackend(1);
        var reference = new ReferenceBackend();
        HostTensor tensor = _store.Random("w", WeightFormat.F32, 384, 512, 7, 0.1f);
        using IWeight weight = cpu.CreateWeight(tensor);
        int[] rowsOf = [1, 2, 16, 1];
        float[][] inputs = rowsOf.Select((rows, t) => TestData.Random(rows * 512, 100 + t)).ToArray();
        float[][] expected = inputs.Select((x, t) => Linear(single, weight, x, rowsOf[t], 384)).ToArray();
        for (int t = 0; t < 4; t++)
            TestData.AssertClose(Linear(reference, weight, inputs[t], rowsOf[t], 384), expected[t], $"thread {t} vs reference");

        var failures = new List<string>();
        var threads = Enumerable.Range(0, 4).Select(t => new Thread(() =>
        {
            using IBuffer x = TestData.Buffer(cpu, inputs[t]), y = cpu.Allocate(rowsOf[t] * 384);
            for (int iteration = 0; iteration < 200; iteration++)
            {
                cpu.Linear(x, weight, y, rowsOf[t]);
                float[] actual = TestData.Read(cpu, y, rowsOf[t] * 384);
                if (!actual.AsSpan().SequenceEqual(expected[t]))
                    lock (failures) failures.Add($"thread {t} iteration {iteration}");
            }
        })).ToList();
        threads.ForEach(thread => thread.Start());
        threads.ForEach(thread => thread.Join());
        Assert.Empty(failures);
    }

    [Fact]
    public void DisposeStopsTheWorkersAndIsIdempotent()
    {
        var cpu = new CpuBackend(3);
        HostTensor tensor = _store.Random("w", WeightFormat.F32, 256, 256, 1);
        using IWeight weight = cpu.CreateWeight(tensor);
        Linear(cpu, weight, TestData.Random(256, 1), 1, 256);
        Thread.Sleep(5); // let the workers go to sleep on their semaphores
        Linear(cpu, weight, TestData.Random(256, 1), 1, 256);
        Assert.Equal(2, cpu.LiveWorkers);     // three threads: the caller and two workers
        cpu.Dispose();
        Assert.Equal(0, cpu.LiveWorkers);
        cpu.Dispose();
        Assert.Equal(0, cpu.LiveWorkers);
    }

    [Fact]
    public void ConstructorClampsTheSimdLevelAndCountsThreads()
    {
        using var cpu = new CpuBackend(3, SimdLevel.Vector128);
        Assert.Equal("cpu", cpu.Name);
        Assert.Equal(3, cpu.Threads);
        Assert.True(cpu.Simd <= SimdLevel.Vector128);
        using var automatic = new CpuBackend();
        Assert.Equal(Environment.ProcessorCount, automatic.Threads);
        Assert.Equal(SimdLevels.Best, automatic.Simd);
        Assert.Throws<ArgumentOutOfRangeException>(() => new CpuBackend(-1));
    }

    [Theory]
    [InlineData(2, 1, 16)]      // fewer units than a grain: the caller alone
    [InlineData(2, 17, 16)]     // two ranges, the second a partial grain
    [InlineData(2, 1000, 16)]   // a decode GEMV's rows
    [InlineData(3, 32128, 16)]  // lm_head rows, three threads
    [InlineData(4, 97, 5)]      // odd grain, more threads than the 2-core machine has
    public unsafe void RunRangesRunsEveryUnitOnceInWholeGrainsWhoeverIsSlow(int threads, int units, int grain)
    {
        using var pool = new WorkerPool(threads);
        int caller = Environment.CurrentManagedThreadId;
        int blocks = (units + grain - 1) / grain;
        int callerRangeEnd = Math.Min(blocks / Math.Min(threads, blocks) * grain, units); // the caller's range is [0, this)
        int[] runs = new int[units];
        int[] executors = new int[units];
        int misaligned = 0, workerStarted = 0, callerBeyond = 0;
        fixed (int* runsPointer = runs, executorsPointer = executors)
        {
            // Round 0: every thread at full speed. Round 1: workers stall (up to a second) until the caller has run a unit
            // past its own range, which only stealing lets it do once a worker owns the rest. Round 2: the caller is
            // slow, so the workers may steal from it.
            for (int round = 0; round < 3; round++)
            {
                Array.Clear(runs);
                Array.Clear(executors);
                workerStarted = callerBeyond = 0;
                var job = new CountingJob
                {
                    Runs = runsPointer, Executors = executorsPointer, Misaligned = &misaligned, WorkerStarted = &workerStarted,
                    CallerBeyond = &callerBeyond, Units = units, Grain = grain, Caller = caller, CallerRangeEnd = callerRangeEnd,
                    SlowWhen = round, Deadline = Environment.TickCount64 + 1000,
                };
                pool.RunRanges(ref job, units, grain);
                Assert.All(runs, count => Assert.Equal(1, count));
                Assert.Equal(0, misaligned);
                // A worker owned units past the caller's range and more than a grain was left: the caller must have
                // taken some of them over instead of waiting for the stalled worker.
                if (round == 1 && workerStarted == 1 && units - callerRangeEnd > grain)
                    Assert.Contains(Enumerable.Range(callerRangeEnd, units - callerRangeEnd), u => executors[u] == caller);
            }

            // Without stealing (the comparison path) every unit still runs once.
            Array.Clear(runs);
            var plain = new CountingJob
            {
                Runs = runsPointer, Executors = executorsPointer, Misaligned = &misaligned, WorkerStarted = &workerStarted,
                CallerBeyond = &callerBeyond, Units = units, Grain = grain, Caller = caller, CallerRangeEnd = callerRangeEnd, SlowWhen = 2,
            };
            pool.RunRanges(ref plain, units, grain, steal: false);
            Assert.All(runs, count => Assert.Equal(1, count));
            Assert.Equal(0, misaligned);
        }
    }

    /// <summary>Counts runs per unit and checks that every call starts on a grain boundary and ends on one or at the end.
    /// SlowWhen 1: the caller holds its first unit until a worker has started (so a worker owns a range), and workers stall
    /// until the caller has run a unit past its own range, both until Deadline. SlowWhen 2: the caller's units spin.</summary>
    private unsafe struct CountingJob : IRangeJob
    {
        public int* Runs, Executors, Misaligned, WorkerStarted, CallerBeyond;
        public int Units, Grain, Caller, CallerRangeEnd, SlowWhen;
        public long Deadline;

        public void Execute(int first, int end)
        {
            if (first % Grain != 0 || (end % Grain != 0 && end != Units) || first >= end) Interlocked.Increment(ref *Misaligned);
            int self = Environment.CurrentManagedThreadId;
            if (SlowWhen == 1 && self != Caller) Volatile.Write(ref *WorkerStarted, 1);
            if (SlowWhen == 1 && self == Caller && first == 0 && CallerRangeEnd < Units) SpinUntil(WorkerStarted);
            for (int u = first; u < end; u++)
            {
                Interlocked.Increment(ref Runs[u]);
                Executors[u] = self;
                if (self == Caller && u >= CallerRangeEnd) Volatile.Write(ref *CallerBeyond, 1);
                if (SlowWhen == 1 && self != Caller && Units - CallerRangeEnd > Grain) SpinUntil(CallerBeyond);
                if (SlowWhen == 2 && self == Caller) Thread.SpinWait(2000);
            }
        }

        private readonly void SpinUntil(int* flag)
        {
            while (Volatile.Read(ref *flag) == 0 && Environment.TickCount64 < Deadline) Thread.SpinWait(10);
        }
    }

    [Fact]
    public unsafe void RunRangesOnABusyPoolRunsOnTheCaller()
    {
        using var pool = new WorkerPool(2);
        int[] runs = new int[500];
        int[] executors = new int[500];
        int misaligned = 0;
        var failures = new List<string>();
        fixed (int* runsPointer = runs, executorsPointer = executors)
        {
            // Two callers at once: the one that finds the pool busy runs its ranges alone, stealing from itself.
            int* r = runsPointer, e = executorsPointer, m = &misaligned;
            var threads = Enumerable.Range(0, 2).Select(t => new Thread(() =>
            {
                for (int i = 0; i < 200; i++)
                {
                    var job = new CountingJob { Runs = r + t * 250, Executors = e + t * 250, Misaligned = m, Units = 250, Grain = 16, Caller = -1, CallerRangeEnd = 250, SlowWhen = -1 };
                    pool.RunRanges(ref job, 250, 16);
                }
            })).ToList();
            threads.ForEach(thread => thread.Start());
            threads.ForEach(thread => thread.Join());
        }
        Assert.All(runs, count => Assert.Equal(200, count));
        Assert.Equal(0, misaligned);
    }

    [Fact]
    public void RooflineMeasuresSomething()
    {
        Assert.True(Roofline.ReadBandwidthGBps(threads: 2, megabytes: 16, repeats: 1) > 0.1);
        Assert.True(Roofline.FmaPeakGflops(threads: 1, repeats: 1) > 0.1);
    }

    private static float[] Linear(IBackend backend, IWeight weight, float[] x, int rows, int outDim)
    {
        using IBuffer input = TestData.Buffer(backend, x), output = backend.Allocate(rows * outDim);
        backend.Linear(input, weight, output, rows);
        return TestData.Read(backend, output, rows * outDim);
    }

    public void Dispose() => _store.Dispose();
}

/// <summary>Allocation counters of the token loop's ops, not run beside other tests of this assembly. (The counter saw a
/// few hundred bytes in some full runs on a loaded 2-core machine and never alone; with tiered compilation off in this
/// project, as in the managedt5 tool, and a longer warm-up it has not recurred.)</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AllocationCounterCollection
{
    /// <summary>The collection's name.</summary>
    public const string Name = "Allocation counters (not parallel)";
}

[Collection(AllocationCounterCollection.Name)]
public sealed class TokenLoopAllocationTests : IDisposable
{
    private readonly TensorStore _store = new();

    [Fact]
    public void TokenLoopOpsAllocateNothingOnTheCallingThread()
    {
        using var cpu = new CpuBackend(2);
        const int d = 512, inner = 384, ff = 1024, vocab = 4000, capacity = 64;
        IWeight[] linears = new[] { WeightFormat.F32, WeightFormat.BF16, WeightFormat.Int8, WeightFormat.F16 }
            .Select(f => cpu.CreateWeight(_store.Random("w", f, ff, d, 1, 0.1f), f)).ToArray();
        using IWeight norm = cpu.CreateWeight(_store.Make("norm", DType.F32, [d], TestData.Random(d, 2)));
        using IWeight table = cpu.CreateWeight(_store.Make("bias", DType.F32, [32, 6], TestData.Random(192, 3)));
        using IWeight embedding = cpu.CreateWeight(_store.Random("shared", WeightFormat.BF16, vocab, d, 4));
        using IBuffer x = TestData.Buffer(cpu, TestData.Random(8 * ff, 5)), y = cpu.Allocate(8 * ff);
        using IBuffer k = TestData.Buffer(cpu, TestData.Random(capacity * inner, 6)), v = TestData.Buffer(cpu, TestData.Random(capacity * inner, 7));
        using IBuffer bias = cpu.Allocate(6 * capacity), logits = TestData.Buffer(cpu, TestData.Random(vocab, 8)), gathered = cpu.Allocate(ff);
        int[] ids = [17], rows = [0], best = new int[1];

        void Step(int position)
        {
            cpu.Embedding(embedding, ids, x);
            cpu.RmsNorm(x, norm, y, 1, 1e-6f);
            foreach (IWeight w in linears) cpu.Linear(x, w, y, 1, accumulate: true);
            cpu.Linear(x, linears[0], y, 8); // a batched step takes the GEMM
            cpu.PositionBias(table, bias, 1, position + 1, position, false, 32, 128);
            cpu.AppendToCache(y, k, 1, 1, capacity, position, inner);
            cpu.Attention(y, k, v, x, new AttentionShape(1, 6, 64, 1, position + 1, capacity, true, position), bias, null);
            cpu.Activate(y, x, ActivationKind.GeluNew, ff);
            cpu.Add(x, y, d);
            cpu.GatherRows(y, gathered, rows, ff);
            cpu.ArgMax(logits, 1, vocab, best);
        }

        for (int position = 0; position < 8; position++) Step(position);   // first calls size the scratch memory
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int position = 8; position < 48; position++) Step(position);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        foreach (IWeight w in linears) w.Dispose();
    }

    public void Dispose() => _store.Dispose();
}
