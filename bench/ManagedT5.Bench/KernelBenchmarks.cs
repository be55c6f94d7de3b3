// Benchmarks of the non-Linear kernels at flan-t5-small and flan-t5-base shapes, each against the scalar reference
// (Baseline): RmsNorm, gated gelu_new, residual Add, fused attention (encoder, and one cached decode step), the
// relative position bias, and greedy argmax over the vocabulary.
using BenchmarkDotNet.Attributes;
using ManagedT5.Kernels;
using ManagedT5.Kernels.Cpu;
using ManagedT5.Kernels.Reference;

namespace ManagedT5.Bench;

/// <summary>Shared setup: both backends and a model shape.</summary>
public abstract class KernelBenchmark
{
    protected readonly ReferenceBackend ReferenceBackend = new();
    protected CpuBackend CpuBackend = null!;
    protected WeightStore Store = null!;

    [Params("small", "base")] public string Model { get; set; } = "small";

    protected T5Shape Shape => T5Shape.Of(Model);

    [GlobalSetup]
    public void Setup()
    {
        CpuBackend = new CpuBackend();
        Store = new WeightStore();
        Prepare();
    }

    protected abstract void Prepare();

    [GlobalCleanup]
    public void Cleanup() { Store.Dispose(); CpuBackend.Dispose(); }
}

/// <summary>T5LayerNorm over 128 encoder rows of d_model.</summary>
public class RmsNormBenchmarks : KernelBenchmark
{
    private const int Rows = 128;
    private IWeight _gamma = null!;
    private IBuffer _x = null!, _y = null!;

    protected override void Prepare()
    {
        _gamma = Store.Create(CpuBackend, 1, Shape.DModel, WeightFormat.F32);
        _x = WeightStore.Random(CpuBackend, Rows * Shape.DModel);
        _y = CpuBackend.Allocate(Rows * Shape.DModel);
    }

    [Benchmark(Baseline = true)] public void Reference() => ReferenceBackend.RmsNorm(_x, _gamma, _y, Rows, 1e-6f);
    [Benchmark] public void Cpu() => CpuBackend.RmsNorm(_x, _gamma, _y, Rows, 1e-6f);
}

/// <summary>gelu_new(wi_0 x) * wi_1 x over 128 rows of d_ff (the gated FFN's activation). The op works in place, so
/// each call first restores the gate from a copy (the same 512 KB-2 MB copy in both benchmarks) to keep the values
/// realistic instead of decaying into subnormals.</summary>
public class ActivationBenchmarks : KernelBenchmark
{
    private IBuffer _gate = null!, _up = null!;
    private float[] _source = null!;
    private int _length;

    protected override void Prepare()
    {
        _length = 128 * Shape.DFf;
        _up = WeightStore.Random(CpuBackend, _length, seed: 3);
        _gate = WeightStore.Random(CpuBackend, _length);
        _source = new float[_length];
        CpuBackend.Download(_gate, _source);
    }

    [Benchmark(Baseline = true)]
    public void Reference()
    {
        ReferenceBackend.Upload(_source, _gate);
        ReferenceBackend.Activate(_gate, _up, ActivationKind.GeluNew, _length);
    }

    [Benchmark]
    public void Cpu()
    {
        CpuBackend.Upload(_source, _gate);
        CpuBackend.Activate(_gate, _up, ActivationKind.GeluNew, _length);
    }
}

/// <summary>Residual add of 128 rows of d_model.</summary>
public class AddBenchmarks : KernelBenchmark
{
    private IBuffer _a = null!, _b = null!;
    private int _length;

    protected override void Prepare()
    {
        _length = 128 * Shape.DModel;
        _a = WeightStore.Random(CpuBackend, _length);
        _b = WeightStore.Random(CpuBackend, _length, seed: 3);
    }

    [Benchmark(Baseline = true)] public void Reference() => ReferenceBackend.Add(_a, _b, _length);
    [Benchmark] public void Cpu() => CpuBackend.Add(_a, _b, _length);
}

/// <summary>Fused attention for the encoder's self-attention over 128 tokens, with bias and a padding mask.</summary>
public class AttentionEncoderBenchmarks : KernelBenchmark
{
    private IBuffer _q = null!, _k = null!, _v = null!, _o = null!, _bias = null!, _mask = null!;
    private AttentionShape _shape;

    protected override void Prepare()
    {
        _shape = new AttentionShape(1, Shape.Heads, Shape.DKv, 128, 128, 128);
        int rows = 128 * Shape.Inner;
        _q = WeightStore.Random(CpuBackend, rows);
        _k = WeightStore.Random(CpuBackend, rows, seed: 3);
        _v = WeightStore.Random(CpuBackend, rows, seed: 4);
        _o = CpuBackend.Allocate(rows);
        _bias = WeightStore.Random(CpuBackend, Shape.Heads * 128 * 128, seed: 5);
        _mask = CpuBackend.Allocate(128);
        CpuBackend.Upload(Enumerable.Range(0, 128).Select(j => j < 120 ? 1f : 0f).ToArray(), _mask);
    }

    [Benchmark(Baseline = true)] public void Reference() => ReferenceBackend.Attention(_q, _k, _v, _o, _shape, _bias, _mask);
    [Benchmark] public void Cpu() => CpuBackend.Attention(_q, _k, _v, _o, _shape, _bias, _mask);
}

/// <summary>Fused attention for one decode step: one query against 64 cached keys, causal, with bias.</summary>
public class AttentionDecodeBenchmarks : KernelBenchmark
{
    private IBuffer _q = null!, _k = null!, _v = null!, _o = null!, _bias = null!;
    private AttentionShape _shape;

    protected override void Prepare()
    {
        _shape = new AttentionShape(1, Shape.Heads, Shape.DKv, 1, 64, 128, Causal: true, QueryOffset: 63);
        int rows = 128 * Shape.Inner;
        _q = WeightStore.Random(CpuBackend, Shape.Inner);
        _k = WeightStore.Random(CpuBackend, rows, seed: 3);
        _v = WeightStore.Random(CpuBackend, rows, seed: 4);
        _o = CpuBackend.Allocate(Shape.Inner);
        _bias = WeightStore.Random(CpuBackend, Shape.Heads * 64, seed: 5);
    }

    [Benchmark(Baseline = true)] public void Reference() => ReferenceBackend.Attention(_q, _k, _v, _o, _shape, _bias, null);
    [Benchmark] public void Cpu() => CpuBackend.Attention(_q, _k, _v, _o, _shape, _bias, null);
}

/// <summary>Relative position bias for a 128 x 128 encoder block.</summary>
public class PositionBiasBenchmarks : KernelBenchmark
{
    private IWeight _table = null!;
    private IBuffer _output = null!;

    protected override void Prepare()
    {
        _table = Store.Create(CpuBackend, 32, Shape.Heads, WeightFormat.F32);
        _output = CpuBackend.Allocate(Shape.Heads * 128 * 128);
    }

    [Benchmark(Baseline = true)] public void Reference() => ReferenceBackend.PositionBias(_table, _output, 128, 128, 0, true, 32, 128);
    [Benchmark] public void Cpu() => CpuBackend.PositionBias(_table, _output, 128, 128, 0, true, 32, 128);
}

/// <summary>Greedy decoding's argmax over 4 rows of 32128 logits.</summary>
public class ArgMaxBenchmarks : KernelBenchmark
{
    private IBuffer _logits = null!;
    private readonly int[] _result = new int[4];

    protected override void Prepare() => _logits = WeightStore.Random(CpuBackend, 4 * Shape.Vocab);

    [Benchmark(Baseline = true)] public void Reference() => ReferenceBackend.ArgMax(_logits, 4, Shape.Vocab, _result);
    [Benchmark] public void Cpu() => CpuBackend.ArgMax(_logits, 4, Shape.Vocab, _result);
}
