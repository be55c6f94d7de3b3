// Linear benchmarks: batch-1 decode GEMV per weight format (one weight, and a whole flan-t5 decoder step over
// distinct weights so they come from memory, not cache), and encoder GEMM. The scalar reference is the baseline.
using BenchmarkDotNet.Attributes;
using ManagedT5.Kernels;
using ManagedT5.Kernels.Cpu;
using ManagedT5.Kernels.Reference;

namespace ManagedT5.Bench;

/// <summary>One decode-time Linear (rows = 1): wi_0 [d_ff, d_model] and lm_head [vocab, d_model].</summary>
public class GemvBenchmarks : IWorkload
{
    private readonly ReferenceBackend _reference = new();
    private CpuBackend _cpu = null!, _single = null!;
    private WeightStore _store = null!;
    private IWeight _weight = null!;
    private IBuffer _x = null!, _y = null!;

    [Params("small", "base")] public string Model { get; set; } = "small";
    [Params("wi", "lm_head")] public string Layer { get; set; } = "wi";
    [Params(WeightFormat.F32, WeightFormat.BF16, WeightFormat.Int8, WeightFormat.F16)] public WeightFormat Format { get; set; }

    private (int Out, int In) Dims => Layer == "wi" ? (T5Shape.Of(Model).DFf, T5Shape.Of(Model).DModel) : (T5Shape.Of(Model).Vocab, T5Shape.Of(Model).DModel);
    public double BytesPerOperation => (double)Dims.Out * Dims.In * CpuWeight.BytesPerElement(Format) + (Format == WeightFormat.Int8 ? Dims.Out * 4 : 0);
    public double FlopsPerOperation => 2.0 * Dims.Out * Dims.In;

    [GlobalSetup]
    public void Setup()
    {
        _cpu = new CpuBackend();
        _single = new CpuBackend(1);
        _store = new WeightStore();
        _weight = _store.Create(_cpu, Dims.Out, Dims.In, Format);
        _x = WeightStore.Random(_cpu, Dims.In);
        _y = _cpu.Allocate(Dims.Out);
    }

    [GlobalCleanup]
    public void Cleanup() { _store.Dispose(); _cpu.Dispose(); _single.Dispose(); }

    [Benchmark(Baseline = true)] public void Reference() => _reference.Linear(_x, _weight, _y, 1);
    [Benchmark] public void Cpu() => _cpu.Linear(_x, _weight, _y, 1);
    [Benchmark] public void CpuOneThread() => _single.Linear(_x, _weight, _y, 1);
}

/// <summary>Every Linear of one flan-t5 decoder step at batch 1 (lm_head included), each on its own weight: the
/// weights add up to more than the caches, so this is the bandwidth-bound number decode speed depends on.</summary>
public class DecodeStepGemvBenchmarks : IWorkload
{
    private readonly ReferenceBackend _reference = new();
    private CpuBackend _cpu = null!;
    private WeightStore _store = null!;
    private List<IWeight> _weights = null!;
    private IBuffer _x = null!, _y = null!;

    [Params("small")] public string Model { get; set; } = "small";
    [Params(WeightFormat.F32, WeightFormat.BF16, WeightFormat.Int8, WeightFormat.F16)] public WeightFormat Format { get; set; }

    public double BytesPerOperation => T5Shape.Of(Model).DecoderStepLinears()
        .Sum(d => (double)d.Out * d.In * CpuWeight.BytesPerElement(Format) + (Format == WeightFormat.Int8 ? d.Out * 4 : 0));
    public double FlopsPerOperation => T5Shape.Of(Model).DecoderStepLinears().Sum(d => 2.0 * d.Out * d.In);

    [GlobalSetup]
    public void Setup()
    {
        T5Shape shape = T5Shape.Of(Model);
        _cpu = new CpuBackend();
        _store = new WeightStore();
        _weights = shape.DecoderStepLinears().Select((d, i) => _store.Create(_cpu, d.Out, d.In, Format, seed: i)).ToList();
        _x = WeightStore.Random(_cpu, Math.Max(shape.DFf, shape.DModel));
        _y = _cpu.Allocate(shape.Vocab);
    }

    [GlobalCleanup]
    public void Cleanup() { _store.Dispose(); _cpu.Dispose(); }

    [Benchmark(Baseline = true)]
    public void Reference() { foreach (IWeight w in _weights) _reference.Linear(_x, w, _y, 1); }

    [Benchmark]
    public void Cpu() { foreach (IWeight w in _weights) _cpu.Linear(_x, w, _y, 1); }
}

/// <summary>Encoder-time Linear: rows = 128 tokens. Shapes "rows x in x out": small wi (512 -> 1024), small wo
/// (1024 -> 512), base wi (768 -> 2048).</summary>
public class GemmBenchmarks : IWorkload
{
    private readonly ReferenceBackend _reference = new();
    private CpuBackend _cpu = null!;
    private WeightStore _store = null!;
    private IWeight _weight = null!;
    private IBuffer _x = null!, _y = null!;
    private int _rows;

    [Params("128x512x1024", "128x1024x512", "128x768x2048")] public string Shape { get; set; } = "128x512x1024";
    [Params(WeightFormat.F32, WeightFormat.BF16, WeightFormat.Int8)] public WeightFormat Format { get; set; }

    private int[] Dims => Shape.Split('x').Select(int.Parse).ToArray();
    public double BytesPerOperation => 0;
    public double FlopsPerOperation => 2.0 * Dims[0] * Dims[1] * Dims[2];

    [GlobalSetup]
    public void Setup()
    {
        _cpu = new CpuBackend();
        _store = new WeightStore();
        _weight = _store.Create(_cpu, Dims[2], Dims[1], Format);
        _x = WeightStore.Random(_cpu, Dims[0] * Dims[1]);
        _y = _cpu.Allocate(Dims[0] * Dims[2]);
        _rows = Dims[0];
    }

    [GlobalCleanup]
    public void Cleanup() { _store.Dispose(); _cpu.Dispose(); }

    [Benchmark(Baseline = true)] public void Reference() => _reference.Linear(_x, _weight, _y, _rows);
    [Benchmark] public void Cpu() => _cpu.Linear(_x, _weight, _y, _rows);
}
