// What generate() returns, in HF's layout.
namespace ManagedT5.Generation;

/// <summary>
/// Token ids in HF's layout: each sequence starts with the decoder start token; sequences that finished early are
/// padded after their EOS. With num_return_sequences &gt; 1 rows are prompt-major.
/// </summary>
/// <param name="InputIds">The prompts' ids as encoded (unpadded).</param>
/// <param name="Sequences">Output rows.</param>
/// <param name="SequencesScores">Beam search: each row's length-penalised score; null otherwise. Never NaN (NaN or
/// infinite logits stop generation), but -infinity, as in HF's sequences_scores, for a hypothesis every continuation of
/// which a logits processor banned (no_repeat_ngram_size, min_length on a tiny vocabulary): JSON writers must write it
/// as null or a string, since JSON has no number for it.</param>
public sealed record GenerationOutput(int[][] InputIds, int[][] Sequences, float[]? SequencesScores);
