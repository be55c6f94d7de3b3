// The loop greedy search and sampling share: one token per row per step, a row is finished at its EOS, rows are
// streamed as tokens are chosen, and the output is padded after each row's EOS as HF pads it. Subclasses say only how a
// step's tokens are chosen. Buffers are sized before the first step; the loop allocates nothing.
using ManagedT5.Model;

namespace ManagedT5.Generation;

/// <summary>A strategy that extends each row by one chosen token per step (HF's _sample loop).</summary>
internal abstract class TokenSearch(GenerationOptions options) : DecodingStrategy(options)
{
    /// <summary>Sizes the strategy's buffers for <paramref name="rows"/> rows, before the first step.</summary>
    protected abstract void Prepare(DecodingRun run, int rows);

    /// <summary>Chooses each row's next token from the logits of the step just decoded (in <paramref name="state"/>),
    /// given each row's <paramref name="length"/> tokens so far; finished rows' choices are ignored.</summary>
    protected abstract void Choose(DecodingRun run, DecoderState state, int[][] sequences, int length, int[] next);

    public override GenerationOutput Run(DecodingRun run, CancellationToken ct, TokenCallback? onToken)
    {
        int copies = RowsPerPrompt;                                          // sampled rows: prompt-major copies
        int rows = run.Encoded.Batch * copies, maxLength = Options.EffectiveMaxLength;
        int eos = run.Eos, pad = run.Pad;

        using DecoderState state = run.Model.StartDecoder(run.Encoded, capacity: maxLength - 1, expand: copies);
        var sequences = new int[rows][];
        for (int r = 0; r < rows; r++) { sequences[r] = new int[maxLength]; sequences[r][0] = run.Start; }
        var next = new int[rows];
        var finished = new bool[rows];
        Prepare(run, rows);

        int length = 1, unfinished = rows;
        Array.Fill(next, run.Start);
        while (length < maxLength && unfinished > 0)
        {
            ct.ThrowIfCancellationRequested();
            run.Model.Decode(state, next, 1);
            Choose(run, state, sequences, length, next);
            for (int r = 0; r < rows; r++)
            {
                if (finished[r]) { next[r] = pad; continue; }
                sequences[r][length] = next[r];
                if (next[r] == eos) { finished[r] = true; unfinished--; }
                onToken?.Invoke(r, next[r]);
            }
            length++;
        }
        // HF returns every row at the batch's length, rows that finished early padded after their EOS.
        for (int r = 0; r < rows; r++)
        {
            Array.Resize(ref sequences[r], length);
            if (finished[r]) for (int t = Array.IndexOf(sequences[r], eos, 1) + 1; t < length; t++) sequences[r][t] = pad;
        }
        return new GenerationOutput(run.InputIds, sequences, null);
    }
}
