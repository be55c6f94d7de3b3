// Greedy search: each row takes its highest-scoring token. While no logits processor acts, the argmax runs on the
// device and only each row's winning logit comes back (the finite check); otherwise the logits come back, are
// processed on the host and the argmax is taken there.
using ManagedT5.Model;

namespace ManagedT5.Generation;

/// <summary>Greedy search (num_beams 1, do_sample false).</summary>
internal sealed class GreedySearch(GenerationOptions options) : TokenSearch(options)
{
    private float[] _logits = [];
    private readonly float[] _winner = new float[1];

    public override int RowsPerPrompt => 1;
    public override string RowsOption => "prompts";
    public override bool DownloadsLogits(LogitsPipeline processors) => !processors.IsEmpty;

    protected override void Prepare(DecodingRun run, int rows)
    {
        if (!run.Processors.IsEmpty) _logits = new float[rows * run.Vocab];
    }

    protected override void Choose(DecodingRun run, DecoderState state, int[][] sequences, int length, int[] next)
    {
        int rows = next.Length, vocab = run.Vocab;
        if (!run.Processors.NeedsHostLogits(length))
        {
            run.Model.Backend.ArgMax(state.Logits, rows, vocab, next);      // only ids come back...
            // ...and each row's winning logit: NaN when the row is all NaN, +inf when any logit is, so one float per row
            // tells whether the model has gone non-finite without reading the logits back.
            for (int r = 0; r < rows; r++)
            {
                run.Model.Backend.Download(state.Logits, _winner, r * vocab + next[r]);
                if (!float.IsFinite(_winner[0])) throw NonFiniteLogits(length, r);
            }
            return;
        }
        run.Model.Backend.Download(state.Logits, _logits);
        for (int r = 0; r < rows; r++)
        {
            Span<float> scores = _logits.AsSpan(r * vocab, vocab);
            if (!LogitsProcessors.AllFinite(scores)) throw NonFiniteLogits(length, r);
            run.Processors.Process(scores, sequences[r].AsSpan(0, length));
            next[r] = LogitsProcessors.ArgMax(scores);
        }
    }
}
