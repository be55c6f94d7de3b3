// Continuous batching (ManagedT5.Batching.ContinuousBatcher) on the tiny-flan-t5 fixture: concurrent greedy and seeded
// sampling requests with different prompts and lengths give exactly the tokens each gives alone through
// Generator.Generate, whether they share steps from the start or join mid-run; cancelling some leaves the others'
// tokens unchanged; the queue bound, dispose and the allocation-free step loop.
using ManagedT5.Batching;
using ManagedT5.Generation;
using ManagedT5.Kernels.Cpu;
using ManagedT5.Model;

namespace ManagedT5.Tests;

/// <summary>Runs apart from the parallel test classes. A full CI run once counted 496 bytes on the decoding thread over
/// steps 12..50 (never alone, never in 8 runs of this class); the likely cause is outside the engine: the thread hands
/// tokens to consumers whose continuations go through the thread pool, and when every other test class floods the pool
/// its queue grows a segment on the queuing thread. Not proven; the same count of bytes once hit the token-loop test
/// under load, which runs in a non-parallel collection too.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class BatchingCollection
{
    /// <summary>The collection's name.</summary>
    public const string Name = "Continuous batching (not parallel)";
}

[Collection(BatchingCollection.Name)]
public sealed class ContinuousBatchingTests : IClassFixture<ContinuousBatchingTests.TinyModel>
{
    public sealed class TinyModel : IDisposable
    {
        public readonly T5Model Model = T5Model.Load(Fixtures.Model("tiny-flan-t5"), new CpuBackend(), ownsBackend: true);
        public void Dispose() => Model.Dispose();
    }

    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);
    private readonly T5Model _model;
    private readonly ReferenceJson _reference = ReferenceJson.Load("tiny-flan-t5");

    public ContinuousBatchingTests(TinyModel model) => _model = model.Model;

    /// <summary>The fixture's prompts, then random prompts (ids 2..vocab, EOS-terminated) of 1 to 60 tokens.</summary>
    private int[][] Prompts(int count, int seed)
    {
        var random = new Random(seed);
        var prompts = new List<int[]>(_reference.InputIds);
        while (prompts.Count < count)
        {
            int length = random.Next(1, 61);
            int[] p = new int[length + 1];
            for (int i = 0; i < length; i++) p[i] = random.Next(2, _model.Config.VocabSize);
            p[length] = 1;
            prompts.Add(p);
        }
        return [.. prompts.Take(count)];
    }

    /// <summary>What the stream should carry: the lone run's sequence after the start token, through EOS.</summary>
    private int[] Alone(int[] prompt, GenerationOptions o)
    {
        int[] sequence = Generator.Generate(_model, [prompt], o).Sequences[0];
        int eos = Array.IndexOf(sequence, _model.Config.EosTokenId, 1);
        return sequence[1..(eos < 0 ? sequence.Length : eos + 1)];
    }

    private static async Task<int[]> Collect(IAsyncEnumerable<int> stream)
    {
        var tokens = new List<int>();
        await foreach (int t in stream) tokens.Add(t);
        return [.. tokens];
    }

    private static GenerationOptions Greedy(int i) => new()
    {
        MaxNewTokens = 4 + i * 7 % 37,
        RepetitionPenalty = i % 4 == 1 ? 1.3f : 1f,
        NoRepeatNgramSize = i % 5 == 2 ? 2 : 0,
        MinNewTokens = i % 6 == 3 ? 3 : 0,
    };

    private static GenerationOptions Sampled(int i) => new()
    {
        DoSample = true, Seed = (ulong)(1000 + i), MaxNewTokens = 5 + i * 5 % 29,
        Temperature = i % 3 == 0 ? 1f : 0.7f, TopK = i % 2 == 0 ? 50 : 0, TopP = i % 4 == 1 ? 0.9f : 1f,
        RepetitionPenalty = i % 5 == 4 ? 1.2f : 1f,
    };

    [Theory]
    [InlineData(false, 16)]
    [InlineData(true, 16)]
    [InlineData(false, 5)]   // fewer rows than requests: most join mid-run as others leave
    public async Task ConcurrentRequestsGiveTheTokensOfLoneRuns(bool sampling, int maxBatch)
    {
        int[][] prompts = Prompts(32, sampling ? 7 : 3);
        GenerationOptions[] options = [.. Enumerable.Range(0, 32).Select(i => sampling ? Sampled(i) : Greedy(i))];
        int[][] expected = [.. prompts.Select((p, i) => Alone(p, options[i]))];

        await using var batcher = new ContinuousBatcher(_model, new ContinuousBatchingOptions { MaxBatch = maxBatch, MaxQueue = 64 });
        Task<int[]>[] runs = [.. prompts.Select((p, i) => Collect(batcher.GenerateAsync(p, options[i])))];
        int[][] actual = await Task.WhenAll(runs).WaitAsync(Limit);
        for (int i = 0; i < prompts.Length; i++)
            Assert.True(expected[i].SequenceEqual(actual[i]),
                $"request {i}: alone [{string.Join(",", expected[i])}] but batched [{string.Join(",", actual[i])}]");
        Assert.True(batcher.Steps < expected.Sum(e => e.Length), "the requests should have shared steps");
        Assert.Equal(0, batcher.QueueDepth);
    }

    [Fact]
    public async Task RowsJoiningMidRunAndCancelledRowsLeaveTheOthersUnchanged()
    {
        int[][] prompts = Prompts(10, 11);
        GenerationOptions Long(int i) => Greedy(i) with { MaxNewTokens = 40, MinNewTokens = 40 };
        await using var batcher = new ContinuousBatcher(_model);
        using var cancel = new CancellationTokenSource();
        // Four long requests run; after their first tokens six more join, three of them (endless: they cannot finish
        // first, however slowly the test's own thread is scheduled) cancelled a few steps later.
        var Endless = new GenerationOptions { MaxNewTokens = 20000, MinNewTokens = 20000 };
        var first = Enumerable.Range(0, 4).Select(i => Collect(batcher.GenerateAsync(prompts[i], Long(i)))).ToList();
        while (batcher.Steps < 3) await Task.Delay(1);
        var doomed = new List<Task<int>>();
        var later = new List<Task<int[]>>();
        for (int i = 4; i < 10; i++)
        {
            if (i % 2 == 0) doomed.Add(CountUntilCancelled(batcher.GenerateAsync(prompts[i], Endless, cancel.Token)));
            else later.Add(Collect(batcher.GenerateAsync(prompts[i], Greedy(i))));
        }
        long cancelAt = batcher.Steps + 5;
        while (batcher.Steps < cancelAt) await Task.Delay(1);
        cancel.Cancel();
        foreach (Task<int> d in doomed) Assert.InRange(await d.WaitAsync(Limit), 0, 19999);
        int[][] a = await Task.WhenAll(first).WaitAsync(Limit), b = await Task.WhenAll(later).WaitAsync(Limit);
        for (int i = 0; i < 4; i++) Assert.Equal(Alone(prompts[i], Long(i)), a[i]);
        for (int i = 5, j = 0; i < 10; i += 2, j++) Assert.Equal(Alone(prompts[i], Greedy(i)), b[j]);
        Assert.Equal(0, batcher.RunningRows);
    }

    private static async Task<int> CountUntilCancelled(IAsyncEnumerable<int> stream)
    {
        int n = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => { await foreach (int _ in stream) n++; });
        return n;
    }

    [Fact]
    public async Task ABackendWithoutThePerRowOpsDecodesRowsOneAtATime()
    {
        // ILGPU reports AttentionPerRow "not supported": the batcher still serves concurrent requests, each row decoded
        // alone within the shared step, with the tokens of lone runs on that backend.
        using T5Model ilgpu = T5Model.Load(Fixtures.Model("tiny-flan-t5"), Backends.Factories["ilgpu-cpu"](), ownsBackend: true);
        Assert.False(ilgpu.Backend.Supports(Kernels.BackendOp.AttentionPerRow));
        int[][] prompts = Prompts(4, 5);
        GenerationOptions[] options = [.. Enumerable.Range(0, 4).Select(i => Greedy(i) with { MaxNewTokens = 4 })];
        int[][] expected = [.. prompts.Select((p, i) =>
        {
            int[] sequence = Generator.Generate(ilgpu, [p], options[i]).Sequences[0];
            int eos = Array.IndexOf(sequence, ilgpu.Config.EosTokenId, 1);
            return sequence[1..(eos < 0 ? sequence.Length : eos + 1)];
        })];
        await using var batcher = new ContinuousBatcher(ilgpu);
        // ILGPU's CPU accelerator is slow beside the parallel test classes of a full run on 2 cores (a full run at load
        // ~30 took over 60 s here): a longer limit, still short of a hang.
        int[][] actual = await Task.WhenAll(prompts.Select((p, i) => Collect(batcher.GenerateAsync(p, options[i])))).WaitAsync(4 * Limit);
        for (int i = 0; i < 4; i++) Assert.Equal(expected[i], actual[i]);
    }

    [Fact]
    public async Task BeamSearchRunsAloneThroughTheQueue()
    {
        var o = new GenerationOptions { NumBeams = 3, MaxNewTokens = 12 };
        int[] prompt = _reference.InputIds[0];
        await using var batcher = new ContinuousBatcher(_model);
        Task<int[]> greedy = Collect(batcher.GenerateAsync(_reference.InputIds[1], Greedy(1)));
        Assert.Equal(Alone(prompt, o), await Collect(batcher.GenerateAsync(prompt, o)).WaitAsync(Limit));
        Assert.Equal(Alone(_reference.InputIds[1], Greedy(1)), await greedy.WaitAsync(Limit));
        var e = Assert.Throws<ArgumentException>(() => batcher.GenerateAsync(prompt, o with { NumReturnSequences = 2 }));
        Assert.Equal("num_return_sequences", e.ParamName);
    }

    [Fact]
    public async Task AFullQueueIsRefusedAndDisposeEndsEveryRequest()
    {
        var endless = new GenerationOptions { MaxNewTokens = 20000, MinNewTokens = 20000 };   // runs until disposed
        var batcher = new ContinuousBatcher(_model, new ContinuousBatchingOptions { MaxBatch = 1, MaxQueue = 2 });
        IAsyncEnumerable<int> running = batcher.GenerateAsync(_reference.InputIds[0], endless);
        while (batcher.RunningRows < 1) await Task.Delay(1);
        IAsyncEnumerable<int> waiting1 = batcher.GenerateAsync(_reference.InputIds[1], endless);
        using var leave = new CancellationTokenSource();
        IAsyncEnumerable<int> leaving = batcher.GenerateAsync(_reference.InputIds[1], endless, leave.Token);
        Assert.Equal(2, batcher.QueueDepth);
        Assert.Throws<QueueFullException>(() => batcher.GenerateAsync(_reference.InputIds[1], endless));
        // A waiting request whose caller cancels leaves the queue at once (not when a row frees): its place is free again.
        leave.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Collect(leaving).WaitAsync(Limit));
        Assert.Equal(1, batcher.QueueDepth);
        IAsyncEnumerable<int> waiting2 = batcher.GenerateAsync(_reference.InputIds[1], endless);
        var bad = Assert.ThrowsAny<ArgumentException>(() => batcher.GenerateAsync(_reference.InputIds[1], endless with { TopP = 2f }));
        Assert.Equal("top_p", bad.ParamName);

        await batcher.DisposeAsync().AsTask().WaitAsync(Limit);
        foreach (IAsyncEnumerable<int> s in new[] { running, waiting1, waiting2 })
            await Assert.ThrowsAsync<ObjectDisposedException>(() => Collect(s).WaitAsync(Limit));
        Assert.Throws<ObjectDisposedException>(() => batcher.GenerateAsync(_reference.InputIds[1], endless));
    }

    [Fact]
    public async Task TheStepLoopAllocatesNothing()
    {
        // Greedy on the device, greedy with processors and sampling rows share 60 steps; the decoding thread's allocation
        // counter, read at each step's end, must not move once every row has joined (they all join in the first steps).
        await using var batcher = new ContinuousBatcher(_model);
        var trace = new long[80];
        batcher.AllocationTrace = trace;
        var o = new GenerationOptions { MaxNewTokens = 60, MinNewTokens = 60 };
        GenerationOptions[] options = [o, o with { RepetitionPenalty = 1.3f, NoRepeatNgramSize = 3 },
            o with { DoSample = true, Seed = 5, Temperature = 0.7f, TopK = 20, TopP = 0.9f }, o with { DoSample = true, Seed = 6 }];
        Task<int[]>[] runs = [.. options.Select((x, i) => Collect(batcher.GenerateAsync(_reference.InputIds[i % _reference.InputIds.Length], x)))];
        int[][] tokens = await Task.WhenAll(runs).WaitAsync(Limit);
        Assert.All(tokens, t => Assert.Equal(60, t.Length));
        Assert.True(batcher.Steps >= 60 && batcher.Steps < 70, $"{batcher.Steps} steps for 4 rows of 60 tokens");
        Assert.True(trace[50] - trace[12] == 0, $"{trace[50] - trace[12]} bytes allocated over steps 12..50");
    }
}
