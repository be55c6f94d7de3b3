// One choice of a completion: the token ids the continuous batcher streams for one prompt, decoded to text piece by
// piece (never half a character) and cut at the first stop sequence, with its token count and finish reason.
using System.Text;
using ManagedT5.Batching;
using ManagedT5.Generation;
using ManagedT5.Tokenizer;

namespace ManagedT5.Server;

/// <summary>Drives one <see cref="ContinuousBatcher.GenerateAsync"/> stream. <see cref="StartAsync"/> waits for the first
/// token (so a full queue is known before any response is written); <see cref="ReadAsync"/> yields the text.</summary>
internal sealed class ChoiceRun : IAsyncDisposable
{
    private readonly T5Tokenizer _tokenizer;
    private readonly IReadOnlyList<string> _stops;
    private readonly int _eos;
    private readonly IAsyncEnumerator<int> _tokens;
    private readonly CancellationTokenSource _stop;   // ends generation at a stop sequence, or with the request
    private readonly List<int> _ids = [];
    private bool _hasToken;

    public ChoiceRun(ContinuousBatcher batcher, T5Tokenizer tokenizer, int[] promptIds, GenerationOptions options, int eos,
        IReadOnlyList<string> stops, CancellationToken cancellationToken)
    {
        _tokenizer = tokenizer;
        _stops = stops;
        _eos = eos;
        _stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        _tokens = batcher.GenerateAsync(promptIds, options, _stop.Token).GetAsyncEnumerator(_stop.Token);
    }

    /// <summary>Generated tokens so far, EOS included (the usage count).</summary>
    public int TokenCount { get; private set; }
    /// <summary>"stop" (EOS or a stop sequence) or "length" (max_tokens reached); null while running.</summary>
    public string? FinishReason { get; private set; }
    /// <summary>When the first token arrived (for the time-to-first-token histogram).</summary>
    public DateTime FirstTokenAt { get; private set; }

    /// <summary>Waits for a place in the batch and the first token; throws what the batcher throws (QueueFullException,
    /// ArgumentException for options, OperationCanceledException).</summary>
    public async Task StartAsync()
    {
        _hasToken = await _tokens.MoveNextAsync().ConfigureAwait(false);
        FirstTokenAt = DateTime.UtcNow;
    }

    /// <summary>The text, as pieces; the last piece is followed by <see cref="FinishReason"/> being set.</summary>
    public async IAsyncEnumerable<string> ReadAsync()
    {
        var pending = new StringBuilder();   // decoded text not yet given out: held while it could start a stop sequence
        int decoded = 0;                     // characters of the decoding of _ids already moved into pending or given out
        bool more = _hasToken;
        while (more)
        {
            int token = _tokens.Current;
            TokenCount++;
            if (token == _eos)
            {
                FinishReason = "stop";
                break;
            }
            _ids.Add(token);
            string text = _tokenizer.Decode(_ids.ToArray());
            int end = text.Length;
            if (end > 0 && (char.IsHighSurrogate(text[end - 1]) || text[end - 1] == '\uFFFD')) end--;   // wait for the rest
            if (end > decoded)
            {
                pending.Append(text, decoded, end - decoded);
                decoded = end;
                if (Cut(pending) is string last)
                {
                    if (last.Length > 0) yield return last;
                    yield break;
                }
                int safe = pending.Length - HeldBack(pending.ToString());
                if (safe > 0)
                {
                    yield return pending.ToString(0, safe);
                    pending.Remove(0, safe);
                }
            }
            more = await _tokens.MoveNextAsync().ConfigureAwait(false);
        }
        // The end: anything held back (a trailing replacement character that was really in the output, or a partial stop).
        string all = _tokenizer.Decode(_ids.ToArray());
        if (all.Length > decoded) pending.Append(all, decoded, all.Length - decoded);
        if (Cut(pending) is string rest)
        {
            if (rest.Length > 0) yield return rest;
            yield break;
        }
        FinishReason ??= "length";
        if (pending.Length > 0) yield return pending.ToString();
    }

    /// <summary>When <paramref name="pending"/> holds a stop sequence: ends generation, sets the finish reason and returns
    /// the text before it; otherwise null.</summary>
    private string? Cut(StringBuilder pending)
    {
        if (_stops.Count == 0) return null;
        string text = pending.ToString();
        int cut = -1;
        foreach (string s in _stops)
        {
            int at = text.IndexOf(s, StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut)) cut = at;
        }
        if (cut < 0) return null;
        FinishReason = "stop";
        _stop.Cancel();
        return text[..cut];
    }

    /// <summary>How many characters at the end of <paramref name="text"/> could be the start of a stop sequence.</summary>
    private int HeldBack(string text)
    {
        int held = 0;
        foreach (string s in _stops)
            for (int k = Math.Min(s.Length - 1, text.Length); k > held; k--)
                if (text.AsSpan(text.Length - k).SequenceEqual(s.AsSpan(0, k))) { held = k; break; }
        return held;
    }

    /// <summary>Ends generation (the row leaves the batch at its next step); <see cref="ReadAsync"/> then ends with
    /// OperationCanceledException.</summary>
    public void Cancel() => _stop.Cancel();

    /// <summary>Cancels and releases the stream; call it only once no <see cref="ReadAsync"/> is running.</summary>
    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        try { await _tokens.DisposeAsync().ConfigureAwait(false); }
        catch (Exception) { /* the request is over either way; what the cancelled stream ends with is of no use */ }
        _stop.Dispose();
    }
}
