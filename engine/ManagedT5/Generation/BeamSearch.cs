// Beam search with HF's semantics (BeamSearchScorer): each step log-softmaxes every beam's logits, applies the
// processors, adds the beam's running score, keeps the best 2 x num_beams candidates of each prompt, moves EOS
// continuations into the prompt's finished hypotheses and reorders the KV cache to the surviving beams.
using System.Numerics.Tensors;
using ManagedT5.Model;

namespace ManagedT5.Generation;

/// <summary>Beam search (num_beams &gt; 1, do_sample false). Does not stream.</summary>
internal sealed class BeamSearch(GenerationOptions options) : DecodingStrategy(options)
{
    public override int RowsPerPrompt => Options.NumBeams;
    public override string RowsOption => "num_beams";
    public override bool DownloadsLogits(LogitsPipeline processors) => true;
    public override int SequenceCopies => 2;

    public override GenerationOutput Run(DecodingRun run, CancellationToken ct, TokenCallback? onToken)
    {
        GenerationOptions o = Options;
        T5Model model = run.Model;
        EncoderOutput encoded = run.Encoded;
        int eos = run.Eos, pad = run.Pad, start = run.Start;
        int beams = o.NumBeams, batch = encoded.Batch, rows = batch * beams, vocab = run.Vocab;
        int maxLength = o.EffectiveMaxLength, candidates = 2 * beams;

        using DecoderState state = model.StartDecoder(encoded, capacity: maxLength - 1, expand: beams);
        var sequences = new int[rows][];
        var nextSequences = new int[rows][];
        for (int r = 0; r < rows; r++) { sequences[r] = new int[maxLength]; nextSequences[r] = new int[maxLength]; sequences[r][0] = start; }
        var beamScores = new float[rows];
        for (int r = 0; r < rows; r++) beamScores[r] = r % beams == 0 ? 0f : -1e9f;  // only beam 0 is live at first
        var logits = new float[rows * vocab];
        var hypotheses = Enumerable.Range(0, batch).Select(_ => new BeamHypotheses(beams, o.LengthPenalty)).ToArray();
        var done = new bool[batch];
        var next = new int[rows];
        var sourceRows = new int[rows];
        var newScores = new float[rows];
        var topScores = new float[candidates];
        var topIndices = new int[candidates];
        int length = 1;
        for (int r = 0; r < rows; r++) next[r] = start;

        while (length < maxLength)
        {
            ct.ThrowIfCancellationRequested();
            model.Decode(state, next, 1);
            model.Backend.Download(state.Logits, logits);
            // log-softmax, processors on log-probs, then add each beam's running score
            for (int r = 0; r < rows; r++)
            {
                Span<float> scores = logits.AsSpan(r * vocab, vocab);
                if (!LogitsProcessors.AllFinite(scores)) throw NonFiniteLogits(length, r);
                LogitsProcessors.LogSoftmax(scores);
                run.Processors.Process(scores, sequences[r].AsSpan(0, length));
                TensorPrimitives.Add(scores, beamScores[r], scores);
            }

            int generatedWithNext = length;   // tokens after the start token once this step's token is added
            for (int b = 0; b < batch; b++)
            {
                int baseRow = b * beams;
                if (done[b])
                {
                    for (int k = 0; k < beams; k++) { newScores[baseRow + k] = 0; next[baseRow + k] = pad; sourceRows[baseRow + k] = baseRow + k; }
                    continue;
                }
                LogitsProcessors.TopK(logits.AsSpan(baseRow * vocab, beams * vocab), topScores, topIndices);
                int kept = 0;
                for (int rank = 0; rank < candidates && kept < beams; rank++)
                {
                    int beam = topIndices[rank] / vocab, token = topIndices[rank] % vocab, source = baseRow + beam;
                    if (token == eos)
                    {
                        // An EOS continuation becomes a finished hypothesis only if it ranks among the top num_beams.
                        if (rank >= beams) continue;
                        hypotheses[b].Add(sequences[source].AsSpan(0, length), topScores[rank], generatedWithNext);
                    }
                    else
                    {
                        newScores[baseRow + kept] = topScores[rank];
                        next[baseRow + kept] = token;
                        sourceRows[baseRow + kept] = source;
                        kept++;
                    }
                }
                done[b] = hypotheses[b].IsDone(topScores[0], generatedWithNext, o.EarlyStopping, maxLength);
            }

            // Reorder: each new beam continues its source beam's tokens and KV cache.
            for (int r = 0; r < rows; r++)
            {
                sequences[sourceRows[r]].AsSpan(0, length).CopyTo(nextSequences[r]);
                nextSequences[r][length] = next[r];
                beamScores[r] = newScores[r];
            }
            (sequences, nextSequences) = (nextSequences, sequences);
            state.Reorder(sourceRows);
            length++;
            if (Array.TrueForAll(done, d => d)) break;
        }

        // Finalize: open beams of unfinished prompts join their hypotheses; the best num_return_sequences are kept.
        // As in HF, an open beam is normalised by its whole length, decoder start token included (a finished one by
        // its generated tokens including EOS, which is the same count of tokens: start + generated - EOS).
        for (int b = 0; b < batch; b++)
        {
            if (done[b]) continue;
            for (int k = 0; k < beams; k++)
                hypotheses[b].Add(sequences[b * beams + k].AsSpan(0, length), beamScores[b * beams + k], length);
        }
        int keep = o.NumReturnSequences;
        var best = new List<(float Score, int[] Tokens)>();
        foreach (BeamHypotheses h in hypotheses)
            best.AddRange(h.Beams.OrderByDescending(x => x.Score).Take(keep));
        int outLength = Math.Min(best.Max(x => x.Tokens.Length) + 1, maxLength);
        var output = new int[best.Count][];
        for (int i = 0; i < best.Count; i++)
        {
            int[] tokens = best[i].Tokens;
            output[i] = new int[outLength];
            Array.Fill(output[i], pad);
            tokens.CopyTo(output[i], 0);
            if (tokens.Length < outLength) output[i][tokens.Length] = eos;
        }
        return new GenerationOutput(run.InputIds, output, best.Select(x => x.Score).ToArray());
    }
}

/// <summary>Finished hypotheses of one prompt (HF's BeamHypotheses): at most num_beams, worst tracked.</summary>
internal sealed class BeamHypotheses(int numBeams, float lengthPenalty)
{
    public readonly List<(float Score, int[] Tokens)> Beams = new(numBeams + 1);
    public float Worst = 1e9f;

    public void Add(ReadOnlySpan<int> tokens, float sumLogProbs, int generatedLength)
    {
        float score = sumLogProbs / MathF.Pow(generatedLength, lengthPenalty);
        if (Beams.Count < numBeams || score > Worst)
        {
            Beams.Add((score, tokens.ToArray()));
            if (Beams.Count > numBeams)
            {
                int worstIndex = 0;
                for (int i = 1; i < Beams.Count; i++) if (Beams[i].Score < Beams[worstIndex].Score) worstIndex = i;
                Beams.RemoveAt(worstIndex);
                Worst = float.MaxValue;
                foreach (var beam in Beams) Worst = MathF.Min(Worst, beam.Score);
            }
            else Worst = MathF.Min(score, Worst);
        }
    }

    /// <summary>HF's is_done: full, and no running beam can still beat the worst finished one.</summary>
    public bool IsDone(float bestSumLogProbs, int generatedLength, EarlyStopping earlyStopping, int maxGenerated)
    {
        if (Beams.Count < numBeams) return false;
        if (earlyStopping == EarlyStopping.True) return true;
        int length = earlyStopping == EarlyStopping.Never && lengthPenalty > 0 ? maxGenerated : generatedLength;
        return Worst >= bestSumLogProbs / MathF.Pow(length, lengthPenalty);
    }
}
