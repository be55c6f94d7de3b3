// A decorator that times every op of another backend: where does a decode step go? `managedt5 bench --profile`
// wraps the CPU backend in it. Ops are grouped by kind and shape (a Linear of 1 x 512 -> 384 is one line however
// many layers call it), so the report reads like a roofline table. Timing is wall clock around each call, which is
// exact for the synchronous CPU backends; a GPU backend's ops return before the device finishes, so there it
// measures launch cost only.
using System.Diagnostics;

namespace ManagedT5.Kernels;

/// <summary>One line of a <see cref="ProfilingBackend"/> report.</summary>
/// <param name="Op">Op name ("Linear", "Attention" ...).</param>
/// <param name="Shape">The shape the line groups, in the op's own terms (e.g. "rows 1, 512 -> 384, F32").</param>
/// <param name="Calls">How many calls.</param>
/// <param name="Milliseconds">Wall time of all of them.</param>
/// <param name="Bytes">Weight bytes those calls streamed (Linear, Embedding; 0 for the rest).</param>
public readonly record struct OpProfile(string Op, string Shape, long Calls, double Milliseconds, long Bytes)
{
    /// <summary>Weight bytes per second, in GB/s (0 when the op reads no weight).</summary>
    public double GigabytesPerSecond => Milliseconds > 0 ? Bytes / (Milliseconds * 1e6) : 0;
}

/// <summary>
/// Forwards every call to an inner backend and accumulates wall time per (op, shape). Not for production: the
/// lookups cost a few hundred nanoseconds per op. Thread-safe (one lock around the tally).
/// </summary>
public sealed class ProfilingBackend : IBackend
{
    private readonly IBackend _inner;
    private readonly Dictionary<Key, Tally> _tallies = new();
    private readonly object _lock = new();

    private readonly record struct Key(string Op, int A, int B, int C, int D, WeightFormat Format);

    private sealed class Tally
    {
        public long Calls, Ticks, Bytes;
    }

    /// <summary>Profiles <paramref name="inner"/>; disposing this disposes it.</summary>
    public ProfilingBackend(IBackend inner) => _inner = inner ?? throw new ArgumentNullException(nameof(inner));

    /// <summary>The backend being timed.</summary>
    public IBackend Inner => _inner;

    /// <inheritdoc />
    public string Name => _inner.Name;

    /// <inheritdoc />
    public bool Supports(BackendOp op) => _inner.Supports(op);

    /// <summary>Forgets everything measured so far (e.g. after warm-up).</summary>
    public void Reset()
    {
        lock (_lock) _tallies.Clear();
    }

    /// <summary>What was measured since the last <see cref="Reset"/>, the most expensive first.</summary>
    public IReadOnlyList<OpProfile> Report()
    {
        lock (_lock)
        {
            return _tallies
                .Select(p => new OpProfile(p.Key.Op, Describe(p.Key), p.Value.Calls,
                    p.Value.Ticks * 1000.0 / Stopwatch.Frequency, p.Value.Bytes))
                .OrderByDescending(p => p.Milliseconds)
                .ToList();
        }
    }

    private static string Describe(Key k) => k.Op switch
    {
        "Linear" => $"rows {k.A}, {k.C} -> {k.B}, {k.Format}",
        "Linears" => $"rows {k.A}, {k.C} -> {k.D} x {k.B}, {k.Format}",
        "Attention" => $"batch {k.A} x {k.B} heads, {k.C} queries x {k.D} keys",
        "RmsNorm" => $"rows {k.A} x {k.B}",
        "Embedding" => $"{k.A} ids x {k.B}, {k.Format}",
        "PositionBias" => $"{k.A} queries x {k.B} keys",
        "ArgMax" => $"{k.A} rows x {k.B}",
        "GatherRows" => $"{k.A} rows x {k.B}",
        "AppendToCache" => $"batch {k.A} x {k.B} rows x {k.C}",
        "AttentionPerRow" => $"{k.A} rows x {k.B} heads, up to {k.D} keys",
        "AppendToCachePerRow" => $"{k.A} rows x {k.B}",
        _ => $"{k.A} elements",
    };

    private void Add(in Key key, long start, long bytes = 0)
    {
        long ticks = Stopwatch.GetTimestamp() - start;
        lock (_lock)
        {
            if (!_tallies.TryGetValue(key, out Tally? t)) _tallies[key] = t = new Tally();
            t.Calls++;
            t.Ticks += ticks;
            t.Bytes += bytes;
        }
    }

    /// <inheritdoc />
    public IWeight CreateWeight(HostTensor source, WeightFormat? format = null) => _inner.CreateWeight(source, format);

    /// <inheritdoc />
    public IBuffer Allocate(int length) => _inner.Allocate(length);

    /// <inheritdoc />
    public void Upload(ReadOnlySpan<float> source, IBuffer destination, int offset = 0)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.Upload(source, destination, offset);
        Add(new Key("Upload", source.Length, 0, 0, 0, default), t);
    }

    /// <inheritdoc />
    public void Download(IBuffer source, Span<float> destination, int offset = 0)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.Download(source, destination, offset);
        Add(new Key("Download", destination.Length, 0, 0, 0, default), t);
    }

    /// <inheritdoc />
    public void Embedding(IWeight table, ReadOnlySpan<int> ids, IBuffer output)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.Embedding(table, ids, output);
        int cols = table.Shape[^1];
        Add(new Key("Embedding", ids.Length, cols, 0, 0, table.Format), t, table.ByteLength / table.Shape[0] * ids.Length);
    }

    /// <inheritdoc />
    public void Linear(IBuffer input, IWeight weight, IBuffer output, int rows, bool accumulate = false)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.Linear(input, weight, output, rows, accumulate);
        Add(new Key("Linear", rows, weight.Shape[0], weight.Shape[^1], 0, weight.Format), t, weight.ByteLength);
    }

    /// <inheritdoc />
    /// <remarks>Timed as one op ("Linears", the shape of the first weight times the count).</remarks>
    public void Linears(IBuffer input, ReadOnlySpan<IWeight> weights, ReadOnlySpan<IBuffer> outputs, int rows)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.Linears(input, weights, outputs, rows);
        long bytes = 0;
        foreach (IWeight w in weights) bytes += w.ByteLength;
        if (weights.Length > 0)
            Add(new Key("Linears", rows, weights[0].Shape[0], weights[0].Shape[^1], weights.Length, weights[0].Format), t, bytes);
    }

    /// <inheritdoc />
    public void RmsNorm(IBuffer input, IWeight weight, IBuffer output, int rows, float epsilon)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.RmsNorm(input, weight, output, rows, epsilon);
        Add(new Key("RmsNorm", rows, weight.Shape[^1], 0, 0, default), t);
    }

    /// <inheritdoc />
    public void Activate(IBuffer gate, IBuffer? up, ActivationKind kind, int length)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.Activate(gate, up, kind, length);
        Add(new Key("Activate", length, 0, 0, 0, default), t);
    }

    /// <inheritdoc />
    public void Add(IBuffer source, IBuffer destination, int length)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.Add(source, destination, length);
        Add(new Key("Add", length, 0, 0, 0, default), t);
    }

    /// <inheritdoc />
    public void Scale(IBuffer buffer, float factor, int length)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.Scale(buffer, factor, length);
        Add(new Key("Scale", length, 0, 0, 0, default), t);
    }

    /// <inheritdoc />
    public void PositionBias(IWeight table, IBuffer output, int queryLength, int keyLength, int queryOffset,
        bool bidirectional, int numBuckets, int maxDistance)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.PositionBias(table, output, queryLength, keyLength, queryOffset, bidirectional, numBuckets, maxDistance);
        Add(new Key("PositionBias", queryLength, keyLength, 0, 0, default), t);
    }

    /// <inheritdoc />
    public void Attention(IBuffer query, IBuffer key, IBuffer value, IBuffer output, AttentionShape shape,
        IBuffer? bias, IBuffer? keyMask)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.Attention(query, key, value, output, shape, bias, keyMask);
        // Self-attention keys grow every step: group them in buckets of 16 so a decode run gives a few lines.
        int keys = shape.Causal ? (shape.KeyLength + 15) / 16 * 16 : shape.KeyLength;
        Add(new Key("Attention", shape.Batch, shape.Heads, shape.QueryLength, keys, default), t);
    }

    /// <inheritdoc />
    public void AppendToCache(IBuffer source, IBuffer cache, int batch, int length, int capacity, int position, int rowLength)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.AppendToCache(source, cache, batch, length, capacity, position, rowLength);
        Add(new Key("AppendToCache", batch, length, rowLength, 0, default), t);
    }

    /// <inheritdoc />
    public void GatherRows(IBuffer source, IBuffer destination, ReadOnlySpan<int> sourceRows, int rowLength, int rowStride = 0)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.GatherRows(source, destination, sourceRows, rowLength, rowStride);
        Add(new Key("GatherRows", sourceRows.Length, rowLength, 0, 0, default), t);
    }

    /// <inheritdoc />
    public void ArgMax(IBuffer input, int rows, int cols, Span<int> result)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.ArgMax(input, rows, cols, result);
        Add(new Key("ArgMax", rows, cols, 0, 0, default), t);
    }

    /// <inheritdoc />
    public void AttentionPerRow(IBuffer query, ReadOnlySpan<IBuffer> keys, ReadOnlySpan<IBuffer> values, IBuffer output, int heads,
        int headDim, ReadOnlySpan<int> keyLengths, IBuffer? bias, int biasLength, ReadOnlySpan<IBuffer?> keyMasks)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.AttentionPerRow(query, keys, values, output, heads, headDim, keyLengths, bias, biasLength, keyMasks);
        int longest = 0;
        foreach (int n in keyLengths) longest = Math.Max(longest, n);
        Add(new Key("AttentionPerRow", keyLengths.Length, heads, 1, (longest + 15) / 16 * 16, default), t);
    }

    /// <inheritdoc />
    public void AppendToCachePerRow(IBuffer source, ReadOnlySpan<IBuffer> caches, ReadOnlySpan<int> positions, int rowLength)
    {
        long t = Stopwatch.GetTimestamp();
        _inner.AppendToCachePerRow(source, caches, positions, rowLength);
        Add(new Key("AppendToCachePerRow", positions.Length, rowLength, 0, 0, default), t);
    }

    /// <inheritdoc />
    public void Dispose() => _inner.Dispose();
}
