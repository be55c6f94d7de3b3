// One training batch laid out by HF's rules (the fixtures' README): inputs right-padded with 0 and an attention mask,
// labels = target ids padded with -100, decoder_input_ids = labels shifted right after decoder_start_token_id.
namespace ManagedT5.Training;

/// <summary>A padded batch of (input ids, label ids) pairs ready for <see cref="T5TrainingModel"/>.</summary>
public sealed class TrainingBatch
{
    /// <summary>The ignore index of the labels (PyTorch's CrossEntropyLoss default, HF's padding of labels).</summary>
    public const int IgnoreIndex = -100;

    private TrainingBatch(int batch, int sourceLength, int targetLength, int[] inputIds, int[] attentionMask, int[] labels, int[] decoderInputIds)
    {
        Batch = batch; SourceLength = sourceLength; TargetLength = targetLength;
        InputIds = inputIds; AttentionMask = attentionMask; Labels = labels; DecoderInputIds = decoderInputIds;
    }

    /// <summary>Rows in the batch.</summary>
    public int Batch { get; }
    /// <summary>Padded source length.</summary>
    public int SourceLength { get; }
    /// <summary>Padded target length.</summary>
    public int TargetLength { get; }
    /// <summary>input_ids [Batch, SourceLength], right-padded with 0.</summary>
    public int[] InputIds { get; }
    /// <summary>attention_mask [Batch, SourceLength]: 1 for tokens, 0 for padding.</summary>
    public int[] AttentionMask { get; }
    /// <summary>labels [Batch, TargetLength]: target ids ending with &lt;/s&gt;, padded with -100.</summary>
    public int[] Labels { get; }
    /// <summary>decoder_input_ids [Batch, TargetLength]: labels shifted right, decoder_start_token_id first, -100 → 0.</summary>
    public int[] DecoderInputIds { get; }

    /// <summary>Target tokens the loss counts (labels other than -100).</summary>
    public int TargetTokenCount => Labels.Count(label => label != IgnoreIndex);

    /// <summary>
    /// Pads <paramref name="inputs"/> (each already ending with &lt;/s&gt;) and <paramref name="labels"/> (each already
    /// ending with &lt;/s&gt;) to the longest of each, as HF's DataCollatorForSeq2Seq does.
    /// </summary>
    public static TrainingBatch FromIds(IReadOnlyList<int[]> inputs, IReadOnlyList<int[]> labels, int decoderStartTokenId)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(labels);
        if (inputs.Count == 0) throw new ArgumentException("inputs: the batch is empty.", nameof(inputs));
        if (labels.Count != inputs.Count) throw new ArgumentException($"labels: {labels.Count} label rows for {inputs.Count} inputs.", nameof(labels));
        int batch = inputs.Count;
        int source = inputs.Max(i => i.Length), target = labels.Max(l => l.Length);
        if (source == 0) throw new ArgumentException("inputs: every input is empty (each should at least end with </s>).", nameof(inputs));
        if (target == 0) throw new ArgumentException("labels: every label row is empty (each should at least end with </s>).", nameof(labels));
        var ids = new int[batch * source];
        var mask = new int[batch * source];
        var paddedLabels = new int[batch * target];
        Array.Fill(paddedLabels, IgnoreIndex);
        for (int b = 0; b < batch; b++)
        {
            // An empty row would leave every key of its attention masked (HF then attends uniformly to padding).
            if (inputs[b].Length == 0) throw new ArgumentException($"inputs: row {b} is empty; each input should at least end with </s>.", nameof(inputs));
            for (int t = 0; t < inputs[b].Length; t++)
            {
                if (inputs[b][t] < 0) throw new ArgumentException($"inputs: token id {inputs[b][t]} at row {b}, position {t} is negative.", nameof(inputs));
                ids[b * source + t] = inputs[b][t];
                mask[b * source + t] = 1;
            }
            for (int t = 0; t < labels[b].Length; t++)
            {
                if (labels[b][t] < 0 && labels[b][t] != IgnoreIndex)
                    throw new ArgumentException($"labels: label {labels[b][t]} at row {b}, position {t} is negative and not the ignore index -100.", nameof(labels));
                paddedLabels[b * target + t] = labels[b][t];
            }
        }
        return FromPadded(batch, source, target, ids, mask, paddedLabels, decoderStartTokenId);
    }

    /// <summary>
    /// A batch from arrays already padded by HF's rules (e.g. a reference file's batch.input_ids, batch.attention_mask,
    /// batch.labels); decoder_input_ids are derived from the labels.
    /// </summary>
    public static TrainingBatch FromPadded(int batch, int sourceLength, int targetLength, int[] inputIds, int[] attentionMask, int[] labels, int decoderStartTokenId)
    {
        if (batch <= 0 || sourceLength <= 0 || targetLength <= 0)
            throw new ArgumentException($"batch: the shape ({batch}, {sourceLength}, {targetLength}) must be positive.", nameof(batch));
        if (inputIds.Length != batch * sourceLength) throw new ArgumentException($"input_ids: {inputIds.Length} ids, the shape needs {batch * sourceLength}.", "input_ids");
        if (attentionMask.Length != batch * sourceLength) throw new ArgumentException($"attention_mask: {attentionMask.Length} values, the shape needs {batch * sourceLength}.", "attention_mask");
        if (labels.Length != batch * targetLength) throw new ArgumentException($"labels: {labels.Length} labels, the shape needs {batch * targetLength}.", nameof(labels));
        for (int b = 0; b < batch; b++)
            if (Array.IndexOf(attentionMask, 1, b * sourceLength, sourceLength) < 0)
                throw new ArgumentException($"attention_mask: row {b} has no token (all 0); every row needs at least its </s>.", "attention_mask");
        // _shift_right: decoder_input_ids[:, 0] = start, [:, 1:] = labels[:, :-1], -100 → pad (0).
        var decoder = new int[batch * targetLength];
        for (int b = 0; b < batch; b++)
        {
            decoder[b * targetLength] = decoderStartTokenId;
            for (int t = 1; t < targetLength; t++)
            {
                int label = labels[b * targetLength + t - 1];
                decoder[b * targetLength + t] = label == IgnoreIndex ? 0 : label;
            }
        }
        return new TrainingBatch(batch, sourceLength, targetLength, inputIds, attentionMask, labels, decoder);
    }
}
