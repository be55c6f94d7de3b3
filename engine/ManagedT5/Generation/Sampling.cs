// Sampling (do_sample): each row's logits come back, go through the processors and warpers (temperature, top-k,
// top-p) and a token is drawn from their softmax. num_return_sequences rows per prompt, prompt-major.
using ManagedT5.Model;

namespace ManagedT5.Generation;

/// <summary>Multinomial sampling (num_beams 1, do_sample true); seeded by <see cref="GenerationOptions.Seed"/>.</summary>
internal sealed class Sampling(GenerationOptions options) : TokenSearch(options)
{
    private float[] _logits = [];
    private Random _random = null!;

    public override int RowsPerPrompt => Options.NumReturnSequences;
    public override string RowsOption => "num_return_sequences";
    public override bool DownloadsLogits(LogitsPipeline processors) => true;

    protected override void Prepare(DecodingRun run, int rows)
    {
        _logits = new float[rows * run.Vocab];
        _random = NewRandom(Options.Seed);
    }

    /// <summary>The generator a sampled row draws from: seeded by <paramref name="seed"/> (the same draws for the same
    /// seed, alone or in a continuous batch), else randomly.</summary>
    internal static Random NewRandom(ulong? seed) => seed is ulong s ? new Random(unchecked((int)(s ^ (s >> 32)))) : new Random();

    protected override void Choose(DecodingRun run, DecoderState state, int[][] sequences, int length, int[] next)
    {
        int vocab = run.Vocab;
        run.Model.Backend.Download(state.Logits, _logits);
        for (int r = 0; r < next.Length; r++)
        {
            Span<float> scores = _logits.AsSpan(r * vocab, vocab);
            if (!LogitsProcessors.AllFinite(scores)) throw NonFiniteLogits(length, r);
            run.Processors.Process(scores, sequences[r].AsSpan(0, length));
            next[r] = LogitsProcessors.Sample(scores, _random.NextDouble());
        }
    }
}
