// TEMPORARY stand-in for ManagedT5.Batching.ContinuousBatcher (helper "batch", branch h-batch), with exactly its API, so
// the server builds and is tested before the engine's batcher lands. It runs each request alone (at most MaxBatch at
// once) through Generator.Generate; it shares no decoder steps. Delete this file when h-batch is merged.
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using ManagedT5.Generation;
using ManagedT5.Model;

namespace ManagedT5.Batching;

internal sealed record ContinuousBatchingOptions
{
    public int MaxBatch { get; init; } = 16;
    public int MaxQueue { get; init; } = 64;
}

internal sealed class QueueFullException : Exception
{
    public QueueFullException() : base("The queue is full.") { }
}

internal sealed class ContinuousBatcher : IAsyncDisposable
{
    private readonly T5Model _model;
    private readonly ContinuousBatchingOptions _options;
    private readonly SemaphoreSlim _slots;
    private int _waiting, _running;

    public ContinuousBatcher(T5Model model, ContinuousBatchingOptions? options = null)
    {
        _model = model;
        _options = options ?? new ContinuousBatchingOptions();
        _slots = new SemaphoreSlim(_options.MaxBatch);
    }

    public int QueueDepth => Volatile.Read(ref _waiting);
    public int RunningRows => Volatile.Read(ref _running);

    public async IAsyncEnumerable<int> GenerateAsync(int[] inputIds, GenerationOptions options, [EnumeratorCancellation] CancellationToken ct = default)
    {
        options.Validate(_model.Config.VocabSize);
        if (Interlocked.Increment(ref _waiting) > _options.MaxQueue)
        {
            Interlocked.Decrement(ref _waiting);
            throw new QueueFullException();
        }
        try { await _slots.WaitAsync(ct).ConfigureAwait(false); }
        finally { Interlocked.Decrement(ref _waiting); }
        Interlocked.Increment(ref _running);
        var channel = Channel.CreateUnbounded<int>();
        Task producer = Task.Run(() =>
        {
            try
            {
                GenerationOutput output = Generator.Generate(_model, [inputIds], options, ct, (_, t) => channel.Writer.TryWrite(t));
                if (options.NumBeams > 1)
                    foreach (int t in output.Sequences[0].AsSpan(1)) { if (t == (options.PadTokenId ?? _model.Config.PadTokenId)) break; channel.Writer.TryWrite(t); }
                channel.Writer.TryComplete();
            }
            catch (Exception e) { channel.Writer.TryComplete(e); }
        }, CancellationToken.None);
        try
        {
            await foreach (int t in channel.Reader.ReadAllAsync(ct).ConfigureAwait(false)) yield return t;
            await producer.ConfigureAwait(false);
        }
        finally
        {
            try { await producer.ConfigureAwait(false); } catch { }
            Interlocked.Decrement(ref _running);
            _slots.Release();
        }
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
