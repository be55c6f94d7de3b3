// One training batch laid out by HF's rules (DataCollatorForSeq2Seq): inputs right-padded with 0 and a mask, labels
// padded with -100, decoder inputs = labels shifted right after decoder_start_token_id with -100 read as 0.
namespace ManagedT5.Training;

/// <summary>A batch of (input, label) id rows padded to the longest row of each side.</summary>
public sealed class TrainingBatch
{
    /// <summary>Label value that the loss ignores (PyTorch's ignore_index).</summary>
    public const int IgnoreIndex = -100;

    /// <summary>Rows in the batch.</summary>
    public int Batch { get; }
    /// <summary>Length of the longest input row (with its &lt;/s&gt;).</summary>
    public int SourceLength { get; }
    /// <summary>Length of the longest label row (with its &lt;/s&gt;).</summary>
    public int TargetLength { get; }
    /// <summary>[Batch, SourceLength] input ids, right-padded with 0.</summary>
    public int[] InputIds { get; }
    /// <summary>[Batch, SourceLength] 1 over real tokens, 0 over padding.</summary>
    public int[] AttentionMask { get; }
    /// <summary>[Batch, TargetLength] target ids (ending in &lt;/s&gt;), padded with -100.</summary>
    public int[] Labels { get; }
    /// <summary>[Batch, TargetLength] labels shifted right: decoder_start_token_id first, -100 replaced by 0.</summary>
    public int[] DecoderInputIds { get; }

    private TrainingBatch(int batch, int sourceLength, int targetLength, int[] inputIds, int[] mask, int[] labels, int[] decoderInputIds)
    {
        Batch = batch;
        SourceLength = sourceLength;
        TargetLength = targetLength;
        InputIds = inputIds;
        AttentionMask = mask;
        Labels = labels;
        DecoderInputIds = decoderInputIds;
    }

    /// <summary>Pads and shifts rows that already end with &lt;/s&gt; (inputs and labels alike).</summary>
    public static TrainingBatch FromIds(IReadOnlyList<int[]> inputs, IReadOnlyList<int[]> labels, int decoderStartTokenId)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(labels);
        if (inputs.Count == 0) throw new ArgumentException("A batch needs at least one row.", nameof(inputs));
        if (labels.Count != inputs.Count)
            throw new ArgumentException($"{inputs.Count} input rows but {labels.Count} label rows.", nameof(labels));
        int batch = inputs.Count, s = 0, t = 0;
        for (int b = 0; b < batch; b++)
        {
            if (inputs[b].Length == 0) throw new ArgumentException($"Input row {b} is empty; it needs at least </s>.", nameof(inputs));
            if (labels[b].Length == 0) throw new ArgumentException($"Label row {b} is empty; it needs at least </s>.", nameof(labels));
            s = Math.Max(s, inputs[b].Length);
            t = Math.Max(t, labels[b].Length);
        }
        var inputIds = new int[batch * s];
        var mask = new int[batch * s];
        var labelIds = new int[batch * t];
        var decoderIds = new int[batch * t];
        Array.Fill(labelIds, IgnoreIndex);
        for (int b = 0; b < batch; b++)
        {
            inputs[b].CopyTo(inputIds, b * s);
            mask.AsSpan(b * s, inputs[b].Length).Fill(1);
            labels[b].CopyTo(labelIds, b * t);
            // decoder_input_ids[b, 0] = start; [b, j] = labels[b, j - 1] with -100 -> 0 (pad).
            decoderIds[b * t] = decoderStartTokenId;
            for (int j = 1; j < t; j++)
            {
                int label = labelIds[b * t + j - 1];
                decoderIds[b * t + j] = label == IgnoreIndex ? 0 : label;
            }
        }
        return new TrainingBatch(batch, s, t, inputIds, mask, labelIds, decoderIds);
    }

    /// <summary>Label tokens the loss counts (labels != -100).</summary>
    public int TargetTokens => Labels.Count(l => l != IgnoreIndex);

    /// <summary>Real input tokens (attention mask 1).</summary>
    public int SourceTokens => AttentionMask.Count(m => m != 0);
}
