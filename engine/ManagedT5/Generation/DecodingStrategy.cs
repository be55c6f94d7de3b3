// A decoding strategy chooses the next tokens from the decoder's logits until the rows are done: greedy search,
// sampling, beam search. Generator encodes the prompts, builds the logits processors and hands both to the strategy the
// options pick. A new strategy (diverse or constrained beam search) is one class deriving from this one, plus its line in For.
using ManagedT5.Model;

namespace ManagedT5.Generation;

/// <summary>Everything one generate() call hands its strategy: the model, the encoded prompts, the options, the logits
/// processors built from them, and the token ids in force (the options', else the model's).</summary>
internal sealed record DecodingRun(T5Model Model, EncoderOutput Encoded, int[][] InputIds, GenerationOptions Options,
    LogitsPipeline Processors, int Eos, int Pad, int Start)
{
    /// <summary>The model's vocabulary size: the width of a row of logits.</summary>
    public int Vocab => Model.Config.VocabSize;
}

/// <summary>One way of choosing tokens, made for one generate() call.</summary>
internal abstract class DecodingStrategy(GenerationOptions options)
{
    /// <summary>The options of this call.</summary>
    protected GenerationOptions Options { get; } = options;

    /// <summary>The strategy the options ask for.</summary>
    public static DecodingStrategy For(GenerationOptions o) =>
        o.NumBeams > 1 ? new BeamSearch(o) : o.DoSample ? new Sampling(o) : new GreedySearch(o);

    /// <summary>Decoder rows per prompt (beams, sampled sequences).</summary>
    public abstract int RowsPerPrompt { get; }

    /// <summary>The HF option that sets <see cref="RowsPerPrompt"/>, named when the rows are too many.</summary>
    public abstract string RowsOption { get; }

    /// <summary>Whether the steps read whole rows of logits back to the host (a buffer of rows x vocab_size).</summary>
    public abstract bool DownloadsLogits(LogitsPipeline processors);

    /// <summary>Copies of the [rows, max_length] token array the strategy keeps (beam search swaps two).</summary>
    public virtual int SequenceCopies => 1;

    /// <summary>Decodes until every row is done or max_length is reached; <paramref name="onToken"/> hears each chosen
    /// token where the strategy streams (greedy search and sampling do, beam search does not).</summary>
    public abstract GenerationOutput Run(DecodingRun run, CancellationToken cancellationToken, TokenCallback? onToken);

    /// <summary>The error for logits that are NaN or infinite: generating on would give empty or arbitrary text (or
    /// scores no JSON can hold) without a word.</summary>
    internal static InvalidOperationException NonFiniteLogits(int step, int row) => new(
        $"The model produced NaN or infinite logits at generation step {step} (row {row}); its weights are likely corrupt " +
        "(NaN/Inf values) or overflow the precision they are kept in (fp16 activations above 65504). Check the checkpoint, " +
        "or keep the weights in F32 (WeightFormat.F32, --dtype f32).");
}
