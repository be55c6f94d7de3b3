// Shared helpers for the kernel parity tests: deterministic random data, host tensors in every stored dtype, the
// theory data for SIMD levels and weight formats, and the assertion over the one error measure (tests/Shared/Errors.cs).
using System.Runtime.InteropServices;
using ManagedT5.Kernels.Cpu;

namespace ManagedT5.Kernels.Tests;

/// <summary>Random inputs, tensors and the normalised error check.</summary>
internal static class TestData
{
    /// <summary>fp32 paths: max |actual - expected| / max |expected| must not exceed this.</summary>
    public const double Fp32Tolerance = 1e-5;

    /// <summary>Every SIMD level this machine runs, widest first.</summary>
    public static TheoryData<SimdLevel> Levels()
    {
        var data = new TheoryData<SimdLevel>();
        foreach (SimdLevel level in SimdLevels.Supported()) data.Add(level);
        return data;
    }

    /// <summary>Every weight format crossed with every SIMD level.</summary>
    public static TheoryData<WeightFormat, SimdLevel> FormatsAndLevels()
    {
        var data = new TheoryData<WeightFormat, SimdLevel>();
        foreach (WeightFormat format in Enum.GetValues<WeightFormat>())
            foreach (SimdLevel level in SimdLevels.Supported()) data.Add(format, level);
        return data;
    }

    /// <summary>Uniform values in [-scale, scale), reproducible from <paramref name="seed"/>.</summary>
    public static float[] Random(int length, int seed, float scale = 1f)
    {
        var random = new Random(seed);
        var values = new float[length];
        for (int i = 0; i < length; i++) values[i] = (float)(random.NextDouble() * 2 - 1) * scale;
        return values;
    }

    /// <summary>Asserts <see cref="Errors.RelativeError"/> &lt;= <paramref name="tolerance"/>, naming the case on failure.</summary>
    public static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what, double tolerance = Fp32Tolerance)
    {
        double error = Errors.RelativeError(expected, actual);
        Assert.True(error <= tolerance, $"{what}: relative error {error:E3} > {tolerance:E1}");
    }

    /// <summary>Downloads the first <paramref name="length"/> floats of a buffer.</summary>
    public static float[] Read(IBackend backend, IBuffer buffer, int length)
    {
        var values = new float[length];
        backend.Download(buffer, values);
        return values;
    }

    /// <summary>A buffer of exactly <paramref name="values"/>.</summary>
    public static IBuffer Buffer(IBackend backend, float[] values, int extra = 0)
    {
        IBuffer buffer = backend.Allocate(values.Length + extra);
        backend.Upload(values, buffer);
        return buffer;
    }
}

/// <summary>Host tensors in pinned native memory (what a memory-mapped checkpoint gives the backends).</summary>
internal sealed unsafe class TensorStore : IDisposable
{
    private readonly List<nint> _allocations = [];

    /// <summary>A tensor of <paramref name="values"/> stored as <paramref name="dtype"/> (F32, F16 or BF16), starting
    /// <paramref name="misalign"/> bytes past a 64-byte boundary (as tensors in a safetensors file do), with 64 bytes of
    /// NaN before and after it: a kernel that reads past the tensor's ends and lets it count poisons its result.</summary>
    public HostTensor Make(string name, DType dtype, int[] shape, float[] values, int misalign = 0)
    {
        long bytes = Math.Max(values.Length * dtype.SizeOf(), 1);
        nint block = (nint)NativeMemory.AlignedAlloc((nuint)(bytes + 128 + misalign + 64), 64);
        _allocations.Add(block);
        new Span<byte>((void*)block, (int)(bytes + 128 + misalign + 64)).Fill(0xFF);   // 0xFFFFFFFF is a NaN
        nint data = block + 64 + misalign;
        for (int i = 0; i < values.Length; i++)
        {
            switch (dtype)
            {
                case DType.F32: ((float*)data)[i] = values[i]; break;
                case DType.F16: ((Half*)data)[i] = (Half)values[i]; break;
                case DType.BF16: ((ushort*)data)[i] = DTypes.SingleToBFloat16(values[i]); break;
                default: throw new ArgumentOutOfRangeException(nameof(dtype));
            }
        }
        return new HostTensor(name, dtype, shape, data);
    }

    /// <summary>A random weight in <paramref name="format"/>: stored as that dtype (Int8 is quantized from F32).</summary>
    public HostTensor Random(string name, WeightFormat format, int rows, int cols, int seed, float scale = 1f, int misalign = 0) =>
        Make(name, StoredAs(format), [rows, cols], TestData.Random(rows * cols, seed, scale), misalign);

    /// <summary>The dtype a weight of <paramref name="format"/> is stored as in a test checkpoint.</summary>
    public static DType StoredAs(WeightFormat format) => format switch
    {
        WeightFormat.F16 => DType.F16,
        WeightFormat.BF16 => DType.BF16,
        _ => DType.F32,
    };

    public void Dispose()
    {
        foreach (nint p in _allocations) NativeMemory.AlignedFree((void*)p);
        _allocations.Clear();
    }
}
