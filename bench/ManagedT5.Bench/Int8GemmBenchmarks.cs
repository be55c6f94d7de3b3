// Encoder GEMM with int8 weights at flan-t5-small shapes (128 tokens): the fp32 GEMM on an fp32 weight (baseline),
// the same GEMM on the int8 weight (widened to fp32 while packing), and Int8Gemm (activations quantized per row,
// multiplied with VPDPBUSD in int32). All three run on the same worker pool with every processor.
using BenchmarkDotNet.Attributes;
using ManagedT5.Kernels;
using ManagedT5.Kernels.Cpu;

namespace ManagedT5.Bench;

/// <summary>128 rows x in -> out: small wi (512 -> 1024), small wo (1024 -> 512), small q/k/v (512 -> 384).</summary>
public unsafe class Int8GemmBenchmarks : IWorkload
{
    private WorkerPool _pool = null!;
    private WeightStore _store = null!;
    private CpuWeight _f32 = null!, _int8 = null!;
    private float[] _x = null!, _y = null!;
    private int _rows;
    private static readonly KernelChoices Widening = new() { Int8Integer = false };   // Linear would otherwise pick Int8Gemm

    [Params("128x512x1024", "128x1024x512", "128x512x384")] public string Shape { get; set; } = "128x512x1024";

    private int[] Dims => Shape.Split('x').Select(int.Parse).ToArray();
    public double BytesPerOperation => 0;
    public double FlopsPerOperation => 2.0 * Dims[0] * Dims[1] * Dims[2];

    [GlobalSetup]
    public void Setup()
    {
        int[] dims = Dims;
        _rows = dims[0];
        _pool = new WorkerPool(Environment.ProcessorCount);
        _store = new WeightStore();
        // Same seed: the int8 weight is the fp32 one quantized.
        var backend = new CpuBackend(1);
        _f32 = (CpuWeight)_store.Create(backend, dims[2], dims[1], WeightFormat.F32, seed: 3);
        _int8 = (CpuWeight)_store.Create(backend, dims[2], dims[1], WeightFormat.Int8, seed: 3);
        backend.Dispose();
        var random = new Random(2);
        _x = Enumerable.Range(0, _rows * dims[1]).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        _y = new float[_rows * dims[2]];
    }

    [GlobalCleanup]
    public void Cleanup() { _store.Dispose(); _pool.Dispose(); }

    [Benchmark(Baseline = true)]
    public void F32Gemm()
    {
        fixed (float* x = _x, y = _y) LinearKernel.Run(_pool, SimdLevels.Best, KernelChoices.Production, x, _f32, y, _rows, accumulate: false);
    }

    [Benchmark]
    public void Int8Widened()
    {
        fixed (float* x = _x, y = _y) LinearKernel.Run(_pool, SimdLevels.Best, Widening, x, _int8, y, _rows, accumulate: false);
    }

    [Benchmark]
    public void Int8Vnni()
    {
        fixed (float* x = _x, y = _y) Int8Gemm.Run(_pool, SimdLevels.Best, x, WeightView.Of(_int8), y, _rows, accumulate: false);
    }
}
