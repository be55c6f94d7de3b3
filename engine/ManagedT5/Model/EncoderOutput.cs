// The encoder's result for one batch: last hidden state and the padding mask, kept on the backend.
using ManagedT5.Kernels;

namespace ManagedT5.Model;

/// <summary>Encoder output for a batch: hidden [batch, seq, d_model] and key mask [batch, seq] (1 keep, 0 pad).</summary>
public sealed class EncoderOutput : IDisposable
{
    /// <summary>Batch entries.</summary>
    public int Batch { get; }
    /// <summary>Sequence length (padded).</summary>
    public int SequenceLength { get; }
    /// <summary>Width of each position.</summary>
    public int DModel { get; }
    /// <summary>encoder_last_hidden_state [batch, seq, d_model].</summary>
    public IBuffer Hidden { get; }
    /// <summary>Attention mask as floats [batch, seq].</summary>
    public IBuffer Mask { get; }

    internal EncoderOutput(int batch, int sequenceLength, int dModel, IBuffer hidden, IBuffer mask)
    {
        Batch = batch;
        SequenceLength = sequenceLength;
        DModel = dModel;
        Hidden = hidden;
        Mask = mask;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Hidden.Dispose();
        Mask.Dispose();
    }
}
