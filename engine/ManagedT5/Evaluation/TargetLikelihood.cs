// Model-based evaluation: the log-likelihood of target token sequences given inputs, teacher-forced in one decoder call
// (HF's labels= loss: targets end with </s>, decoder inputs are the targets shifted right after decoder_start_token_id,
// padding is ignored), and rank classification (FLAN's way of scoring options: one encoder pass, the options batched).
using ManagedT5.Model;

namespace ManagedT5.Evaluation;

/// <summary>The log-likelihood of one target sequence: the sum of its tokens' log-probabilities and how many there are.</summary>
/// <param name="LogLikelihood">Sum over the target's tokens of log p(token | input, earlier tokens).</param>
/// <param name="Tokens">Target tokens scored (with the final &lt;/s&gt;).</param>
public readonly record struct TargetScore(double LogLikelihood, int Tokens)
{
    /// <summary>Mean token cross-entropy (HF's labels= loss of this target alone).</summary>
    public double Loss => -LogLikelihood / Tokens;
    /// <summary>Length-normalised log-likelihood (mean log-probability per token).</summary>
    public double MeanLogLikelihood => LogLikelihood / Tokens;
}

/// <summary>Teacher-forced scoring of targets with a <see cref="T5Model"/>.</summary>
public static class TargetLikelihood
{
    /// <summary>
    /// Scores target <paramref name="targets"/>[i] given <paramref name="inputs"/>[i] for every row of one batch: inputs
    /// right-padded with 0 behind an attention mask, targets (token ids ending in &lt;/s&gt;) fed shifted right in one
    /// decoder call. Log-softmax is taken in double over the model's fp32 logits.
    /// </summary>
    public static TargetScore[] Score(T5Model model, IReadOnlyList<int[]> inputs, IReadOnlyList<int[]> targets)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(targets);
        if (inputs.Count == 0) throw new ArgumentException("inputs: the batch is empty; give at least one input.", nameof(inputs));
        if (targets.Count != inputs.Count)
            throw new ArgumentException($"targets: {targets.Count} target(s) for {inputs.Count} input(s); give one target per input.", nameof(targets));
        int batch = inputs.Count, seq = inputs.Max(i => i.Length);
        if (seq == 0) throw new ArgumentException("inputs: every input is empty; give at least one token.", nameof(inputs));
        var ids = new int[batch * seq];                          // input_ids, attention_mask: [batch, seq]
        var mask = new int[batch * seq];
        for (int b = 0; b < batch; b++)
        {
            inputs[b].CopyTo(ids, b * seq);
            mask.AsSpan(b * seq, inputs[b].Length).Fill(1);
        }
        using EncoderOutput encoded = model.Encode(ids, mask, batch);
        return ScoreTargets(model, encoded, expand: 1, targets);
    }

    /// <summary>
    /// Rank classification: scores every option (token ids ending in &lt;/s&gt;) as a target for one input, with one
    /// encoder pass and the options decoded as one batch.
    /// </summary>
    public static TargetScore[] ScoreOptions(T5Model model, int[] input, IReadOnlyList<int[]> options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(options);
        if (input.Length == 0) throw new ArgumentException("input: the input is empty; give at least one token.", nameof(input));
        if (options.Count == 0) throw new ArgumentException("options: no options; give at least one.", nameof(options));
        using EncoderOutput encoded = model.Encode(input, Enumerable.Repeat(1, input.Length).ToArray(), 1);
        return ScoreTargets(model, encoded, expand: options.Count, options);
    }

    /// <summary>The index of the best option by summed (or, with <paramref name="lengthNormalised"/>, mean) log-likelihood;
    /// the first of equals wins.</summary>
    public static int Best(IReadOnlyList<TargetScore> scores, bool lengthNormalised)
    {
        ArgumentNullException.ThrowIfNull(scores);
        if (scores.Count == 0) throw new ArgumentException("scores: no scores to choose from.", nameof(scores));
        int best = 0;
        for (int i = 1; i < scores.Count; i++)
        {
            double a = lengthNormalised ? scores[i].MeanLogLikelihood : scores[i].LogLikelihood;
            double b = lengthNormalised ? scores[best].MeanLogLikelihood : scores[best].LogLikelihood;
            if (a > b) best = i;
        }
        return best;
    }

    // Decoder rows = encoder rows x expand; row r is teacher-forced on targets[r].
    private static TargetScore[] ScoreTargets(T5Model model, EncoderOutput encoded, int expand, IReadOnlyList<int[]> targets)
    {
        T5Config c = model.Config;
        int rows = targets.Count, length = 0;
        for (int r = 0; r < rows; r++)
        {
            if (targets[r] is not { Length: > 0 })
                throw new ArgumentException($"targets: target {r} is empty; a target has at least </s>.", nameof(targets));
            length = Math.Max(length, targets[r].Length);
            for (int t = 0; t < targets[r].Length; t++)
                if ((uint)targets[r][t] >= (uint)c.VocabSize)
                    throw new ArgumentException($"targets: token {targets[r][t]} at position {t} of target {r} is outside the vocabulary (0..{c.VocabSize - 1}).", nameof(targets));
        }
        var decoderInput = new int[rows * length];               // decoder_input_ids: [rows, length], labels shifted right
        for (int r = 0; r < rows; r++)
        {
            decoderInput[r * length] = c.DecoderStartTokenId;
            targets[r].AsSpan(0, targets[r].Length - 1).CopyTo(decoderInput.AsSpan(r * length + 1));
        }
        using DecoderState state = model.StartDecoder(encoded, length, expand, maxTokensPerCall: length);
        model.Decode(state, decoderInput, length);

        int vocab = c.VocabSize;
        var logits = new float[vocab];
        var scores = new TargetScore[rows];
        for (int r = 0; r < rows; r++)
        {
            double sum = 0;
            for (int t = 0; t < targets[r].Length; t++)
            {
                model.Backend.Download(state.Logits, logits, (r * length + t) * vocab);  // logits: [rows, length, vocab]
                sum -= CrossEntropy(logits, targets[r][t]);
            }
            scores[r] = new TargetScore(sum, targets[r].Length);
        }
        return scores;
    }

    // -log softmax(logits)[label], in double: log(sum exp(x - max)) + max - x[label].
    private static double CrossEntropy(ReadOnlySpan<float> logits, int label)
    {
        double max = double.NegativeInfinity;
        foreach (float x in logits) max = Math.Max(max, x);
        double sum = 0;
        foreach (float x in logits) sum += Math.Exp(x - max);
        return Math.Log(sum) + max - logits[label];
    }
}
