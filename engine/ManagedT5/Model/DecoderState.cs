// Per-request decoder state: self-attention KV cache, cross-attention K/V (computed once per encoder output),
// work buffers sized up front, and the logits of the last call. One state per request: the model itself is shared.
using ManagedT5.Kernels;

namespace ManagedT5.Model;

/// <summary>A decoding session over one encoder output. Not thread-safe; the model that made it is.</summary>
public sealed class DecoderState : IDisposable
{
    internal readonly IBackend Backend;
    internal readonly T5Config Config;
    internal readonly IBuffer[] SelfKeys, SelfValues;     // per layer: [batch, capacity, inner]
    internal readonly IBuffer[] CrossKeys, CrossValues;   // per layer: [batch, enc_seq, inner]
    internal readonly IBuffer EncoderMask;                 // [batch, enc_seq]
    private IBuffer _scratch;                              // beam reordering: one layer's cache
    internal Workspace Work;

    /// <summary>Rows of the batch (prompts x beams).</summary>
    public int Batch { get; }
    /// <summary>Most positions the cache holds.</summary>
    public int Capacity { get; }
    /// <summary>Positions decoded so far (the cache's past length).</summary>
    public int Position { get; internal set; }
    /// <summary>Encoder sequence length.</summary>
    public int EncoderLength { get; }
    /// <summary>Logits of the last <see cref="T5Model.Decode"/> call: [batch, tokens, vocab_size].</summary>
    public IBuffer Logits => Work.Logits;

    internal DecoderState(IBackend backend, T5Config config, int batch, int capacity, int encoderLength,
        IBuffer encoderMask, int maxTokensPerCall)
    {
        Backend = backend;
        Config = config;
        Batch = batch;
        Capacity = capacity;
        EncoderLength = encoderLength;
        EncoderMask = encoderMask;
        // Sizes were checked by T5Model.StartDecoder (RequestSizes); checked here too, so a wrap can never size a buffer.
        int layers = config.NumDecoderLayers, cacheLength = checked(batch * capacity * config.InnerDim);
        int crossLength = checked(batch * encoderLength * config.InnerDim);
        SelfKeys = new IBuffer[layers];
        SelfValues = new IBuffer[layers];
        CrossKeys = new IBuffer[layers];
        CrossValues = new IBuffer[layers];
        for (int l = 0; l < layers; l++)
        {
            SelfKeys[l] = backend.Allocate(cacheLength);
            SelfValues[l] = backend.Allocate(cacheLength);
            CrossKeys[l] = backend.Allocate(crossLength);
            CrossValues[l] = backend.Allocate(crossLength);
        }
        _scratch = backend.Allocate(cacheLength);
        Work = new Workspace(backend, config, checked(batch * maxTokensPerCall), checked(Math.Min(maxTokensPerCall, capacity) * capacity), withLogits: true);
    }

    /// <summary>Grows the work buffers for a call of <paramref name="tokens"/> positions per row (rarely: teacher forcing).</summary>
    internal void EnsureWork(int tokens)
    {
        if (Work.Rows >= (long)Batch * tokens) return;
        if (RequestSizes.Decoder(Config, Batch, EncoderLength, Capacity, tokens, expanded: false).Problem is { } tooBig)
            throw new ArgumentException($"length: decoding {tokens} tokens per row at once: {tooBig.Describe()}. Decode fewer at a time.", "length");
        Work.Dispose();
        Work = new Workspace(Backend, Config, checked(Batch * tokens), checked(tokens * Capacity), withLogits: true);
    }

    /// <summary>Reorders the batch rows of the self-attention cache: row r takes the cache of row sourceRows[r]
    /// (beam search). Only the <see cref="Position"/> positions filled so far are copied (positions past them are
    /// written before they are read). Cross-attention K/V are left alone: beams of one prompt share them.</summary>
    public void Reorder(ReadOnlySpan<int> sourceRows)
    {
        if (sourceRows.Length != Batch) throw new ArgumentException($"Expected {Batch} source rows, got {sourceRows.Length}.", nameof(sourceRows));
        foreach (int row in sourceRows)
            if ((uint)row >= (uint)Batch) throw new ArgumentOutOfRangeException(nameof(sourceRows), row, $"Source rows must be in [0, {Batch}).");
        int filled = checked(Position * Config.InnerDim), rowStride = checked(Capacity * Config.InnerDim);
        if (filled == 0) return;
        for (int l = 0; l < SelfKeys.Length; l++)
        {
            Backend.GatherRows(SelfKeys[l], _scratch, sourceRows, filled, rowStride);
            (SelfKeys[l], _scratch) = (_scratch, SelfKeys[l]);
            Backend.GatherRows(SelfValues[l], _scratch, sourceRows, filled, rowStride);
            (SelfValues[l], _scratch) = (_scratch, SelfValues[l]);
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (IBuffer b in SelfKeys.Concat(SelfValues).Concat(CrossKeys).Concat(CrossValues)) b.Dispose();
        _scratch.Dispose();
        EncoderMask.Dispose();
        Work.Dispose();
    }
}

/// <summary>Activation buffers for one forward call of up to Rows positions, allocated once. Sizes are checked
/// (RequestSizes checks them first with a message naming the option; this is the last guard against a wrap).</summary>
internal sealed class Workspace : IDisposable
{
    public readonly int Rows;
    public readonly IBuffer Hidden, Normed, Query, Key, Value, Attention, Gate, Up, Bias;
    public readonly IBuffer Logits;

    public Workspace(IBackend backend, T5Config c, int rows, int biasPerHead, bool withLogits)
    {
        Rows = rows;
        checked
        {
            Hidden = backend.Allocate(rows * c.DModel);
            Normed = backend.Allocate(rows * c.DModel);
            Query = backend.Allocate(rows * c.InnerDim);
            Key = backend.Allocate(rows * c.InnerDim);
            Value = backend.Allocate(rows * c.InnerDim);
            Attention = backend.Allocate(rows * c.InnerDim);
            Gate = backend.Allocate(rows * c.DFf);
            Up = backend.Allocate(c.IsGatedAct ? rows * c.DFf : 1);
            Bias = backend.Allocate(c.NumHeads * biasPerHead);
            Logits = backend.Allocate(withLogits ? rows * c.VocabSize : 1);
        }
    }

    public void Dispose()
    {
        foreach (IBuffer b in new[] { Hidden, Normed, Query, Key, Value, Attention, Gate, Up, Bias, Logits }) b.Dispose();
    }
}

/// <summary>
/// The shared half of a continuous batch's decoder step (<see cref="T5Model.DecodeRows"/>): activations for up to
/// <see cref="MaxRows"/> rows, each row a separate <see cref="DecoderState"/> (batch 1) with its own KV cache, position
/// and encoder length, and the per-row argument arrays the step fills, all sized once so a step allocates nothing.
/// </summary>
internal sealed class DecoderRows : IDisposable
{
    private readonly IBackend _backend;
    private readonly T5Config _config;
    public readonly int MaxRows;
    public Workspace Work;                       // [MaxRows, ...]; Bias: [heads, KeyCapacity]
    public int KeyCapacity { get; private set; } // the longest self-attention a row may reach (its state's capacity)
    public readonly IBuffer[] SelfKeys, SelfValues, CrossKeys, CrossValues;   // per row: that row's layer-l buffers
    public readonly IBuffer?[] EncoderMasks;                                   // per row: [enc_seq_r]
    public readonly int[] Positions, KeyLengths, EncoderLengths;               // per row

    /// <summary>Whether the backend has the per-row ops; without them each row is decoded alone with its own state.</summary>
    public bool Batched { get; }

    public DecoderRows(IBackend backend, T5Config config, int maxRows)
    {
        _backend = backend;
        _config = config;
        MaxRows = maxRows;
        Batched = backend.Supports(BackendOp.AttentionPerRow) && backend.Supports(BackendOp.AppendToCachePerRow);
        KeyCapacity = 1;
        Work = new Workspace(backend, config, Batched ? maxRows : 1, KeyCapacity, withLogits: Batched);
        SelfKeys = new IBuffer[maxRows];
        SelfValues = new IBuffer[maxRows];
        CrossKeys = new IBuffer[maxRows];
        CrossValues = new IBuffer[maxRows];
        EncoderMasks = new IBuffer?[maxRows];
        Positions = new int[maxRows];
        KeyLengths = new int[maxRows];
        EncoderLengths = new int[maxRows];
    }

    /// <summary>Grows the position bias for a row whose cache holds <paramref name="capacity"/> positions (when a row
    /// joins, never during a step).</summary>
    public void EnsureKeyCapacity(int capacity)
    {
        if (!Batched || capacity <= KeyCapacity) return;
        Work.Dispose();
        KeyCapacity = Math.Max(capacity, Math.Min(2 * KeyCapacity, int.MaxValue / Math.Max(_config.NumHeads, 1)));
        Work = new Workspace(_backend, _config, MaxRows, KeyCapacity, withLogits: true);
    }

    /// <summary>Where row <paramref name="r"/>'s logits of the last step are: (buffer, offset of its vocab_size floats).</summary>
    public (IBuffer Buffer, int Offset) LogitsOf(int r, DecoderState state) =>
        Batched ? (Work.Logits, r * _config.VocabSize) : (state.Logits, 0);

    public void Dispose() => Work.Dispose();
}
