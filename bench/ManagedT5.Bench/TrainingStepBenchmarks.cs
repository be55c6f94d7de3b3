// Fine-tuning benchmarks: one training step (forward, loss, backward; no optimizer) on the flan-t5-small / -base
// shapes with random weights, batch 8, 128 input / 32 target tokens, full and LoRA (q, v; r 8); and the three GEMM
// forms of a Linear's training (x·Wᵀ, dY·W, dYᵀ·X) at an encoder FFN's shape.
using BenchmarkDotNet.Attributes;
using ManagedT5.Adapters;
using ManagedT5.Kernels;
using ManagedT5.Kernels.Cpu.Training;
using ManagedT5.Training;

namespace ManagedT5.Bench;

/// <summary>One training step: tokens/s = 8 · (128 + 32) / the step's time.</summary>
public class TrainingStepBenchmarks
{
    private T5TrainingModel _model = null!;
    private TrainingBatch _batch = null!;

    [Params("small", "base")] public string Model { get; set; } = "small";
    [Params("full", "lora")] public string Mode { get; set; } = "full";

    /// <summary>The HF config of google/flan-t5-small or -base.</summary>
    public static T5Config Config(string model)
    {
        T5Shape s = T5Shape.Of(model);
        return new T5Config
        {
            VocabSize = s.Vocab, DModel = s.DModel, DKv = s.DKv, DFf = s.DFf, NumLayers = s.DecoderLayers, NumDecoderLayers = s.DecoderLayers,
            NumHeads = s.Heads, FeedForwardProj = "gated-gelu", DenseActivation = ActivationKind.GeluNew, IsGatedAct = true, TieWordEmbeddings = false,
            DropoutRate = 0,   // as the PyTorch peer (bench/torch_train_peer.py) runs
        };
    }

    [GlobalSetup]
    public void Setup()
    {
        T5Config config = Config(Model);
        _model = T5TrainingModel.CreateRandom(config, seed: 1);
        if (Mode == "lora") _model.AttachLora(LoraAdapter.Create(new LoraConfig { R = 8, LoraAlpha = 16 }, _model.Modules, config, seed: 2));
        var random = new Random(3);
        int[] Row(int length) => [.. Enumerable.Range(0, length).Select(t => t == length - 1 ? 1 : random.Next(2, config.VocabSize))];
        _batch = TrainingBatch.FromIds([.. Enumerable.Range(0, 8).Select(_ => Row(128))], [.. Enumerable.Range(0, 8).Select(_ => Row(32))], 0);
        _model.ForwardBackward(_batch);
    }

    [GlobalCleanup]
    public void Cleanup() => _model.Dispose();

    [Benchmark]
    public float Step()
    {
        _model.ZeroGrad();
        return _model.ForwardBackward(_batch);
    }
}

/// <summary>The training GEMMs at rows 1024 (batch 8 × 128), in 512, out 1024 (flan-t5-small's wi_0).</summary>
public class TrainingMatMulBenchmarks : IWorkload
{
    private const int Rows = 1024, In = 512, Out = 1024;
    private TrainingKernels _kernels = null!;
    private float[] _x = null!, _w = null!, _y = null!, _dx = null!, _dw = null!;

    public double BytesPerOperation => 0;
    public double FlopsPerOperation => 2.0 * Rows * In * Out;

    [GlobalSetup]
    public void Setup()
    {
        _kernels = new TrainingKernels();
        var random = new Random(1);
        float[] R(int n) => [.. Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() - 0.5))];
        _x = R(Rows * In); _w = R(Out * In); _y = R(Rows * Out); _dx = new float[Rows * In]; _dw = new float[Out * In];
    }

    [GlobalCleanup]
    public void Cleanup() => _kernels.Dispose();

    [Benchmark] public void Forward() => _kernels.LinearForward(_x, _w, _y, Rows, In, Out);
    [Benchmark] public void BackwardInput() => _kernels.LinearBackwardInput(_y, _w, _dx, Rows, In, Out);
    [Benchmark] public void BackwardWeight() => _kernels.LinearBackwardWeight(_y, _x, _dw, Rows, In, Out);
}
