// The decoding loops: greedy search and sampling (one loop), and beam search, with HF's semantics.
// Buffers are sized before the first step; the per-token loop allocates nothing.
using ManagedT5.Kernels.Cpu;
using ManagedT5.Model;

namespace ManagedT5.Generation;

/// <summary>Called as tokens are chosen: (prompt row, token). Beam search does not stream.</summary>
public delegate void TokenCallback(int row, int token);

/// <summary>Runs generate() on a <see cref="T5Model"/> from token ids.</summary>
public static class Generator
{
    /// <summary>Generates for a batch of prompts given as ids (each ending with EOS, as the tokenizer makes them).</summary>
    public static GenerationOutput Generate(T5Model model, IReadOnlyList<int[]> prompts, GenerationOptions options,
        CancellationToken cancellationToken = default, TokenCallback? onToken = null)
    {
        T5Config c = model.Config;
        options.Validate(c.VocabSize);
        if (prompts.Count == 0) throw new ArgumentException("The batch is empty: give at least one prompt.", nameof(prompts));
        for (int i = 0; i < prompts.Count; i++)
        {
            if (prompts[i] is null || prompts[i].Length == 0)
                throw new ArgumentException($"Prompt {i} has no tokens; give a non-empty prompt.", nameof(prompts));
            if (prompts[i].Length > options.MaxInputTokens)
                throw new ArgumentException(
                    $"max_input_tokens: prompt {i} has {prompts[i].Length} tokens, more than the limit of {options.MaxInputTokens}. Shorten it or raise the limit.",
                    "max_input_tokens");
        }
        cancellationToken.ThrowIfCancellationRequested();

        // Right-pad the prompts into one [batch, seq] block with its attention mask.
        int batch = prompts.Count, seq = prompts.Max(p => p.Length);
        CheckSizes(c, options, batch, seq);
        int pad = options.PadTokenId ?? c.PadTokenId;
        var ids = new int[batch * seq];
        var mask = new int[batch * seq];
        for (int b = 0; b < batch; b++)
        {
            Array.Fill(ids, pad, b * seq, seq);
            prompts[b].CopyTo(ids, b * seq);
            Array.Fill(mask, 1, b * seq, prompts[b].Length);
        }

        using EncoderOutput encoded = model.Encode(ids, mask, batch);
        var inputIds = prompts.Select(p => (int[])p.Clone()).ToArray();
        return options.NumBeams > 1
            ? BeamSearch(model, encoded, inputIds, options, cancellationToken)
            : GreedyOrSample(model, encoded, inputIds, options, cancellationToken, onToken);
    }

    /// <summary>
    /// Every buffer of this generate() call, counted before the first is allocated (rows x vocab for the logits,
    /// heads x seq^2 for the encoder's attention scores, the KV cache, and their total): one that cannot be
    /// allocated is an <see cref="ArgumentException"/> naming the option to change, instead of an overflow or an
    /// out-of-memory end halfway.
    /// </summary>
    private static void CheckSizes(T5Config c, GenerationOptions o, int prompts, int seq)
    {
        int expand = o.NumBeams > 1 ? o.NumBeams : o.DoSample ? o.NumReturnSequences : 1;
        long rows = (long)prompts * expand;
        int maxLength = o.EffectiveMaxLength;
        string rowsOption = o.NumBeams > 1 ? "num_beams" : expand > 1 ? "num_return_sequences" : "prompts";
        string lengthOption = o.MaxNewTokens is null ? "max_length" : "max_new_tokens";
        string Option(SizeFactor f, bool encoder) => f switch
        {
            SizeFactor.PromptLength => "max_input_tokens",
            SizeFactor.Rows when encoder => prompts == 1 ? "max_input_tokens" : "prompts",
            SizeFactor.Rows => rowsOption,
            _ => lengthOption,
        };
        string Advice(string option) => option switch
        {
            "max_input_tokens" => $"Shorten the prompt (the longest has {seq} tokens); max_input_tokens refuses long prompts before any work.",
            "prompts" => "Generate for fewer prompts at once.",
            _ => $"Lower {option}.",
        };
        ArgumentException Bad(string option, string problem) => new($"{option}: {problem}. {Advice(option)}", option);

        if (rows > int.MaxValue) throw Bad(rowsOption, $"{prompts} prompt(s) x {expand} are {rows:N0} rows, more than a batch can hold");
        RequestSizes encoder = RequestSizes.Encoder(c, prompts, seq);
        if (encoder.Problem is { } p) throw Bad(Option(p.Culprit, encoder: true), p.Describe());
        RequestSizes decoder = RequestSizes.Decoder(c, (int)rows, seq, maxLength - 1, tokensPerCall: 1, expanded: expand > 1);
        // The generation loop's host arrays: downloaded logits (beam search, processors, sampling) and the sequences.
        if (o.NumBeams > 1 || NeedsProcessing(o))
            decoder.Add($"the logits on the host ([rows {rows}, vocab_size {c.VocabSize}])", SizeFactor.Rows, rows, c.VocabSize);
        decoder.Add($"the sequences ([rows {rows}, {maxLength} tokens])", SizeFactor.Rows, rows, maxLength, count: o.NumBeams > 1 ? 2 : 1);
        if (decoder.Problem is { } q) throw Bad(Option(q.Culprit, encoder: false), q.Describe());
        long available = RequestSizes.AvailableBytes;
        double total = encoder.Bytes + decoder.Bytes;
        if (available > 0 && total > available)
            throw Bad(Option(decoder.LargestCulprit, encoder: false),
                $"the buffers would need {total / (1 << 30):N1} GiB, more than the {available / (double)(1 << 30):N1} GiB of memory this process can use");
    }

    /// <summary>The error for logits that are NaN or infinite: generating on would give empty or arbitrary text (or
    /// scores no JSON can hold) without a word.</summary>
    private static InvalidOperationException NonFiniteLogits(int step, int row) => new(
        $"The model produced NaN or infinite logits at generation step {step} (row {row}); its weights are likely corrupt " +
        "(NaN/Inf values) or overflow the precision they are kept in (fp16 activations above 65504). Check the checkpoint, " +
        "or keep the weights in F32 (WeightFormat.F32, --dtype f32).");

    private static (int Eos, int Pad, int Start) Ids(T5Config c, GenerationOptions o) =>
        (o.EosTokenId ?? c.EosTokenId, o.PadTokenId ?? c.PadTokenId, o.DecoderStartTokenId ?? c.DecoderStartTokenId);

    private static bool NeedsProcessing(GenerationOptions o) =>
        o.RepetitionPenalty != 1f || o.NoRepeatNgramSize > 0 || o.MinLength > 1 || o.MinNewTokens > 0 || o.DoSample;

    // ------------------------------------------------------------------ greedy search and sampling

    private static GenerationOutput GreedyOrSample(T5Model model, EncoderOutput encoded, int[][] inputIds,
        GenerationOptions o, CancellationToken ct, TokenCallback? onToken)
    {
        T5Config c = model.Config;
        var (eos, pad, start) = Ids(c, o);
        int copies = o.DoSample ? o.NumReturnSequences : 1;                  // sampled rows: prompt-major copies
        int rows = encoded.Batch * copies, vocab = c.VocabSize, maxLength = o.EffectiveMaxLength;
        bool process = NeedsProcessing(o);

        using DecoderState state = model.StartDecoder(encoded, capacity: maxLength - 1, expand: copies);
        var sequences = new int[rows][];
        for (int r = 0; r < rows; r++) { sequences[r] = new int[maxLength]; sequences[r][0] = start; }
        var next = new int[rows];
        var finished = new bool[rows];
        float[] logits = process ? new float[rows * vocab] : [];
        float[] scratch = o.DoSample ? new float[vocab] : [];
        int[] scratchIndices = o.DoSample && o.TopP < 1f ? new int[vocab] : [];
        int[] stamp = o.RepetitionPenalty != 1f ? new int[vocab] : [];
        var winner = new float[1];                                           // the chosen logit of a row (finite check)
        Random? random = o.DoSample ? (o.Seed is ulong s ? new Random(unchecked((int)(s ^ (s >> 32)))) : new Random()) : null;

        int length = 1, unfinished = rows, stampValue = 0;
        for (int r = 0; r < rows; r++) next[r] = start;
        while (length < maxLength && unfinished > 0)
        {
            ct.ThrowIfCancellationRequested();
            model.Decode(state, next, 1);
            if (process) model.Backend.Download(state.Logits, logits);
            else
            {
                model.Backend.ArgMax(state.Logits, rows, vocab, next);      // plain greedy: only ids come back
                // ...and each row's winning logit: NaN when the row is all NaN, +inf when any logit is, so one float
                // per row tells whether the model has gone non-finite without reading the logits back.
                for (int r = 0; r < rows; r++)
                {
                    model.Backend.Download(state.Logits, winner, r * vocab + next[r]);
                    if (!float.IsFinite(winner[0])) throw NonFiniteLogits(length, r);
                }
            }

            for (int r = 0; r < rows; r++)
            {
                if (process)
                {
                    Span<float> scores = logits.AsSpan(r * vocab, vocab);
                    if (!LogitsProcessors.AllFinite(scores)) throw NonFiniteLogits(length, r);
                    LogitsProcessors.Process(scores, sequences[r].AsSpan(0, length), o, eos, stamp, ++stampValue);
                    if (o.DoSample)
                    {
                        LogitsProcessors.Temperature(scores, o.Temperature);
                        LogitsProcessors.TopK(scores, o.TopK, scratch);
                        LogitsProcessors.TopP(scores, o.TopP, scratch, scratchIndices);
                        next[r] = LogitsProcessors.Sample(scores, random!.NextDouble());
                    }
                    else next[r] = LogitsProcessors.ArgMax(scores);
                }
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
        return new GenerationOutput(inputIds, sequences, null);
    }

    // ------------------------------------------------------------------ beam search

    /// <summary>Finished hypotheses of one prompt (HF's BeamHypotheses): at most num_beams, worst tracked.</summary>
    private sealed class Hypotheses(int numBeams, float lengthPenalty)
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

    private static GenerationOutput BeamSearch(T5Model model, EncoderOutput encoded, int[][] inputIds,
        GenerationOptions o, CancellationToken ct)
    {
        T5Config c = model.Config;
        var (eos, pad, start) = Ids(c, o);
        int beams = o.NumBeams, batch = encoded.Batch, rows = batch * beams, vocab = c.VocabSize;
        int maxLength = o.EffectiveMaxLength, candidates = 2 * beams;

        using DecoderState state = model.StartDecoder(encoded, capacity: maxLength - 1, expand: beams);
        var sequences = new int[rows][];
        var nextSequences = new int[rows][];
        for (int r = 0; r < rows; r++) { sequences[r] = new int[maxLength]; nextSequences[r] = new int[maxLength]; sequences[r][0] = start; }
        var beamScores = new float[rows];
        for (int r = 0; r < rows; r++) beamScores[r] = r % beams == 0 ? 0f : -1e9f;  // only beam 0 is live at first
        var logits = new float[rows * vocab];
        var stamp = new int[vocab];
        var hypotheses = Enumerable.Range(0, batch).Select(_ => new Hypotheses(beams, o.LengthPenalty)).ToArray();
        var done = new bool[batch];
        var next = new int[rows];
        var sourceRows = new int[rows];
        var newScores = new float[rows];
        var topScores = new float[candidates];
        var topIndices = new int[candidates];
        int length = 1, stampValue = 0;
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
                LogitsProcessors.Process(scores, sequences[r].AsSpan(0, length), o, eos, stamp, ++stampValue);
                ScoreKernels.Add(scores, beamScores[r]);
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
        foreach (Hypotheses h in hypotheses)
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
        return new GenerationOutput(inputIds, output, best.Select(x => x.Score).ToArray());
    }
}
