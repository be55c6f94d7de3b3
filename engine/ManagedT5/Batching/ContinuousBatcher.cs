// Continuous batching: concurrent requests share decoder steps. Each request is encoded alone (batch 1, as a lone
// generate() encodes it), joins the running batch at the next step, and leaves when it reaches EOS or its max length,
// so a long request never holds up a short one. One thread runs the steps (T5Model.DecodeRows: the linears once over
// every row, attention per row over each row's own KV cache); each row keeps its own logits processors, RNG and
// sequence, so its tokens are the ones a lone Generator.Generate call chooses. Beam search runs alone, beside the batch.
using System.Runtime.CompilerServices;
using ManagedT5.Generation;
using ManagedT5.Model;

namespace ManagedT5.Batching;

/// <summary>
/// Serves concurrent generation requests on one <see cref="T5Model"/> by continuous batching: greedy and sampled
/// requests share each decoder step; a request joins at the next step after its encoder pass and leaves when done.
/// Thread-safe. Requests wait in a bounded queue (<see cref="ContinuousBatchingOptions.MaxQueue"/>) for one of
/// <see cref="ContinuousBatchingOptions.MaxBatch"/> rows.
/// </summary>
public sealed class ContinuousBatcher : IAsyncDisposable
{
    private readonly T5Model _model;
    private readonly ContinuousBatchingOptions _options;
    private readonly Lock _gate = new();
    private readonly Queue<Request> _queue = new();        // guarded by _gate
    private readonly List<Task> _aloneRuns = [];           // beam searches in flight; guarded by _gate
    private readonly SemaphoreSlim _wake = new(0);          // released on a new request, a cancellation, a finished beam search, dispose
    private readonly CancellationTokenSource _shutdown = new();
    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Thread _thread;
    private bool _disposed;                                 // guarded by _gate
    private int _alone;                                     // beam searches running (they hold a row each)
    private int _sweep;                                     // 1 when a request was cancelled: drop cancelled ones from the queue

    // The decoding thread's own state: the running rows, in the order they sit in the step.
    private readonly DecoderRows _rows;
    private readonly Request[] _active;                     // [MaxBatch]
    private readonly DecoderState[] _states;                // [MaxBatch]: _active[r].State
    private readonly int[] _tokens, _argMax;                // [MaxBatch]
    private readonly float[] _logits;                       // [vocab_size]: one row's logits on the host
    private readonly float[] _winner = new float[1];
    private int _count;                                     // rows in _active

    /// <summary>Steps run so far (tests, metrics).</summary>
    internal long Steps;

    /// <summary>When set (tests), entry s receives the bytes the decoding thread had allocated when step s ended.</summary>
    internal long[]? AllocationTrace;

    /// <summary>Starts the decoding thread for <paramref name="model"/> (which must outlive this batcher).</summary>
    public ContinuousBatcher(T5Model model, ContinuousBatchingOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        _options = options ?? new ContinuousBatchingOptions();
        if (_options.MaxBatch < 1)
            throw new ArgumentOutOfRangeException(nameof(options), _options.MaxBatch, "max_batch: MaxBatch must be at least 1.");
        if (_options.MaxQueue < 0)
            throw new ArgumentOutOfRangeException(nameof(options), _options.MaxQueue, "max_queue: MaxQueue must not be negative.");
        if (!model.HasDecoder)
            throw new NotSupportedException("This model was loaded from an encoder-only checkpoint (T5EncoderModel): it cannot generate, so it cannot be batched for generation.");
        _model = model;
        int maxBatch = _options.MaxBatch;
        _rows = new DecoderRows(model.Backend, model.Config, maxBatch);
        _active = new Request[maxBatch];
        _states = new DecoderState[maxBatch];
        _tokens = new int[maxBatch];
        _argMax = new int[maxBatch];
        _logits = new float[model.Config.VocabSize];
        _thread = new Thread(Loop) { IsBackground = true, Name = "ManagedT5 continuous batcher" };
        _thread.Start();
    }

    /// <summary>Requests waiting, not yet in the batch.</summary>
    public int QueueDepth { get { lock (_gate) return _queue.Count; } }

    /// <summary>Requests decoding: rows of the running decoder batch, and beam searches running alone.</summary>
    public int RunningRows => Volatile.Read(ref _count) + Volatile.Read(ref _alone);

    /// <summary>
    /// Queues a request and streams its generated token ids as the steps choose them: the tokens of
    /// <see cref="GenerationOutput.Sequences"/> after the decoder start token, up to and including EOS (no padding) —
    /// the same tokens <see cref="Generator.Generate"/> gives this prompt alone. The request is checked and queued by
    /// this call, so bad options (an <see cref="ArgumentException"/> whose ParamName is the HF option) and a full queue
    /// (<see cref="QueueFullException"/>) are thrown here, not when enumerating. It joins the running batch at the next
    /// decoder step after its encoder pass and leaves when done. Cancelling <paramref name="ct"/> (or leaving the
    /// enumeration) frees its row at the next step boundary; the stream then ends with <see cref="OperationCanceledException"/>.
    /// num_beams &gt; 1 runs alone (beam search does not stream: its best sequence comes at the end);
    /// num_return_sequences &gt; 1 is refused (a stream carries one sequence).
    /// </summary>
    public IAsyncEnumerable<int> GenerateAsync(int[] inputIds, GenerationOptions options, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(inputIds);
        ArgumentNullException.ThrowIfNull(options);
        T5Config c = _model.Config;
        options.Validate(c.VocabSize);
        if (options.NumReturnSequences > 1)
            throw new ArgumentException($"num_return_sequences: {options.NumReturnSequences} sequences do not fit one token stream; " +
                "send that many requests (with different seeds when sampling), or use Generator.Generate.", "num_return_sequences");
        if (inputIds.Length == 0) throw new ArgumentException("inputIds: the prompt has no tokens; give a non-empty prompt.", nameof(inputIds));
        if (inputIds.Length > options.MaxInputTokens)
            throw new ArgumentException($"max_input_tokens: the prompt has {inputIds.Length} tokens, more than the limit of {options.MaxInputTokens}. " +
                "Shorten it or raise the limit.", "max_input_tokens");
        for (int i = 0; i < inputIds.Length; i++)
            if ((uint)inputIds[i] >= (uint)c.VocabSize)
                throw new ArgumentOutOfRangeException(nameof(inputIds), inputIds[i], $"inputIds: the id at position {i} is {inputIds[i]}; ids must be in [0, {c.VocabSize}).");
        int eos = options.EosTokenId ?? c.EosTokenId;
        LogitsPipeline processors = LogitsPipeline.Build(options, eos, c.VocabSize);
        Generator.CheckSizes(c, options, DecodingStrategy.For(options), processors, 1, inputIds.Length);
        ct.ThrowIfCancellationRequested();

        var request = new Request((int[])inputIds.Clone(), options, processors, eos, options.DecoderStartTokenId ?? c.DecoderStartTokenId, ct);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_queue.Count >= _options.MaxQueue)
                throw new QueueFullException($"The generation queue is full ({_options.MaxQueue} requests waiting for {_options.MaxBatch} rows); retry later.");
            _queue.Enqueue(request);
        }
        if (ct.CanBeCanceled) request.Registration = ct.Register(static s => ((Request)s!).Cancel(), request);
        request.Owner = this;
        _wake.Release();
        return Read(request);
    }

    private static async IAsyncEnumerable<int> Read(Request request, [EnumeratorCancellation] CancellationToken enumeration = default)
    {
        using CancellationTokenRegistration stop = enumeration.CanBeCanceled ? enumeration.Register(static s => ((Request)s!).Cancel(), request) : default;
        try
        {
            await foreach (int token in request.Stream.ReadAllAsync().ConfigureAwait(false)) yield return token;
        }
        finally
        {
            request.Cancel();                          // a reader that leaves early frees the row (a no-op once done)
            request.Registration.Dispose();
        }
    }

    // ------------------------------------------------------------------ the decoding thread

    private void Loop()
    {
        try
        {
            while (!_shutdown.IsCancellationRequested)
            {
                if (Interlocked.Exchange(ref _sweep, 0) == 1) SweepQueue();
                Admit();
                if (_count == 0)
                {
                    _wake.Wait();
                    continue;
                }
                Step();
            }
        }
        catch (Exception e)
        {
            // Not expected (each request's errors end that request alone); every request gets this error rather than a hang.
            Shutdown(e);
        }
        finally
        {
            Shutdown(null);
            _stopped.TrySetResult();
        }
    }

    /// <summary>Moves waiting requests into free rows: each is encoded alone and starts its own decoder state.</summary>
    private void Admit()
    {
        while (_count + Volatile.Read(ref _alone) < _options.MaxBatch && !_shutdown.IsCancellationRequested)
        {
            Request? r;
            lock (_gate) if (!_queue.TryDequeue(out r)) return;
            if (r.Cancelled) { r.Stream.Complete(new OperationCanceledException(r.Token)); continue; }
            if (r.Options.NumBeams > 1) { StartAlone(r); continue; }
            try
            {
                Join(r);
            }
            catch (Exception e)
            {
                r.State?.Dispose();
                r.Stream.Complete(e);
            }
        }
    }

    /// <summary>Ends the waiting requests whose callers cancelled them, so they stop counting against MaxQueue at once
    /// (the queue is rotated in place: nothing is allocated).</summary>
    private void SweepQueue()
    {
        lock (_gate)
        {
            for (int i = _queue.Count; i > 0; i--)
            {
                Request q = _queue.Dequeue();
                if (q.Cancelled) q.Stream.Complete(new OperationCanceledException(q.Token));
                else _queue.Enqueue(q);
            }
        }
    }

    private void Join(Request r)
    {
        int maxLength = r.Options.EffectiveMaxLength;
        if (maxLength <= 1) { r.Stream.Complete(); return; }           // nothing to generate: a lone run returns the start token alone
        var mask = new int[r.InputIds.Length];
        Array.Fill(mask, 1);
        using (EncoderOutput encoded = _model.Encode(r.InputIds, mask, 1))
            r.State = _model.StartDecoder(encoded, capacity: maxLength - 1);
        _rows.EnsureKeyCapacity(r.State.Capacity);
        r.Sequence = new int[maxLength];
        r.Sequence[0] = r.Start;
        r.Length = 1;
        r.Next = r.Start;
        r.Random = r.Options.DoSample ? Sampling.NewRandom(r.Options.Seed) : null;
        _active[_count] = r;
        _states[_count] = r.State;
        Volatile.Write(ref _count, _count + 1);
    }

    /// <summary>One decoder step for every running row, then each row's choice; finished rows end their streams.</summary>
    private void Step()
    {
        Compact();
        int count = _count;
        if (count == 0) return;
        for (int r = 0; r < count; r++) _tokens[r] = _active[r].Next;
        try
        {
            _model.DecodeRows(_rows, _states.AsSpan(0, count), _tokens.AsSpan(0, count));
        }
        catch (Exception e)
        {
            for (int r = 0; r < count; r++) _active[r].Fail(e);
            Compact();
            return;
        }
        bool argMaxDone = false;
        for (int r = 0; r < count; r++)
        {
            Request q = _active[r];
            try
            {
                q.Next = Choose(r, q, count, ref argMaxDone);
            }
            catch (Exception e)
            {
                q.Fail(e);
                continue;
            }
            q.Sequence[q.Length++] = q.Next;
            q.Stream.Write(q.Next);
            if (q.Next == q.Eos || q.Length >= q.Sequence.Length) q.Stream.Complete();
        }
        Steps++;
        if (AllocationTrace is { } trace && Steps < trace.Length) trace[Steps] = GC.GetAllocatedBytesForCurrentThread();
    }

    /// <summary>Row r's next token, as GreedySearch / Sampling choose it for a lone row.</summary>
    private int Choose(int r, Request q, int count, ref bool argMaxDone)
    {
        Kernels.IBackend backend = _model.Backend;
        int vocab = _logits.Length;
        (var buffer, int offset) = _rows.LogitsOf(r, q.State!);
        if (q.Random is null && !q.Processors.NeedsHostLogits(q.Length))
        {
            int id;
            if (_rows.Batched)
            {
                if (!argMaxDone) { backend.ArgMax(buffer, count, vocab, _argMax); argMaxDone = true; }
                id = _argMax[r];
            }
            else
            {
                backend.ArgMax(buffer, 1, vocab, _argMax.AsSpan(r, 1));
                id = _argMax[r];
            }
            backend.Download(buffer, _winner, offset + id);      // the winner is NaN or infinite when any logit is
            if (!float.IsFinite(_winner[0])) throw DecodingStrategy.NonFiniteLogits(q.Length, 0);
            return id;
        }
        backend.Download(buffer, _logits, offset);
        Span<float> scores = _logits;
        if (!LogitsProcessors.AllFinite(scores)) throw DecodingStrategy.NonFiniteLogits(q.Length, 0);
        q.Processors.Process(scores, q.Sequence.AsSpan(0, q.Length));
        return q.Random is null ? LogitsProcessors.ArgMax(scores) : LogitsProcessors.Sample(scores, q.Random.NextDouble());
    }

    /// <summary>Removes finished, failed and cancelled rows (keeping the others' order) and frees their states.</summary>
    private void Compact()
    {
        int kept = 0;
        for (int r = 0; r < _count; r++)
        {
            Request q = _active[r];
            if (q.Cancelled && !q.Stream.IsCompleted) q.Stream.Complete(new OperationCanceledException(q.Token));
            if (q.Stream.IsCompleted)
            {
                q.State!.Dispose();
                q.State = null;
                continue;
            }
            _active[kept] = q;
            _states[kept] = q.State!;
            kept++;
        }
        for (int r = kept; r < _count; r++) { _active[r] = null!; _states[r] = null!; }
        Volatile.Write(ref _count, kept);
    }

    /// <summary>Beam search (num_beams &gt; 1) on its own, beside the batch; it holds one row until it ends.</summary>
    private void StartAlone(Request r)
    {
        Interlocked.Increment(ref _alone);
        Task run = Task.Run(() =>
        {
            try
            {
                using var linked = CancellationTokenSource.CreateLinkedTokenSource(r.Token, _shutdown.Token);
                GenerationOutput output = Generator.Generate(_model, [r.InputIds], r.Options, linked.Token);
                int[] best = output.Sequences[0];
                for (int t = 1; t < best.Length; t++)
                {
                    r.Stream.Write(best[t]);
                    if (best[t] == r.Eos) break;
                }
                r.Stream.Complete();
            }
            catch (OperationCanceledException) when (!r.Token.IsCancellationRequested)
            {
                r.Stream.Complete(new ObjectDisposedException(nameof(ContinuousBatcher), "The batcher was disposed while this request ran."));
            }
            catch (Exception e)
            {
                r.Stream.Complete(e is OperationCanceledException ? new OperationCanceledException(r.Token) : e);
            }
            finally
            {
                Interlocked.Decrement(ref _alone);
                _wake.Release();
            }
        });
        lock (_gate)
        {
            _aloneRuns.RemoveAll(t => t.IsCompleted);
            _aloneRuns.Add(run);
        }
    }

    /// <summary>Ends every running and waiting request (the decoding thread, on its way out).</summary>
    private void Shutdown(Exception? error)
    {
        Exception Error() => error ?? new ObjectDisposedException(nameof(ContinuousBatcher), "The batcher was disposed before this request finished.");
        for (int r = 0; r < _count; r++)
        {
            _active[r].Stream.Complete(Error());
            _active[r].State?.Dispose();
            _active[r].State = null;
            _active[r] = null!;
            _states[r] = null!;
        }
        Volatile.Write(ref _count, 0);
        lock (_gate)
        {
            _disposed = true;
            while (_queue.TryDequeue(out Request? q)) q.Stream.Complete(q.Cancelled ? new OperationCanceledException(q.Token) : Error());
        }
    }

    /// <summary>Stops the decoding thread: requests still waiting or running end with <see cref="ObjectDisposedException"/>
    /// (or <see cref="OperationCanceledException"/> when their own token was cancelled). The model is not disposed.</summary>
    public async ValueTask DisposeAsync()
    {
        lock (_gate)
        {
            if (_disposed && _stopped.Task.IsCompleted) return;
            _disposed = true;
        }
        _shutdown.Cancel();
        _wake.Release();
        await _stopped.Task.ConfigureAwait(false);
        Task[] alone;
        lock (_gate) alone = [.. _aloneRuns];
        await Task.WhenAll(alone).ConfigureAwait(false);
        _rows.Dispose();
    }

    /// <summary>One request: its options and stream, then (once it runs) its decoder state, sequence and RNG.</summary>
    private sealed class Request(int[] inputIds, GenerationOptions options, LogitsPipeline processors, int eos, int start, CancellationToken token)
    {
        public readonly int[] InputIds = inputIds;
        public readonly GenerationOptions Options = options;
        public readonly LogitsPipeline Processors = processors;
        public readonly int Eos = eos, Start = start;
        public readonly CancellationToken Token = token;
        public readonly TokenStream Stream = new(options.EffectiveMaxLength);
        public CancellationTokenRegistration Registration;
        public ContinuousBatcher? Owner;
        private volatile bool _cancelled;
        public bool Cancelled => _cancelled;

        public DecoderState? State;
        public int[] Sequence = [];                       // [max_length]: start token, then the chosen tokens
        public int Length, Next;
        public Random? Random;

        /// <summary>Marks the request cancelled (the decoding thread frees its row at the next step) and wakes the thread.</summary>
        public void Cancel()
        {
            if (_cancelled || Stream.IsCompleted) return;
            _cancelled = true;
            if (Owner is { } owner)
            {
                Volatile.Write(ref owner._sweep, 1);
                owner._wake.Release();
            }
        }

        /// <summary>Ends the request with <paramref name="error"/>; its row is freed at the next step.</summary>
        public void Fail(Exception error) => Stream.Complete(error);
    }
}
