// Options and the queue-full error of the continuous batcher (ContinuousBatcher): how many rows share a decoder step
// and how many requests may wait for a row.
namespace ManagedT5.Batching;

/// <summary>Limits of a <see cref="ContinuousBatcher"/>.</summary>
public sealed record ContinuousBatchingOptions
{
    /// <summary>Most requests decoding at once (rows of the shared decoder step; a beam-search request, run alone,
    /// takes one of them too).</summary>
    public int MaxBatch { get; init; } = 16;

    /// <summary>Most requests waiting for a row; one more makes <see cref="ContinuousBatcher.GenerateAsync"/> throw
    /// <see cref="QueueFullException"/>.</summary>
    public int MaxQueue { get; init; } = 64;
}

/// <summary>Thrown by <see cref="ContinuousBatcher.GenerateAsync"/> when <see cref="ContinuousBatchingOptions.MaxQueue"/>
/// requests are already waiting: retry later (a server answers 429 with Retry-After).</summary>
public sealed class QueueFullException : Exception
{
    /// <summary>An error saying the queue is full.</summary>
    public QueueFullException() : base("The generation queue is full; retry later or raise ContinuousBatchingOptions.MaxQueue.") { }

    /// <summary>An error with <paramref name="message"/>.</summary>
    public QueueFullException(string message) : base(message) { }

    /// <summary>An error with <paramref name="message"/> and its cause.</summary>
    public QueueFullException(string message, Exception inner) : base(message, inner) { }
}
