// Result types of T5Tokenizer: a token's span in the input text, ids with spans, and a padded batch
// laid out row-major [batch, seq] ready to become the encoder's input_ids and attention_mask.

namespace ManagedT5.Tokenizer;

/// <summary>Where a token came from in the original string: <c>text.Substring(Start, Length)</c>.</summary>
/// <remarks>
/// Spans are sentencepiece's: a piece starting with "▁" covers the whitespace before its word (none for the
/// first word), a run of unknown characters is one span, and a token that normalization made up (the dummy
/// "▁" before a text that starts with punctuation, parts of "½", the appended &lt;/s&gt;) may have length 0.
/// </remarks>
public readonly record struct TokenSpan(int Start, int Length)
{
    /// <summary>One past the last character.</summary>
    public int End => Start + Length;

    /// <summary>The span as a <see cref="Range"/>.</summary>
    public Range ToRange() => Start..End;
}

/// <summary>Token ids with, for each id, the span of the original string it came from.</summary>
public sealed record TokenizedText(int[] Ids, TokenSpan[] Offsets);

/// <summary>
/// A batch of encoded texts right-padded with <c>PadId</c> (0) to one length.
/// <see cref="InputIds"/> and <see cref="AttentionMask"/> are row-major <c>[BatchSize, SequenceLength]</c>.
/// </summary>
public sealed class EncodedBatch
{
    internal EncodedBatch(int batchSize, int sequenceLength, int[] inputIds, int[] attentionMask, int[] lengths)
    {
        BatchSize = batchSize;
        SequenceLength = sequenceLength;
        InputIds = inputIds;
        AttentionMask = attentionMask;
        Lengths = lengths;
    }

    /// <summary>Number of texts (rows).</summary>
    public int BatchSize { get; }

    /// <summary>Length every row is padded to (columns).</summary>
    public int SequenceLength { get; }

    /// <summary>input_ids: [BatchSize, SequenceLength], row-major, padding = PadId.</summary>
    public int[] InputIds { get; }

    /// <summary>attention_mask: [BatchSize, SequenceLength], 1 for a token, 0 for padding.</summary>
    public int[] AttentionMask { get; }

    /// <summary>Unpadded length of each row: [BatchSize].</summary>
    public int[] Lengths { get; }

    /// <summary>Row <paramref name="row"/>'s ids without padding.</summary>
    public ReadOnlySpan<int> GetIds(int row) => InputIds.AsSpan(row * SequenceLength, Lengths[row]);
}
