// The backward pass stops at the lowest trained sublayer of each stack (as PyTorch's autograd stops at inputs that need
// no gradient): an adapter on a few upper modules gets exactly the gradients it gets when every Linear carries an
// adapter whose B is 0 (the same forward, the same dy everywhere; the extra modules add exact zeros), where the
// backward pass runs down to the embeddings.
using ManagedT5.Adapters;
using ManagedT5.Kernels;
using ManagedT5.Kernels.Cpu.Training;

namespace ManagedT5.Training.Tests;

public sealed class BackwardStopTests
{
    static T5TrainingModel Small(bool gated) => T5TrainingModel.CreateRandom(new T5Config
    {
        VocabSize = 64, DModel = 16, DKv = 4, DFf = 24, NumLayers = 3, NumDecoderLayers = 3, NumHeads = 2, RelativeAttentionNumBuckets = 8,
        RelativeAttentionMaxDistance = 16, FeedForwardProj = gated ? "gated-gelu" : "relu", DenseActivation = gated ? ActivationKind.GeluNew : ActivationKind.Relu,
        IsGatedAct = gated, TieWordEmbeddings = !gated, DropoutRate = 0.2,
    }, seed: 5, new TrainingModelOptions { Threads = 2 });

    [Theory]
    // Decoder modules only: the encoder's backward pass is skipped whole, the decoder's stops at block 1's self-attention.
    [InlineData(true, new[] { "decoder.block.1.layer.0.SelfAttention.q", "decoder.block.2.layer.2.DenseReluDense.wo" })]
    // Encoder block 1 and the decoder's first cross-attention: the encoder stops at block 1 (its input gets no dx).
    [InlineData(true, new[] { "encoder.block.1.layer.0.SelfAttention.v", "decoder.block.0.layer.1.EncDecAttention.q" })]
    // An FF input projection as the lowest: dx stops under block 1's feed-forward (sublayer 3), not its attention.
    [InlineData(false, new[] { "encoder.block.1.layer.1.DenseReluDense.wi", "decoder.block.2.layer.1.EncDecAttention.k" })]
    public void An_adapter_on_upper_modules_gets_the_gradients_of_a_full_backward_pass(bool gated, string[] modules)
    {
        using T5TrainingModel partial = Small(gated), whole = Small(gated);
        var config = new LoraConfig { R = 2, LoraAlpha = 4, LoraDropout = 0.3, TargetModules = ["q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo"] };
        var random = new Random(9);
        // Every Linear's A and B random (PEFT starts B at 0, which would leave every dA zero); B kept only on `modules`.
        var all = LoraAdapter.Create(config, whole.Modules, whole.Config, seed: 3).Modules
            .Select(m => (m.Module, m.A, B: modules.Contains(m.Module) ? [.. m.B.Select(_ => (float)(random.NextDouble() - 0.5))] : new float[m.B.Length]))
            .ToList();
        Assert.Equal(modules.Length, all.Count(m => modules.Contains(m.Module)));
        whole.AttachLoraCore(all, 2, 2f, 0.3);
        partial.AttachLoraCore([.. all.Where(m => modules.Contains(m.Module))], 2, 2f, 0.3);

        TrainingBatch batch = TrainingBatch.FromIds([[5, 17, 33, 9, 60, 1], [12, 40, 1]], [[7, 21, 1], [50, 3, 44, 1]], 0);
        ulong key = DropoutMask.RunKey(1, 3, 0);
        partial.ZeroGrad();
        whole.ZeroGrad();
        Assert.Equal(whole.ForwardBackward(batch, 1f, key), partial.ForwardBackward(batch, 1f, key));
        foreach (Parameter p in partial.TrainableParameters)
        {
            float[] expected = whole.Find(p.Name)!.Grad;
            Assert.True(expected.AsSpan().SequenceEqual(p.Grad), $"{p.Name}: the gradient differs from the full backward pass's");
            Assert.Contains(p.Grad, g => g != 0);
        }
    }
}
