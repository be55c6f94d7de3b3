// Linear (x W^T) parity: the CPU backend's GEMV (few rows) and packed GEMM (many rows) against the reference, for
// every weight format and SIMD level, on odd shapes (edge panels, tails, K across several packed slabs) and on real
// Flan-T5 shapes. Int8 is compared with the reference's own dequantized math (q * scale per element).
// Tolerance: max abs diff / max abs of the reference <= 1e-5 (fp32 accumulation, different summation order).
using System.Collections.Concurrent;
using ManagedT5.Kernels.Cpu;
using ManagedT5.Kernels.Reference;

namespace ManagedT5.Kernels.Tests;

public sealed class LinearTests : IDisposable
{
    private static readonly ConcurrentDictionary<string, float[]> ReferenceResults = new();
    private readonly TensorStore _store = new();

    public static TheoryData<WeightFormat, SimdLevel> FormatsAndLevels() => TestData.FormatsAndLevels();

    /// <summary>(rows, in, out): every GEMV kernel (one row, separate dots for two, four- and eight-row kernels with
    /// missing rows), both GEMV/GEMM switches (4/5 for F32, 8/9 for narrow formats), tails of every vector width, K
    /// across three slabs; 50 rows take the in-place F32 GEMM (AVX-512) with a partial second 32-row panel.</summary>
    private static IEnumerable<(int Rows, int In, int Out)> OddShapes()
    {
        int[] rows = [1, 2, 3, 4, 5, 6, 7, 8, 9, 33, 50];
        (int, int)[] dims = [(1, 1), (3, 5), (17, 33), (64, 65), (100, 7), (257, 129), (600, 40)];
        foreach (int r in rows)
            foreach ((int i, int o) in dims) yield return (r, i, o);
    }

    /// <summary>flan-t5-small (d_model 512, inner 384, d_ff 1024, vocab 32128) and flan-t5-base (768, 768, 2048).</summary>
    private static IEnumerable<(int Rows, int In, int Out)> FlanT5Shapes()
    {
        // small, batch-1 decode: q/k/v, o, wi_0/wi_1, wo, lm_head
        yield return (1, 512, 384);
        yield return (1, 384, 512);
        yield return (1, 512, 1024);
        yield return (1, 1024, 512);
        yield return (1, 512, 32128);
        // small encoder (33 tokens) and a 4-beam decode step
        yield return (33, 512, 1024);
        yield return (33, 1024, 512);
        yield return (128, 512, 384);
        yield return (100, 1024, 512);
        yield return (4, 512, 384);
        // an 8-row batched decode step
        yield return (8, 512, 1024);
        yield return (8, 512, 32128);
        // base
        yield return (1, 768, 2048);
        yield return (1, 2048, 768);
        yield return (9, 768, 2048);
    }

    [Theory]
    [MemberData(nameof(FormatsAndLevels))]
    public void OddShapesMatchReference(WeightFormat format, SimdLevel level)
    {
        using var cpu = new CpuBackend(2, level);
        foreach (KernelChoices choices in ChoicesFor(format))
        {
            int seed = 1;
            foreach ((int rows, int inDim, int outDim) in OddShapes())
                foreach (bool accumulate in new[] { false, true })
                    Check(cpu, choices, format, rows, inDim, outDim, accumulate, seed++);
        }
    }

    /// <summary>int8 runs twice: on the VNNI kernels (where the CPU has them) and on the widening kernels, which
    /// machines without AVX-VNNI take. F32 runs twice too: on AVX-512 the defaults send 3-8 rows to the aligned-chunk
    /// GEMV and 24+ rows to the in-place GEMM, so the plain multi-row GEMV and the packed GEMM (which the other
    /// formats and the other widths take) are run with those switched off.</summary>
    private static KernelChoices[] ChoicesFor(WeightFormat format) => format switch
    {
        WeightFormat.Int8 => [KernelChoices.Production, new KernelChoices { Int8Integer = false }],
        WeightFormat.F32 => [KernelChoices.Production, new KernelChoices { AlignedChunks = false, InPlaceF32Gemm = false }],
        _ => [KernelChoices.Production],
    };

    [Theory]
    [MemberData(nameof(FormatsAndLevels))]
    public void FlanT5ShapesMatchReference(WeightFormat format, SimdLevel level)
    {
        using var cpu = new CpuBackend(2, level);
        foreach (KernelChoices choices in ChoicesFor(format))
        {
            int seed = 1000;
            foreach ((int rows, int inDim, int outDim) in FlanT5Shapes())
                Check(cpu, choices, format, rows, inDim, outDim, accumulate: seed % 2 == 0, seed++);
        }
    }

    /// <summary>F32 weights in place from a file start mid cache line: the aligned-chunk GEMV (AVX-512: one row at a
    /// time up to 2 rows, four at a time for 3-4, eight rows against two weight rows for 5-8) and the in-place GEMM (50
    /// rows) must give the reference's result at every misalignment and never read the NaN bytes around the tensor.</summary>
    [Theory]
    [MemberData(nameof(Levels))]
    public void MisalignedF32WeightsMatchReference(SimdLevel level)
    {
        using var cpu = new CpuBackend(2, level);
        int seed = 3000;
        foreach (int misalign in new[] { 4, 8, 36, 60 })
            foreach (int rows in new[] { 1, 2, 3, 4, 5, 8, 50 })
                foreach ((int inDim, int outDim) in new[] { (1, 1), (3, 5), (15, 4), (16, 3), (17, 33), (64, 65), (100, 7), (257, 129), (512, 384) })
                    Check(cpu, KernelChoices.Production, WeightFormat.F32, rows, inDim, outDim, accumulate: seed % 2 == 0, seed++, misalign);
    }

    public static TheoryData<SimdLevel> Levels() => TestData.Levels();

    /// <summary>Linears (several weights of one input as one op: the input prepared once, one pool job over all
    /// outputs) gives each output exactly what a lone Linear gives, on every kernel path: one-row, multi-row and
    /// aligned-chunk GEMV, the GEMMs, int8 VNNI; odd output sizes that split claims across weights; F32 weights at
    /// different cache-line offsets (which cannot share a shifted input and run one by one).</summary>
    [Theory]
    [MemberData(nameof(FormatsAndLevels))]
    public void SharedInputLinearsEqualSeparateLinears(WeightFormat format, SimdLevel level)
    {
        using var cpu = new CpuBackend(2, level);
        (int In, int[] Outs, int[] Misalign)[] groups =
        [
            (512, [384, 384, 384], [8, 8, 8]),      // q, k, v of flan-t5-small, from a file
            (512, [1024, 1024], [0, 0]),            // wi_0, wi_1
            (64, [100, 7, 65], [4, 4, 4]),          // odd sizes: claims cross weight boundaries mid-grain
            (48, [33, 40], [8, 36]),                // different offsets in the cache line
        ];
        int seed = 5000;
        foreach (KernelChoices choices in ChoicesFor(format))
        {
            foreach ((int inDim, int[] outs, int[] misalign) in groups)
                foreach (int rows in new[] { 1, 3, 8, 9, 40, 128 })
                {
                    IWeight[] weights = outs.Select((o, i) => cpu.CreateWeight(_store.Random($"w{i}", format, o, inDim, seed + i, 0.1f, misalign[i]), format)).ToArray();
                    float[] x = TestData.Random(rows * inDim, seed++);
                    using IBuffer input = TestData.Buffer(cpu, x, extra: 3);
                    IBuffer[] together = outs.Select(o => cpu.Allocate(rows * o + 3)).ToArray();
                    cpu.Linears(input, weights, together, rows, choices);
                    for (int i = 0; i < weights.Length; i++)
                    {
                        using IBuffer alone = cpu.Allocate(rows * outs[i]);
                        cpu.Linear(input, weights[i], alone, rows, accumulate: false, choices);
                        Assert.Equal(TestData.Read(cpu, alone, rows * outs[i]), TestData.Read(cpu, together[i], rows * outs[i]));
                    }
                    foreach (IBuffer b in together) b.Dispose();
                    foreach (IWeight w in weights) w.Dispose();
                }
        }
    }

    [Fact]
    public void LinearsRejectMismatchedWeightsAndOutputs()
    {
        using var cpu = new CpuBackend(2);
        using IWeight a = cpu.CreateWeight(_store.Random("a", WeightFormat.F32, 8, 16, 1));
        using IWeight b = cpu.CreateWeight(_store.Random("b", WeightFormat.F32, 8, 12, 2));
        using IBuffer x = cpu.Allocate(16), y0 = cpu.Allocate(8), y1 = cpu.Allocate(8);
        var error = Assert.Throws<ArgumentException>(() => cpu.Linears(x, [a, b], [y0, y1], 1));
        Assert.Contains("'b'", error.Message);
        Assert.Throws<ArgumentException>(() => cpu.Linears(x, [a, a], [y0], 1));
        Assert.Throws<ArgumentException>(() => cpu.Linears(x, [a, a], [y0, cpu.Allocate(4)], 1));
        // The interface's default (one Linear per weight) checks the counts too.
        IBackend reference = new ReferenceBackend();
        Assert.Throws<ArgumentException>(() => reference.Linears(x, [a], [y0, y1], 1));
    }

    private unsafe void Check(CpuBackend cpu, KernelChoices choices, WeightFormat format, int rows, int inDim, int outDim, bool accumulate, int seed, int misalign = 0)
    {
        HostTensor tensor = _store.Random("w", format, outDim, inDim, seed, scale: 0.1f, misalign);
        using IWeight weight = cpu.CreateWeight(tensor, format);
        Assert.Equal(format, weight.Format);
        float[] x = TestData.Random(rows * inDim, seed + 7);
        float[] residual = TestData.Random(rows * outDim, seed + 13);

        string key = $"{format}/{rows}x{inDim}x{outDim}/{accumulate}/{seed}/+{misalign}";
        float[] expected = ReferenceResults.GetOrAdd(key, _ =>
        {
            var reference = new ReferenceBackend();
            using IBuffer rx = TestData.Buffer(reference, x), ry = TestData.Buffer(reference, residual);
            reference.Linear(rx, weight, ry, rows, accumulate);
            return TestData.Read(reference, ry, rows * outDim);
        });

        // int8 weights with VNNI quantize the activations per row (Int8Gemm, GEMM and GEMV forms): their twin is
        // Int8Gemm.RunScalar, not the widening reference (Int8GemmTests bounds the distance between the two).
        if (format == WeightFormat.Int8 && choices.Int8Integer && Int8Gemm.IsSupported(cpu.Simd))
        {
            expected = (float[])residual.Clone();
            var w = (CpuWeight)weight;
            fixed (float* xp = x) fixed (float* yp = expected)
                Int8Gemm.RunScalar(xp, WeightView.Of(w), yp, rows, accumulate);
        }

        // Buffers larger than needed, as the engine allocates them: the kernel must use only the rows asked for.
        using IBuffer cx = TestData.Buffer(cpu, x, extra: 5), cy = TestData.Buffer(cpu, residual, extra: 5);
        cpu.Linear(cx, weight, cy, rows, accumulate, choices);
        TestData.AssertClose(expected, TestData.Read(cpu, cy, rows * outDim), $"Linear {key} at {cpu.Simd}, {choices}");
    }

    public void Dispose() => _store.Dispose();
}
