// What generate() returns, in HF's layout.
namespace ManagedT5.Generation;

/// <summary>
/// Token ids in HF's layout: each sequence starts with the decoder start token; sequences that finished early are
/// padded after their EOS. With num_return_sequences &gt; 1 rows are prompt-major.
/// </summary>
/// <param name="InputIds">The prompts' ids as encoded (unpadded).</param>
/// <param name="Sequences">Output rows.</param>
/// <param name="SequencesScores">Beam search: each row's length-penalised score; null otherwise.</param>
public sealed record GenerationOutput(int[][] InputIds, int[][] Sequences, float[]? SequencesScores);
