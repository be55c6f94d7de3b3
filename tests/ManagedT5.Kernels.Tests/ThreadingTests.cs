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
        cpu.Dispose();
        cpu.Dispose();
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

        Step(0); Step(1); // first calls size the scratch memory
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int position = 2; position < 40; position++) Step(position);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        foreach (IWeight w in linears) w.Dispose();
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
