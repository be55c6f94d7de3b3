// The hand-over of one request's tokens from the batcher's decoding thread to the request's reader: a preallocated
// array the writer fills and a one-waiter signal (ManualResetValueTaskSourceCore), so writing a token allocates nothing.
using System.Threading.Tasks.Sources;

namespace ManagedT5.Batching;

/// <summary>A single-writer, single-reader stream of at most <c>capacity</c> ints with completion (or an error).</summary>
internal sealed class TokenStream(int capacity) : IValueTaskSource<bool>
{
    private readonly int[] _tokens = new int[capacity];
    private int _count;               // tokens written (published with Volatile.Write after the token)
    private int _done;                // 1 once completed
    private int _completing;          // 1 once Complete has been called
    private Exception? _error;        // set before _done
    private int _waiting;             // 1 while the reader waits for a signal
    private ManualResetValueTaskSourceCore<bool> _signal = new() { RunContinuationsAsynchronously = true };

    /// <summary>Whether <see cref="Complete"/> has been called.</summary>
    public bool IsCompleted => Volatile.Read(ref _done) == 1;

    /// <summary>Writer: appends a token (never more than the capacity: the batcher stops a row at its max length).</summary>
    public void Write(int token)
    {
        int n = _count;
        _tokens[n] = token;
        Volatile.Write(ref _count, n + 1);
        Wake();
    }

    /// <summary>Writer: no more tokens; <paramref name="error"/> (if any) is thrown to the reader after the tokens written.</summary>
    public void Complete(Exception? error = null)
    {
        if (Interlocked.Exchange(ref _completing, 1) == 1) return;    // the first completion wins
        _error = error;
        Volatile.Write(ref _done, 1);
        Wake();
    }

    private void Wake()
    {
        if (Interlocked.Exchange(ref _waiting, 0) == 1) _signal.SetResult(true);
    }

    /// <summary>Reader: the tokens in order, then the error if the stream ended with one.</summary>
    public async IAsyncEnumerable<int> ReadAllAsync()
    {
        int read = 0;
        while (true)
        {
            int available = Volatile.Read(ref _count);
            while (read < available) yield return _tokens[read++];
            if (Volatile.Read(ref _done) == 1)
            {
                available = Volatile.Read(ref _count);
                while (read < available) yield return _tokens[read++];
                if (_error is not null) throw _error;
                yield break;
            }
            // Arm the signal, then look again: a token or completion that came in between would otherwise go unheard.
            _signal.Reset();
            Volatile.Write(ref _waiting, 1);
            if (Volatile.Read(ref _count) != read || Volatile.Read(ref _done) == 1)
            {
                if (Interlocked.Exchange(ref _waiting, 0) == 1) continue;   // took the signal back: nothing to await
            }
            await new ValueTask<bool>(this, _signal.Version).ConfigureAwait(false);
        }
    }

    bool IValueTaskSource<bool>.GetResult(short token) => _signal.GetResult(token);
    ValueTaskSourceStatus IValueTaskSource<bool>.GetStatus(short token) => _signal.GetStatus(token);
    void IValueTaskSource<bool>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _signal.OnCompleted(continuation, state, token, flags);
}
