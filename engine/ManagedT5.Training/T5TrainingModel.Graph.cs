// The training forward pass (saving what the backward pass needs) and the backward pass of T5TrainingModel, in the order
// of modeling_t5.py: embed → per block [self-attention, (cross-attention), feed-forward], each x + F(RMSNorm(x)) →
// final_layer_norm; the head (× d_model^-0.5 when tied); token cross-entropy. Buffers grow to the largest batch shape seen.
// While training, dropout where HF's T5 drops (embeddings, attention weights, each sublayer's output, the feed-forward's
// hidden layer, after final_layer_norm) and on LoRA's input; the backward pass regenerates each mask from its key.
using System.Numerics.Tensors;
using ManagedT5.Kernels;
using ManagedT5.Kernels.Cpu.Training;

namespace ManagedT5.Training;

public sealed partial class T5TrainingModel
{
    private (int Batch, int Source, int Target) _shape;
    private StackActivations _enc = null!, _dec = null!;
    // Scratch of the backward pass, reused by every layer. n = max(batch·source, batch·target) rows.
    private float[] _dh = [], _dn = [], _dq = [], _dk = [], _dv = [], _dContext = [], _dA = [], _dB = [], _dG = [], _dEncoder = [], _loraT = [];
    private float[] _headInput = [], _dHeadInput = [], _logits = [];   // [batch·target, d_model], [batch·target, vocab]
    private float[] _dropped = [], _loraX = [];   // a sublayer's output or its gradient before dropout [n, d]; LoRA's dropout(x) [n, max in]

    // The pass under way: its dropout rates (0 in evaluation) and the key its masks hash (ForwardBackward's dropoutKey).
    private double _rate, _loraRate;
    private ulong _dropoutKey;

    /// <summary>Where a stack drops (with the stack and sublayer, it names a site of the pass).</summary>
    private enum DropoutKind { Embedding, Probs, Output, Hidden, Final }

    /// <summary>The mask key of one dropout site of this pass: stack, sublayer and kind; LoRA's per Linear.</summary>
    private ulong DropoutSite(Stack stack, int sublayer, DropoutKind kind) =>
        DropoutMask.SiteKey(_dropoutKey, ((stack.IsDecoder ? 1 : 0) << 24) | (sublayer << 4) | (int)kind);

    private ulong DropoutSite(Linear lora) => DropoutMask.SiteKey(_dropoutKey, (2 << 24) | (lora.Index << 4));

    /// <summary>In place: <paramref name="x"/> = dropout(x) at the site (forward), or its gradient through the same mask.</summary>
    private void Drop(Span<float> x, ulong site) => _k.Dropout(x, x, _rate, site);

    /// <summary>What one sublayer saves: its residual input x [n, d], RMSNorm(x) [n, d] and 1/rms [n]; attention: q
    /// [n, inner], k, v [keys, inner], context [n, inner], probs [batch, heads, n/batch, keys/batch]; feed-forward: wi /
    /// wi_0 output A [n, d_ff], wi_1 output B [n, d_ff], activation output G [n, d_ff].</summary>
    private sealed class SublayerActivations
    {
        public float[] Input = [], Normed = [], InverseRms = [], Q = [], K = [], V = [], Context = [], Probs = [], A = [], B = [], G = [];
    }

    /// <summary>A stack's saved tensors: each sublayer's, the last residual Output [n, d], Final = final_layer_norm(Output)
    /// and its 1/rms; per bias-owning sublayer, the position bias [heads, len, len] and its gradient.</summary>
    private sealed class StackActivations
    {
        public SublayerActivations[] Sublayers = [];
        public float[] Output = [], Final = [], FinalInverseRms = [];
        public float[][] Bias = [], DBias = [];
    }

    private float HeadScale => (float)Math.Pow(Config.DModel, -0.5);

    /// <summary>
    /// Forward and backward on <paramref name="batch"/>: returns the mean token cross-entropy over labels != -100 and
    /// ADDS <paramref name="gradScale"/>·dLoss/dparam into each trainable parameter's <see cref="Parameter.Grad"/>
    /// (gradient accumulation: call <see cref="ZeroGrad"/> between optimizer steps). This is training: dropout is applied
    /// (<see cref="T5Config.DropoutRate"/>, lora_dropout) with masks that are a function of <paramref name="dropoutKey"/>
    /// alone: give each pass its own, e.g. <see cref="DropoutMask.RunKey"/>(seed, step, micro-batch) as the trainer does.
    /// </summary>
    public float ForwardBackward(TrainingBatch batch, float gradScale = 1f, ulong dropoutKey = 0)
    {
        Train(dropoutKey);
        Forward(batch);
        int b = batch.Batch, s = batch.SourceLength, t = batch.TargetLength, d = Config.DModel, vocab = Config.VocabSize;
        int count = CountTargets(batch);
        int nt = b * t, ns = b * s;
        Span<float> logits = _logits.AsSpan(0, nt * vocab);
        double sum = _k.CrossEntropy(logits, batch.Labels, vocab, gradScale / count, writeGradient: true, out _);

        // Head: logits = headInput·Wᵀ (W = lm_head, or shared when tied); dlogits now sits in _logits.
        _k.LinearBackwardInput(logits, _head.Value, _dHeadInput, nt, d, vocab);
        if (_head.Trainable) _k.LinearBackwardWeight(logits, _headInput, _head.Grad, nt, d, vocab);
        if (Modules.TiedLmHead) TensorPrimitives.Multiply(_dHeadInput, HeadScale, _dHeadInput);
        if (_rate > 0) Drop(_dHeadInput.AsSpan(0, nt * d), DropoutSite(_decoder, 0, DropoutKind.Final));

        // Decoder, from final_layer_norm down to its embeddings (or its lowest trained sublayer); cross-attention adds
        // into _dEncoder when anything in or under the encoder is trained, and then every cross-attention sublayer
        // (the lowest is block 0's) must be reached.
        int encoderLowest = LowestTrained(_encoder);
        bool encoderGradient = encoderLowest < _encoder.Sublayers.Length || _encoder.FinalNorm.Trainable;
        int decoderLowest = LowestTrained(_decoder);
        if (encoderGradient) decoderLowest = Math.Min(decoderLowest, Array.FindIndex(_decoder.Sublayers, x => x.CrossAttention is not null));
        Array.Clear(_dh);
        Array.Clear(_dEncoder);
        _k.RmsNormBackward(_dec.Output, _decoder.FinalNorm.Value, _dec.FinalInverseRms, _dHeadInput, nt, d, _dh.AsSpan(0, nt * d), GradOf(_decoder.FinalNorm));
        StackBackward(_decoder, _dec, batch, t, decoderLowest, encoderGradient);
        if (_shared.Trainable) EmbeddingBackward(_decoder, batch.DecoderInputIds, _dh.AsSpan(0, nt * d));
        if (!encoderGradient) return (float)(sum / count);

        // Encoder, from its final_layer_norm (whose output fed every cross-attention's k and v).
        Array.Clear(_dh);
        if (_rate > 0) Drop(_dEncoder.AsSpan(0, ns * d), DropoutSite(_encoder, 0, DropoutKind.Final));
        _k.RmsNormBackward(_enc.Output, _encoder.FinalNorm.Value, _enc.FinalInverseRms, _dEncoder, ns, d, _dh.AsSpan(0, ns * d), GradOf(_encoder.FinalNorm));
        StackBackward(_encoder, _enc, batch, s, encoderLowest, encoderGradient: false);
        if (_shared.Trainable) EmbeddingBackward(_encoder, batch.InputIds, _dh.AsSpan(0, ns * d));
        return (float)(sum / count);
    }

    /// <summary>Scatter-adds dEmbeddings (through the embedding dropout's mask) into shared.weight's gradient.</summary>
    private void EmbeddingBackward(Stack stack, int[] ids, Span<float> dh)
    {
        if (_rate > 0) Drop(dh, DropoutSite(stack, 0, DropoutKind.Embedding));
        _k.EmbeddingBackward(ids, dh, Config.DModel, _shared.Grad);
    }

    /// <summary>Forward only (evaluation): the mean token cross-entropy over labels != -100; no gradient is touched and
    /// nothing is dropped out.</summary>
    public float Loss(TrainingBatch batch)
    {
        Evaluate();
        Forward(batch);
        int count = CountTargets(batch);
        double sum = _k.CrossEntropy(_logits.AsSpan(0, batch.Batch * batch.TargetLength * Config.VocabSize), batch.Labels, Config.VocabSize, 0, writeGradient: false, out _);
        return (float)(sum / count);
    }

    /// <summary>Teacher-forced logits [Batch, TargetLength, vocab] of <paramref name="batch"/> (decoder_input_ids from its labels).</summary>
    public void Logits(TrainingBatch batch, Span<float> logits)
    {
        int size = batch.Batch * batch.TargetLength * Config.VocabSize;
        if (logits.Length < size) throw new ArgumentException($"logits: holds {logits.Length} floats; [{batch.Batch}, {batch.TargetLength}, {Config.VocabSize}] needs {size}.", nameof(logits));
        Evaluate();
        Forward(batch);
        _logits.AsSpan(0, size).CopyTo(logits);
    }

    /// <summary>The loss of <see cref="ForwardBackward"/>'s forward pass (dropout on, the masks of
    /// <paramref name="dropoutKey"/>) without gradients: for finite-difference checks of the backward pass.</summary>
    internal double TrainingLoss(TrainingBatch batch, ulong dropoutKey)
    {
        Train(dropoutKey);
        Forward(batch);
        int count = CountTargets(batch);
        return _k.CrossEntropy(_logits.AsSpan(0, batch.Batch * batch.TargetLength * Config.VocabSize), batch.Labels, Config.VocabSize, 0, writeGradient: false, out _) / count;
    }

    private void Train(ulong dropoutKey) => (_rate, _loraRate, _dropoutKey) = (Config.DropoutRate, _lora?.Config.LoraDropout ?? 0, dropoutKey);

    private void Evaluate() => (_rate, _loraRate, _dropoutKey) = (0, 0, 0);

    private static int CountTargets(TrainingBatch batch)
    {
        int count = 0;
        foreach (int label in batch.Labels) if (label != TrainingBatch.IgnoreIndex) count++;
        if (count == 0) throw new ArgumentException("labels: every label of the batch is -100, so the loss has no target token to average over.", "labels");
        return count;
    }

    private static Span<float> GradOf(Parameter p) => p.Trainable ? p.Grad : default;

    // ------------------------------------------------ forward

    private void Forward(TrainingBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        int vocab = Config.VocabSize;
        foreach (int id in batch.InputIds) if ((uint)id >= (uint)vocab) throw new ArgumentException($"input_ids: token id {id} is outside the vocabulary (0..{vocab - 1}).", "input_ids");
        foreach (int id in batch.DecoderInputIds) if ((uint)id >= (uint)vocab) throw new ArgumentException($"labels: token id {id} is outside the vocabulary (0..{vocab - 1}).", "labels");
        Prepare(batch.Batch, batch.SourceLength, batch.TargetLength);
        int b = batch.Batch, t = batch.TargetLength, d = Config.DModel, nt = b * t;
        StackForward(_encoder, _enc, batch.InputIds, batch, batch.SourceLength);
        StackForward(_decoder, _dec, batch.DecoderInputIds, batch, t);
        // lm_head; a tied head first scales by d_model^-0.5 (modeling_t5.py).
        if (Modules.TiedLmHead) TensorPrimitives.Multiply(_dec.Final.AsSpan(0, nt * d), HeadScale, _headInput);
        else _dec.Final.AsSpan(0, nt * d).CopyTo(_headInput);
        _k.LinearForward(_headInput, _head.Value, _logits, nt, d, vocab);
    }

    private void StackForward(Stack stack, StackActivations a, int[] ids, TrainingBatch batch, int length)
    {
        int b = batch.Batch, n = b * length, d = Config.DModel, ff = Config.DFf, heads = Config.NumHeads, dKv = Config.DKv, source = batch.SourceLength;
        _k.Embedding(ids, _shared.Value, d, a.Sublayers[0].Input);
        if (_rate > 0) Drop(a.Sublayers[0].Input.AsSpan(0, n * d), DropoutSite(stack, 0, DropoutKind.Embedding));
        for (int o = 0; o < stack.BiasOwners.Length; o++)
            _k.PositionBias(stack.Sublayers[stack.BiasOwners[o]].SelfAttention!.BiasTable!.Value, heads, length, length, bidirectional: !stack.IsDecoder,
                Config.RelativeAttentionNumBuckets, Config.RelativeAttentionMaxDistance, a.Bias[o]);
        for (int s = 0; s < stack.Sublayers.Length; s++)
        {
            Sublayer sub = stack.Sublayers[s];
            SublayerActivations x = a.Sublayers[s];
            float[] y = s + 1 < stack.Sublayers.Length ? a.Sublayers[s + 1].Input : a.Output;
            _k.RmsNorm(x.Input, sub.Norm.Value, n, d, Config.LayerNormEpsilon, x.Normed, x.InverseRms);
            x.Input.AsSpan(0, n * d).CopyTo(y);   // the residual: y = x + F(norm(x))
            if (sub.SelfAttention is { } self)
            {
                Apply(self.Q, x.Normed, x.Q, n);
                Apply(self.K, x.Normed, x.K, n);
                Apply(self.V, x.Normed, x.V, n);
                // Encoder: padding keys masked, bidirectional bias. Decoder: causal, one-directional bias.
                _k.Attention(x.Q, x.K, x.V, a.Bias[Array.IndexOf(stack.BiasOwners, sub.BiasOwner)], stack.IsDecoder ? default : batch.AttentionMask,
                    causal: stack.IsDecoder, b, heads, dKv, length, length, x.Probs, x.Context, _rate, DropoutSite(stack, s, DropoutKind.Probs));
                Residual(self.O, x.Context, y, n, DropoutSite(stack, s, DropoutKind.Output));
            }
            else if (sub.CrossAttention is { } cross)
            {
                // q from the decoder, k and v from the encoder's output; no position bias; encoder padding masked.
                Apply(cross.Q, x.Normed, x.Q, n);
                Apply(cross.K, _enc.Final, x.K, b * source);
                Apply(cross.V, _enc.Final, x.V, b * source);
                _k.Attention(x.Q, x.K, x.V, default, batch.AttentionMask, causal: false, b, heads, dKv, length, source, x.Probs, x.Context,
                    _rate, DropoutSite(stack, s, DropoutKind.Probs));
                Residual(cross.O, x.Context, y, n, DropoutSite(stack, s, DropoutKind.Output));
            }
            else if (sub.Wi0 is not null)
            {
                // T5DenseGatedActDense: wo(gelu_new(wi_0 x) * wi_1 x)
                Apply(sub.Wi0, x.Normed, x.A, n);
                Apply(sub.Wi1!, x.Normed, x.B, n);
                _k.GatedGeluNew(x.A.AsSpan(0, n * ff), x.B.AsSpan(0, n * ff), x.G);
                if (_rate > 0) Drop(x.G.AsSpan(0, n * ff), DropoutSite(stack, s, DropoutKind.Hidden));   // G is saved dropped
                Residual(sub.Wo!, x.G, y, n, DropoutSite(stack, s, DropoutKind.Output));
            }
            else
            {
                // T5DenseActDense: wo(act(wi x)), act = ReLU or gelu_new
                Apply(sub.Wi!, x.Normed, x.A, n);
                if (Config.DenseActivation == ActivationKind.Relu) _k.Relu(x.A.AsSpan(0, n * ff), x.G); else _k.GeluNew(x.A.AsSpan(0, n * ff), x.G);
                if (_rate > 0) Drop(x.G.AsSpan(0, n * ff), DropoutSite(stack, s, DropoutKind.Hidden));   // G is saved dropped
                Residual(sub.Wo!, x.G, y, n, DropoutSite(stack, s, DropoutKind.Output));
            }
        }
        _k.RmsNorm(a.Output, stack.FinalNorm.Value, n, d, Config.LayerNormEpsilon, a.Final, a.FinalInverseRms);
        if (_rate > 0) Drop(a.Final.AsSpan(0, n * d), DropoutSite(stack, 0, DropoutKind.Final));   // Final is saved dropped
    }

    /// <summary>The residual add of a sublayer: y += dropout(linear(x)) (y += linear(x) straight into y without dropout).</summary>
    private void Residual(Linear linear, ReadOnlySpan<float> x, Span<float> y, int rows, ulong site)
    {
        if (_rate == 0) { Apply(linear, x, y, rows, accumulate: true); return; }
        Span<float> output = _dropped.AsSpan(0, rows * linear.Out);
        Apply(linear, x, output, rows);
        _k.Dropout(output, y, _rate, site, accumulate: true);
    }

    /// <summary>Backward of <see cref="Residual"/>'s dropout: dLoss/d linear(x) = dropout(dh) with the forward's mask.</summary>
    private ReadOnlySpan<float> ResidualGradient(ReadOnlySpan<float> dh, ulong site)
    {
        if (_rate == 0) return dh;
        Span<float> d = _dropped.AsSpan(0, dh.Length);
        _k.Dropout(dh, d, _rate, site);
        return d;
    }

    /// <summary>y[rows, out] (+)= x·Wᵀ, plus scale·(x·Aᵀ)·Bᵀ under LoRA (scale·x·Aᵀ saved for the backward pass).</summary>
    private void Apply(Linear linear, ReadOnlySpan<float> x, Span<float> y, int rows, bool accumulate = false)
    {
        _k.LinearForward(x, linear.Weight.Value, y, rows, linear.In, linear.Out, accumulate);
        if (linear.LoraA is null) return;
        int r = linear.Rank;
        Span<float> saved = linear.Saved.AsSpan(0, rows * r);
        _k.LinearForward(LoraInput(linear, x, rows), linear.LoraA.Value, saved, rows, linear.In, r);
        TensorPrimitives.Multiply(saved, linear.LoraScale, saved);
        _k.LinearForward(saved, linear.LoraB!.Value, y, rows, r, linear.Out, accumulate: true);
    }

    // ------------------------------------------------ backward

    /// <summary>
    /// The lowest sublayer of <paramref name="stack"/> that holds a trainable parameter (norm, weight, LoRA A/B, bias
    /// table), -1 when shared.weight (the embeddings under sublayer 0) is trained, the sublayer count when nothing is.
    /// The backward pass stops there, as PyTorch's autograd stops at inputs that need no gradient: the sublayers below
    /// it are not visited, and its own input gradient (dx of its Linears, the norm's dh) is not computed.
    /// </summary>
    private int LowestTrained(Stack stack)
    {
        if (_shared.Trainable) return -1;
        for (int s = 0; s < stack.Sublayers.Length; s++)
        {
            Sublayer sub = stack.Sublayers[s];
            if (sub.Norm.Trainable || Trains(sub.Wi) || Trains(sub.Wi0) || Trains(sub.Wi1) || Trains(sub.Wo)
                || AttentionTrains(sub.SelfAttention) || AttentionTrains(sub.CrossAttention))
                return s;
        }
        return stack.Sublayers.Length;

        static bool Trains(Linear? l) => l is not null && (l.Weight.Trainable || l.LoraA?.Trainable == true || l.LoraB?.Trainable == true);
        static bool AttentionTrains(Attention? a) => a is not null && (Trains(a.Q) || Trains(a.K) || Trains(a.V) || Trains(a.O) || a.BiasTable?.Trainable == true);
    }

    /// <summary>Back through a stack's sublayers down to <paramref name="lowest"/> (<see cref="LowestTrained"/>, or lower
    /// where the caller needs it); on entry _dh holds dLoss/dOutput, on exit (lowest -1) dLoss/dEmbeddings. Cross-attention
    /// adds into _dEncoder when <paramref name="encoderGradient"/>.</summary>
    private void StackBackward(Stack stack, StackActivations a, TrainingBatch batch, int length, int lowest, bool encoderGradient)
    {
        int b = batch.Batch, n = b * length, d = Config.DModel, ff = Config.DFf, heads = Config.NumHeads, dKv = Config.DKv, source = batch.SourceLength;
        foreach (float[] db in a.DBias) Array.Clear(db);
        Span<float> dh = _dh.AsSpan(0, n * d), dn = _dn.AsSpan(0, n * d);
        for (int s = stack.Sublayers.Length - 1; s >= Math.Max(lowest, 0); s--)
        {
            Sublayer sub = stack.Sublayers[s];
            SublayerActivations x = a.Sublayers[s];
            // dn (the gradient at the norm's output) feeds the norm's weight gradient and, through the norm, dh: below
            // the lowest trained sublayer neither is wanted.
            bool input = s > lowest || sub.Norm.Trainable;
            if (sub.SelfAttention is { } self)
            {
                Backward(self.O, ResidualGradient(dh, DropoutSite(stack, s, DropoutKind.Output)), x.Context, _dContext, n);
                int owner = Array.IndexOf(stack.BiasOwners, sub.BiasOwner);
                // The position bias is the owner's (block 0 in T5, every layer in umT5): its gradient adds up over layers.
                Span<float> dBias = stack.Sublayers[sub.BiasOwner].SelfAttention!.BiasTable!.Trainable ? a.DBias[owner] : default;
                // dScores overwrite the saved probabilities (no longer needed).
                _k.AttentionBackward(x.Q, x.K, x.V, x.Probs, _dContext, b, heads, dKv, length, length, _dq, _dk, _dv, x.Probs, dBias,
                    _rate, DropoutSite(stack, s, DropoutKind.Probs));
                Backward(self.Q, _dq, x.Normed, dn, n, input: input);
                Backward(self.K, _dk, x.Normed, dn, n, accumulate: true, input: input);
                Backward(self.V, _dv, x.Normed, dn, n, accumulate: true, input: input);
            }
            else if (sub.CrossAttention is { } cross)
            {
                Backward(cross.O, ResidualGradient(dh, DropoutSite(stack, s, DropoutKind.Output)), x.Context, _dContext, n);
                _k.AttentionBackward(x.Q, x.K, x.V, x.Probs, _dContext, b, heads, dKv, length, source, _dq, _dk, _dv, x.Probs, default,
                    _rate, DropoutSite(stack, s, DropoutKind.Probs));
                Backward(cross.Q, _dq, x.Normed, dn, n, input: input);
                Backward(cross.K, _dk, _enc.Final, _dEncoder, b * source, accumulate: true, input: encoderGradient);
                Backward(cross.V, _dv, _enc.Final, _dEncoder, b * source, accumulate: true, input: encoderGradient);
            }
            else if (sub.Wi0 is not null)
            {
                Backward(sub.Wo!, ResidualGradient(dh, DropoutSite(stack, s, DropoutKind.Output)), x.G, _dG, n);
                if (_rate > 0) Drop(_dG.AsSpan(0, n * ff), DropoutSite(stack, s, DropoutKind.Hidden));
                _k.GatedGeluNewBackward(x.A.AsSpan(0, n * ff), x.B, _dG.AsSpan(0, n * ff), _dA, _dB);
                Backward(sub.Wi0, _dA, x.Normed, dn, n, input: input);
                Backward(sub.Wi1!, _dB, x.Normed, dn, n, accumulate: true, input: input);
            }
            else
            {
                Backward(sub.Wo!, ResidualGradient(dh, DropoutSite(stack, s, DropoutKind.Output)), x.G, _dG, n);
                // Through the hidden dropout; ReLU's backward reads the dropped G: where it was dropped dG is 0 too.
                if (_rate > 0) Drop(_dG.AsSpan(0, n * ff), DropoutSite(stack, s, DropoutKind.Hidden));
                if (Config.DenseActivation == ActivationKind.Relu) _k.ReluBackward(x.G.AsSpan(0, n * ff), _dG.AsSpan(0, n * ff), _dA);
                else _k.GeluNewBackward(x.A.AsSpan(0, n * ff), _dG.AsSpan(0, n * ff), _dA);
                Backward(sub.Wi!, _dA, x.Normed, dn, n, input: input);
            }
            // Through the norm into the residual stream: dh += RMSNorm'(dn).
            if (input) _k.RmsNormBackward(x.Input, sub.Norm.Value, x.InverseRms, dn, n, d, dh, GradOf(sub.Norm));
        }
        for (int o = 0; o < stack.BiasOwners.Length; o++)
        {
            Parameter table = stack.Sublayers[stack.BiasOwners[o]].SelfAttention!.BiasTable!;
            if (table.Trainable)
                _k.PositionBiasBackward(a.DBias[o], heads, length, length, bidirectional: !stack.IsDecoder, Config.RelativeAttentionNumBuckets, Config.RelativeAttentionMaxDistance, table.Grad);
        }
    }

    /// <summary>LoRA's input: x, or (training with lora_dropout) dropout(x) in _loraX, the same mask in both passes.</summary>
    private ReadOnlySpan<float> LoraInput(Linear linear, ReadOnlySpan<float> x, int rows)
    {
        if (_loraRate == 0) return x;
        Span<float> dropped = _loraX.AsSpan(0, rows * linear.In);
        _k.Dropout(x[..(rows * linear.In)], dropped, _loraRate, DropoutSite(linear));
        return dropped;
    }

    /// <summary>Backward of <see cref="Apply"/>: dW += dyᵀ·x (only when W is trained), dx (+)= dy·W; under LoRA
    /// t = scale·dy·B, dA += tᵀ·x, dB += dyᵀ·(scale·x·Aᵀ), dx += t·A (x and t·A through lora_dropout's mask).
    /// Without <paramref name="input"/> dx is left alone (nothing below needs it).</summary>
    private void Backward(Linear linear, ReadOnlySpan<float> dy, ReadOnlySpan<float> x, Span<float> dx, int rows, bool accumulate = false, bool input = true)
    {
        int inF = linear.In, outF = linear.Out;
        dy = dy[..(rows * outF)];
        x = x[..(rows * inF)];
        dx = dx[..(rows * inF)];
        if (linear.Weight.Trainable) _k.LinearBackwardWeight(dy, x, linear.Weight.Grad, rows, inF, outF);
        if (input) _k.LinearBackwardInput(dy, linear.Weight.Value, dx, rows, inF, outF, accumulate);
        if (linear.LoraA is null) return;
        int r = linear.Rank;
        Span<float> t = _loraT.AsSpan(0, rows * r);
        _k.MatMul(dy, rows, outF, false, linear.LoraB!.Value, r, t, accumulate: false);
        TensorPrimitives.Multiply(t, linear.LoraScale, t);
        if (linear.LoraA.Trainable) _k.MatMul(t, r, rows, true, LoraInput(linear, x, rows), inF, linear.LoraA.Grad, accumulate: true);
        if (linear.LoraB.Trainable) _k.MatMul(dy, outF, rows, true, linear.Saved.AsSpan(0, rows * r), r, linear.LoraB.Grad, accumulate: true);
        if (!input) return;
        if (_loraRate == 0) _k.MatMul(t, rows, r, false, linear.LoraA.Value, inF, dx, accumulate: true);
        else
        {
            Span<float> tA = _loraX.AsSpan(0, rows * inF);
            _k.MatMul(t, rows, r, false, linear.LoraA.Value, inF, tA, accumulate: false);
            _k.Dropout(tA, dx, _loraRate, DropoutSite(linear), accumulate: true);
        }
    }

    // ------------------------------------------------ buffers

    /// <summary>Sizes every saved tensor and scratch buffer for (batch, source, target) (grow-only); a no-op at the same shape.</summary>
    private void Prepare(int batch, int source, int target)
    {
        if (_shape == (batch, source, target)) return;
        Allocate(batch, source, target);   // apart, so that its closures cost nothing on the early return
    }

    private void Allocate(int batch, int source, int target)
    {
        // Grow-only: every buffer keeps its array when it is large enough, and the kernels read and write a prefix laid
        // out for the current shape, so alternating batch shapes allocate nothing once the largest has been seen.
        _shape = default;   // (_enc and _dec are null before the first batch: Activations creates them)
        int d = Config.DModel, inner = Config.InnerDim, ff = Config.DFf, heads = Config.NumHeads, vocab = Config.VocabSize;
        int ns = checked(batch * source), nt = checked(batch * target), n = Math.Max(ns, nt);
        if ((long)nt * vocab > Array.MaxLength)
            throw new ArgumentException($"batch: [{batch}, {target}] target tokens × vocab {vocab} logits do not fit one array; use a smaller batch.", "batch");
        _enc = Activations(_enc, _encoder, batch, source, source);
        _dec = Activations(_dec, _decoder, batch, target, source);
        Grow(ref _dh, n * d); Grow(ref _dn, n * d);
        Grow(ref _dq, n * inner); Grow(ref _dk, n * inner); Grow(ref _dv, n * inner); Grow(ref _dContext, n * inner);
        Grow(ref _dA, n * ff); Grow(ref _dB, n * ff); Grow(ref _dG, n * ff);
        Grow(ref _dEncoder, ns * d);
        Grow(ref _headInput, nt * d); Grow(ref _dHeadInput, nt * d);
        if (Config.DropoutRate > 0) Grow(ref _dropped, n * d);
        Grow(ref _logits, nt * vocab);
        int rank = 0;
        foreach (Linear linear in _linears.Values) rank = Math.Max(rank, linear.Rank);
        Grow(ref _loraT, n * rank);
        int loraIn = 0;
        foreach (Linear linear in _linears.Values) if (linear.Rank > 0) loraIn = Math.Max(loraIn, linear.In);
        if (_lora?.Config.LoraDropout > 0) Grow(ref _loraX, n * loraIn);
        foreach (Linear linear in _linears.Values)
            if (linear.Rank == 0) linear.Saved = [];
            else Grow(ref linear.Saved, n * linear.Rank);
        _shape = (batch, source, target);

        StackActivations Activations(StackActivations? a, Stack stack, int b, int length, int sourceLength)
        {
            int rows = b * length, keys = b * sourceLength;
            if (a is null)
            {
                a = new StackActivations { Sublayers = new SublayerActivations[stack.Sublayers.Length], Bias = new float[stack.BiasOwners.Length][], DBias = new float[stack.BiasOwners.Length][] };
                for (int s = 0; s < a.Sublayers.Length; s++) a.Sublayers[s] = new SublayerActivations();
                for (int o = 0; o < a.Bias.Length; o++) { a.Bias[o] = []; a.DBias[o] = []; }
            }
            Grow(ref a.Output, rows * d); Grow(ref a.Final, rows * d); Grow(ref a.FinalInverseRms, rows);
            for (int o = 0; o < a.Bias.Length; o++) { Grow(ref a.Bias[o], heads * length * length); Grow(ref a.DBias[o], heads * length * length); }
            for (int s = 0; s < stack.Sublayers.Length; s++)
            {
                Sublayer sub = stack.Sublayers[s];
                SublayerActivations x = a.Sublayers[s];
                Grow(ref x.Input, rows * d); Grow(ref x.Normed, rows * d); Grow(ref x.InverseRms, rows);
                if (sub.SelfAttention is not null)
                {
                    Grow(ref x.Q, rows * inner); Grow(ref x.K, rows * inner); Grow(ref x.V, rows * inner); Grow(ref x.Context, rows * inner);
                    Grow(ref x.Probs, b * heads * length * length);
                }
                else if (sub.CrossAttention is not null)
                {
                    Grow(ref x.Q, rows * inner); Grow(ref x.K, keys * inner); Grow(ref x.V, keys * inner); Grow(ref x.Context, rows * inner);
                    Grow(ref x.Probs, b * heads * length * sourceLength);
                }
                else
                {
                    Grow(ref x.A, rows * ff); Grow(ref x.G, rows * ff);
                    if (sub.Wi0 is not null) Grow(ref x.B, rows * ff);
                }
            }
            return a;
        }
    }

    /// <summary>Replaces <paramref name="buffer"/> by a zeroed array of <paramref name="size"/> when it is shorter.</summary>
    private static void Grow(ref float[] buffer, int size)
    {
        if (buffer.Length < size) buffer = new float[size];
    }
}
