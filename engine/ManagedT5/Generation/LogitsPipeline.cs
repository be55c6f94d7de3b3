// The logits processors of one generate() call, built once from its options in HF's order: processors (repetition
// penalty, no-repeat n-gram, min length, min new tokens), then, when sampling, the warpers (temperature, top-k, top-p).
// A processor that an option turns off is not built. Each says at which lengths it acts, so plain greedy search keeps
// the argmax on the device whenever no processor has anything to do. Adding a processor: one class here, one line in
// Build, its option in GenerationOptions and GenerationOptionTable.
namespace ManagedT5.Generation;

/// <summary>One of HF's logits processors or warpers, built for one generate() call; it may own scratch sized once.</summary>
internal interface ILogitsProcessor
{
    /// <summary>Whether the processor changes any score when the rows hold <paramref name="length"/> tokens (start token
    /// included). False lets greedy search take the argmax on the device without reading the logits back.</summary>
    bool NeedsHostLogits(int length);

    /// <summary>Processes one row of scores in place, given that row's tokens so far. Allocates nothing.</summary>
    void Process(Span<float> scores, ReadOnlySpan<int> tokens);
}

/// <summary>The processors of one generate() call, applied in order to each row.</summary>
internal sealed class LogitsPipeline
{
    private readonly ILogitsProcessor[] _processors;

    private LogitsPipeline(ILogitsProcessor[] processors) => _processors = processors;

    /// <summary>The processors <paramref name="o"/> turns on, in HF's order; the warpers only when sampling.</summary>
    public static LogitsPipeline Build(GenerationOptions o, int eos, int vocab)
    {
        var p = new List<ILogitsProcessor>();
        if (o.RepetitionPenalty != 1f) p.Add(new RepetitionPenalty(o.RepetitionPenalty, vocab));
        if (o.NoRepeatNgramSize > 0) p.Add(new NoRepeatNgram(o.NoRepeatNgramSize));
        if (o.MinLength > 1) p.Add(new MinLength(o.MinLength, eos));
        if (o.MinNewTokens > 0) p.Add(new MinNewTokens(o.MinNewTokens, eos));
        if (o.DoSample)
        {
            if (o.Temperature != 1f) p.Add(new Temperature(o.Temperature));
            if (o.TopK > 0 && o.TopK < vocab) p.Add(new TopK(o.TopK, vocab));
            if (o.TopP < 1f) p.Add(new TopP(o.TopP, vocab));
        }
        return new LogitsPipeline([.. p]);
    }

    /// <summary>True when no processor was built: every row's scores are the model's.</summary>
    public bool IsEmpty => _processors.Length == 0;

    /// <summary>Whether any processor acts at this length (see <see cref="ILogitsProcessor.NeedsHostLogits"/>).</summary>
    public bool NeedsHostLogits(int length)
    {
        foreach (ILogitsProcessor p in _processors)
            if (p.NeedsHostLogits(length)) return true;
        return false;
    }

    /// <summary>Applies every processor, in order, to one row.</summary>
    public void Process(Span<float> scores, ReadOnlySpan<int> tokens)
    {
        foreach (ILogitsProcessor p in _processors) p.Process(scores, tokens);
    }

    // ------------------------------------------------------------------ processors (HF's *LogitsProcessor)

    /// <summary>RepetitionPenaltyLogitsProcessor. The stamp (one int per token, a value unique to each row) penalises each
    /// seen token once without clearing anything.</summary>
    private sealed class RepetitionPenalty(float penalty, int vocab) : ILogitsProcessor
    {
        private readonly int[] _stamp = new int[vocab];
        private int _stampValue;
        public bool NeedsHostLogits(int length) => true;
        public void Process(Span<float> scores, ReadOnlySpan<int> tokens) =>
            LogitsProcessors.RepetitionPenalty(scores, tokens, penalty, _stamp, ++_stampValue);
    }

    /// <summary>NoRepeatNGramLogitsProcessor: acts once a row holds a whole n-gram.</summary>
    private sealed class NoRepeatNgram(int n) : ILogitsProcessor
    {
        public bool NeedsHostLogits(int length) => length >= n;
        public void Process(Span<float> scores, ReadOnlySpan<int> tokens) => LogitsProcessors.NoRepeatNgram(scores, tokens, n);
    }

    /// <summary>MinLengthLogitsProcessor: EOS is banned while the row (start token included) is shorter than min_length.</summary>
    private sealed class MinLength(int minLength, int eos) : ILogitsProcessor
    {
        public bool NeedsHostLogits(int length) => length < minLength;
        public void Process(Span<float> scores, ReadOnlySpan<int> tokens)
        {
            if (tokens.Length < minLength) scores[eos] = float.NegativeInfinity;
        }
    }

    /// <summary>MinNewTokensLengthLogitsProcessor: EOS is banned until min_new_tokens tokens follow the start token.</summary>
    private sealed class MinNewTokens(int minNewTokens, int eos) : ILogitsProcessor
    {
        public bool NeedsHostLogits(int length) => length - 1 < minNewTokens;
        public void Process(Span<float> scores, ReadOnlySpan<int> tokens)
        {
            if (tokens.Length - 1 < minNewTokens) scores[eos] = float.NegativeInfinity;
        }
    }

    // ------------------------------------------------------------------ warpers (HF's *LogitsWarper, sampling only)

    /// <summary>TemperatureLogitsWarper.</summary>
    private sealed class Temperature(float temperature) : ILogitsProcessor
    {
        public bool NeedsHostLogits(int length) => true;
        public void Process(Span<float> scores, ReadOnlySpan<int> tokens) => LogitsProcessors.Temperature(scores, temperature);
    }

    /// <summary>TopKLogitsWarper.</summary>
    private sealed class TopK(int k, int vocab) : ILogitsProcessor
    {
        private readonly float[] _scratch = new float[vocab];
        public bool NeedsHostLogits(int length) => true;
        public void Process(Span<float> scores, ReadOnlySpan<int> tokens) => LogitsProcessors.TopK(scores, k, _scratch);
    }

    /// <summary>TopPLogitsWarper.</summary>
    private sealed class TopP(float p, int vocab) : ILogitsProcessor
    {
        private readonly float[] _values = new float[vocab];
        private readonly int[] _indices = new int[vocab];
        public bool NeedsHostLogits(int length) => true;
        public void Process(Span<float> scores, ReadOnlySpan<int> tokens) => LogitsProcessors.TopP(scores, p, _values, _indices);
    }
}
