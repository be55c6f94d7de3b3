// Training speed on the flan-t5-small shape (random weights; batch 8, 128 input / 32 target tokens): full fine-tuning
// and LoRA (q, v; r 8) steps per second and tokens per second, printed. Slow: not in the default run.
using System.Diagnostics;
using ManagedT5.Adapters;

namespace ManagedT5.Training.Tests;

public sealed class TrainingModelSpeedTests(ITestOutputHelper output)
{
    /// <summary>google/flan-t5-small's config.</summary>
    internal static T5Config FlanT5Small => new()
    {
        VocabSize = 32128, DModel = 512, DKv = 64, DFf = 1024, NumLayers = 8, NumDecoderLayers = 8, NumHeads = 6,
        FeedForwardProj = "gated-gelu", DenseActivation = ManagedT5.Kernels.ActivationKind.GeluNew, IsGatedAct = true, TieWordEmbeddings = false,
        DropoutRate = 0,   // (the checkpoint's is 0.1) timed as the PyTorch peer runs; bench --quick-train 2 small dropout times dropout on
    };

    internal static TrainingBatch RandomBatch(int batch, int source, int target, int vocab, int seed)
    {
        var random = new Random(seed);
        var inputs = Enumerable.Range(0, batch).Select(_ => Enumerable.Range(0, source).Select(t => t == source - 1 ? 1 : random.Next(2, vocab)).ToArray()).ToList();
        var labels = Enumerable.Range(0, batch).Select(_ => Enumerable.Range(0, target).Select(t => t == target - 1 ? 1 : random.Next(2, vocab)).ToArray()).ToList();
        return TrainingBatch.FromIds(inputs, labels, 0);
    }

    [Theory, Trait("Category", "Slow")]
    [InlineData(false)]
    [InlineData(true)]
    public void FlanT5SmallShape(bool lora)
    {
        T5Config config = FlanT5Small;
        using T5TrainingModel model = T5TrainingModel.CreateRandom(config, seed: 1);
        if (lora) model.AttachLora(LoraAdapter.Create(new LoraConfig { R = 8, LoraAlpha = 16 }, model.Modules, config, seed: 2));
        TrainingBatch batch = RandomBatch(8, 128, 32, config.VocabSize, 3);
        model.ZeroGrad();
        model.ForwardBackward(batch);   // sizes the buffers
        const int steps = 3;
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < steps; i++) { model.ZeroGrad(); model.ForwardBackward(batch); }
        double seconds = clock.Elapsed.TotalSeconds / steps;
        output.WriteLine($"flan-t5-small shape, {(lora ? "LoRA q,v r8" : "full")}, {Environment.ProcessorCount} threads: {seconds:F2} s/step, " +
            $"{8 * 32 / seconds:F0} target tokens/s, {8 * (128 + 32) / seconds:F0} (input + target) tokens/s");
    }

    [Fact, Trait("Category", "Slow")]
    public void LinearGemmForms()
    {
        const int rows = 1024, inF = 512, outF = 1024;   // flan-t5-small's wi_0 at batch 8 × 128
        using var k = new ManagedT5.Kernels.Cpu.Training.TrainingKernels();
        var random = new Random(1);
        float[] R(int n) => [.. Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() - 0.5))];
        float[] x = R(rows * inF), w = R(outF * inF), y = R(rows * outF), dx = new float[rows * inF], dw = new float[outF * inF];
        foreach ((string name, Action op) in new (string, Action)[]
        {
            ("x·Wᵀ", () => k.LinearForward(x, w, y, rows, inF, outF)),
            ("dY·W", () => k.LinearBackwardInput(y, w, dx, rows, inF, outF)),
            ("dYᵀ·X", () => k.LinearBackwardWeight(y, x, dw, rows, inF, outF)),
        })
        {
            op();
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < 5; i++) op();
            output.WriteLine($"{name}: {2.0 * rows * inF * outF * 5 / clock.Elapsed.TotalSeconds / 1e9:F1} GFLOP/s on {k.Threads} threads");
        }
    }
}
