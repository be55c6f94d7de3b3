// The buffers one request needs, counted before any is allocated: every buffer must fit one .NET array
// (T5Config.MaxBufferElements floats) and all of them the memory this process may use. T5Model checks its own calls
// with these; the generator checks a whole generate() up front and names the HF option to change.
namespace ManagedT5.Model;

/// <summary>Which size of a request makes a buffer big: the prompt length, the rows (prompts x beams or samples), or
/// the generated length (the KV cache's capacity).</summary>
internal enum SizeFactor
{
    PromptLength,
    Rows,
    Length,
}

/// <summary>A buffer too big to allocate: what it is (with its factors), how many elements, and what drives it.</summary>
internal sealed record SizeProblem(string Buffer, long Elements, SizeFactor Culprit)
{
    /// <summary>"the logits ([rows 70000, vocab_size 32128]) would need 2,248,960,000 floats, more than ...".</summary>
    public string Describe() =>
        $"{Buffer} would need {Elements:N0} floats, more than one buffer can hold ({T5Config.MaxBufferElements:N0})";
}

/// <summary>Element counts of a request's buffers, in 64-bit arithmetic, and the first that does not fit.</summary>
internal sealed class RequestSizes
{
    private double _bytes;
    private (long Elements, SizeFactor Culprit) _largest;

    /// <summary>The first buffer that cannot be allocated, if any.</summary>
    public SizeProblem? Problem { get; private set; }

    /// <summary>Bytes all the counted buffers take together (host and backend).</summary>
    public double Bytes => _bytes;

    /// <summary>What drives the largest buffer (for naming an option when the total is too much).</summary>
    public SizeFactor LargestCulprit => _largest.Culprit;

    /// <summary>Counts <paramref name="count"/> buffers of a × b × c elements of <paramref name="elementBytes"/> bytes.</summary>
    public RequestSizes Add(string buffer, SizeFactor culprit, long a, long b, long c = 1, int count = 1, int elementBytes = sizeof(float))
    {
        double product = (double)a * b * c;     // exact below 2^53; beyond that only "too big" matters
        long elements = product >= long.MaxValue ? long.MaxValue : a * b * c;
        if (Problem is null && elements > T5Config.MaxBufferElements) Problem = new SizeProblem(buffer, elements, culprit);
        if (elements > _largest.Elements) _largest = (elements, culprit);
        _bytes += product * elementBytes * count;
        return this;
    }

    /// <summary>Encode's buffers for <paramref name="batch"/> rows of <paramref name="seq"/> tokens: hidden state, mask,
    /// projections, feed-forward and the position bias [heads, seq, seq].</summary>
    public static RequestSizes Encoder(T5Config c, int batch, int seq)
    {
        var sizes = new RequestSizes();
        string rows = $"[{batch} prompt(s) x {seq} tokens";
        sizes.Add($"the attention scores ([num_heads {c.NumHeads}, {seq} x {seq} tokens])", SizeFactor.PromptLength, c.NumHeads, seq, seq);
        sizes.Add($"the encoder's projections ({rows}, num_heads x d_kv {c.InnerDim}])", SizeFactor.Rows, batch, seq, c.InnerDim, count: 4);
        sizes.Add($"the encoder's feed-forward ({rows}, d_ff {c.DFf}])", SizeFactor.Rows, batch, seq, c.DFf, count: c.IsGatedAct ? 2 : 1);
        sizes.Add($"the encoder's hidden state ({rows}, d_model {c.DModel}])", SizeFactor.Rows, batch, seq, c.DModel, count: 3);
        sizes.Add($"the attention mask ({rows}])", SizeFactor.Rows, batch, seq, count: 2);
        return sizes;
    }

    /// <summary>StartDecoder's and Decode's buffers for <paramref name="rows"/> decoder rows over an encoder output of
    /// <paramref name="encoderLength"/> positions: per layer the KV cache of <paramref name="capacity"/> positions and
    /// the cross-attention K/V, the work buffers of <paramref name="tokensPerCall"/> tokens per row, and the logits.</summary>
    public static RequestSizes Decoder(T5Config c, int rows, int encoderLength, int capacity, int tokensPerCall, bool expanded)
    {
        var sizes = new RequestSizes();
        int layers = c.NumDecoderLayers;
        long work = (long)rows * tokensPerCall;
        sizes.Add($"the logits ([rows {rows} x {tokensPerCall} token(s), vocab_size {c.VocabSize}])", SizeFactor.Rows, work, c.VocabSize);
        sizes.Add($"the KV cache ([rows {rows}, {capacity} positions, num_heads x d_kv {c.InnerDim}])", SizeFactor.Length,
            rows, capacity, c.InnerDim, count: 2 * layers + 1);
        sizes.Add($"the cross-attention keys ([rows {rows}, {encoderLength} prompt tokens, num_heads x d_kv {c.InnerDim}])", SizeFactor.Rows,
            rows, encoderLength, c.InnerDim, count: 2 * layers);
        if (expanded)
            sizes.Add($"the encoder output per row ([rows {rows}, {encoderLength} prompt tokens, d_model {c.DModel}])", SizeFactor.Rows,
                rows, encoderLength, c.DModel);
        sizes.Add($"the encoder mask per row ([rows {rows}, {encoderLength} prompt tokens])", SizeFactor.Rows, rows, encoderLength);
        sizes.Add($"the position bias ([num_heads {c.NumHeads}, {tokensPerCall} x {capacity} positions])", SizeFactor.Length,
            c.NumHeads, Math.Min(tokensPerCall, capacity), capacity);
        sizes.Add($"the decoder's projections ([rows {rows} x {tokensPerCall} token(s), num_heads x d_kv {c.InnerDim}])", SizeFactor.Rows,
            work, c.InnerDim, count: 4);
        sizes.Add($"the decoder's feed-forward ([rows {rows} x {tokensPerCall} token(s), d_ff {c.DFf}])", SizeFactor.Rows,
            work, c.DFf, count: c.IsGatedAct ? 2 : 1);
        sizes.Add($"the decoder's hidden state ([rows {rows} x {tokensPerCall} token(s), d_model {c.DModel}])", SizeFactor.Rows,
            work, c.DModel, count: 2);
        return sizes;
    }

    /// <summary>Null when the buffers fit one by one and together in <see cref="AvailableBytes"/>; else the problem
    /// as a sentence without the option to change.</summary>
    public string? Check()
    {
        if (Problem is not null) return Problem.Describe();
        long available = AvailableBytes;
        if (available > 0 && _bytes > available)
            return $"the buffers would need {_bytes / (1 << 30):N1} GiB together, more than the {available / (double)(1 << 30):N1} GiB of memory this process can use";
        return null;
    }

    /// <summary>The memory this process may use (physical memory or the container's limit); 0 when unknown.</summary>
    public static long AvailableBytes => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
}
