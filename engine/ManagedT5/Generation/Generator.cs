// generate(): checks the request, pads and encodes the prompts, builds the logits processors from the options and runs
// the decoding strategy they pick (GreedySearch, Sampling, BeamSearch). Every buffer is sized before the first step.
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
        int eos = options.EosTokenId ?? c.EosTokenId;
        DecodingStrategy strategy = DecodingStrategy.For(options);
        LogitsPipeline processors = LogitsPipeline.Build(options, eos, c.VocabSize);
        CheckSizes(c, options, strategy, processors, batch, seq);
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
        var run = new DecodingRun(model, encoded, inputIds, options, processors, eos, pad,
            options.DecoderStartTokenId ?? c.DecoderStartTokenId);
        return strategy.Run(run, cancellationToken, onToken);
    }

    /// <summary>
    /// Every buffer of this generate() call, counted before the first is allocated (rows x vocab for the logits,
    /// heads x seq^2 for the encoder's attention scores, the KV cache, and their total): one that cannot be
    /// allocated is an <see cref="ArgumentException"/> naming the option to change, instead of an overflow or an
    /// out-of-memory end halfway.
    /// </summary>
    internal static void CheckSizes(T5Config c, GenerationOptions o, DecodingStrategy strategy, LogitsPipeline processors,
        int prompts, int seq)
    {
        int expand = strategy.RowsPerPrompt;
        long rows = (long)prompts * expand;
        int maxLength = o.EffectiveMaxLength;
        string rowsOption = expand > 1 ? strategy.RowsOption : "prompts";
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
        // The strategy's host arrays: downloaded logits (beam search, processors, sampling) and the sequences.
        if (strategy.DownloadsLogits(processors))
            decoder.Add($"the logits on the host ([rows {rows}, vocab_size {c.VocabSize}])", SizeFactor.Rows, rows, c.VocabSize);
        decoder.Add($"the sequences ([rows {rows}, {maxLength} tokens])", SizeFactor.Rows, rows, maxLength, count: strategy.SequenceCopies);
        if (decoder.Problem is { } q) throw Bad(Option(q.Culprit, encoder: false), q.Describe());
        long available = RequestSizes.AvailableBytes;
        double total = encoder.Bytes + decoder.Bytes;
        if (available > 0 && total > available)
            throw Bad(Option(decoder.LargestCulprit, encoder: false),
                $"the buffers would need {total / (1 << 30):N1} GiB, more than the {available / (double)(1 << 30):N1} GiB of memory this process can use");
    }
}
