// Random Flan-T5-shaped weights for the benchmarks, in native memory like a memory-mapped checkpoint, plus the
// model shapes the benchmarks are named after.
using System.Runtime.InteropServices;
using ManagedT5.Kernels;
using ManagedT5.Kernels.Cpu;

namespace ManagedT5.Bench;

/// <summary>The dimensions of the two checkpoints the benchmarks use.</summary>
public sealed record T5Shape(string Name, int DModel, int DKv, int Heads, int DFf, int Vocab, int DecoderLayers)
{
    /// <summary>heads * d_kv.</summary>
    public int Inner => Heads * DKv;

    /// <summary>google/flan-t5-small.</summary>
    public static readonly T5Shape Small = new("flan-t5-small", 512, 64, 6, 1024, 32128, 8);

    /// <summary>google/flan-t5-base.</summary>
    public static readonly T5Shape Base = new("flan-t5-base", 768, 64, 12, 2048, 32128, 12);

    /// <summary>By name ("small" or "base").</summary>
    public static T5Shape Of(string name) => name == "base" ? Base : Small;

    /// <summary>(out, in) of every Linear one decoder step runs at batch 1, lm_head last: self-attention q, k, v, o;
    /// cross-attention q, o (its k, v are computed once from the encoder); gated FFN wi_0, wi_1, wo.</summary>
    public IEnumerable<(int Out, int In)> DecoderStepLinears()
    {
        for (int layer = 0; layer < DecoderLayers; layer++)
        {
            yield return (Inner, DModel); yield return (Inner, DModel); yield return (Inner, DModel); yield return (DModel, Inner);
            yield return (Inner, DModel); yield return (DModel, Inner);
            yield return (DFf, DModel); yield return (DFf, DModel); yield return (DModel, DFf);
        }
        yield return (Vocab, DModel);
    }
}

/// <summary>Random weights in native memory; disposing frees them.</summary>
public sealed unsafe class WeightStore : IDisposable
{
    private readonly List<nint> _memory = [];
    private readonly List<IWeight> _weights = [];

    /// <summary>A random (rows, cols) weight stored as F32 (or BF16/F16 when asked) and prepared as <paramref name="format"/>,
    /// starting <paramref name="misalign"/> bytes past a 64-byte boundary (a safetensors file aligns tensors to 8 bytes
    /// at most, so in-place weights usually start mid cache line).</summary>
    public IWeight Create(IBackend backend, int rows, int cols, WeightFormat format, int seed = 1, int misalign = 0)
    {
        DType stored = format switch { WeightFormat.BF16 => DType.BF16, WeightFormat.F16 => DType.F16, _ => DType.F32 };
        long count = (long)rows * cols;
        nint block = (nint)NativeMemory.AlignedAlloc((nuint)(count * stored.SizeOf() + 64), 64);
        _memory.Add(block);
        nint data = block + misalign;
        var random = new Random(seed);
        for (long i = 0; i < count; i++)
        {
            float value = (float)(random.NextDouble() * 0.2 - 0.1);
            switch (stored)
            {
                case DType.F32: ((float*)data)[i] = value; break;
                case DType.BF16: ((ushort*)data)[i] = DTypes.SingleToBFloat16(value); break;
                default: ((Half*)data)[i] = (Half)value; break;
            }
        }
        IWeight weight = backend.CreateWeight(new HostTensor($"w{_weights.Count}", stored, [rows, cols], data), format);
        _weights.Add(weight);
        return weight;
    }

    /// <summary>A buffer of random floats.</summary>
    public static IBuffer Random(IBackend backend, int length, int seed = 2)
    {
        var random = new Random(seed);
        var values = new float[length];
        for (int i = 0; i < length; i++) values[i] = (float)(random.NextDouble() * 2 - 1);
        IBuffer buffer = backend.Allocate(length);
        backend.Upload(values, buffer);
        return buffer;
    }

    public void Dispose()
    {
        foreach (IWeight weight in _weights) weight.Dispose();
        foreach (nint p in _memory) NativeMemory.AlignedFree((void*)p);
        _weights.Clear();
        _memory.Clear();
    }
}
