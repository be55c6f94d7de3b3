// Parity of the element-wise and per-row kernels (Add, Scale, Activate, RmsNorm) with the reference, sweeping every
// length 0..257 so each vector width's tail is hit, at every SIMD level.
// Tolerance: max abs diff / max abs of the reference <= 1e-5 (fp32; exp-based activations included).
using ManagedT5.Kernels.Cpu;
using ManagedT5.Kernels.Reference;

namespace ManagedT5.Kernels.Tests;

public sealed class ElementWiseTests : IDisposable
{
    private readonly ReferenceBackend _reference = new();
    private readonly TensorStore _store = new();

    public static TheoryData<SimdLevel> Levels() => TestData.Levels();

    [Theory]
    [MemberData(nameof(Levels))]
    public void AddAndScaleMatchReferenceForEveryLength(SimdLevel level)
    {
        using var cpu = new CpuBackend(2, level);
        for (int length = 0; length <= 257; length++)
        {
            float[] a = TestData.Random(length, length), b = TestData.Random(length, length + 1000);
            using IBuffer ra = TestData.Buffer(_reference, a), rb = TestData.Buffer(_reference, b);
            using IBuffer ca = TestData.Buffer(cpu, a, 3), cb = TestData.Buffer(cpu, b, 3);
            _reference.Add(ra, rb, length);
            cpu.Add(ca, cb, length);
            _reference.Scale(rb, -1.75f, length);
            cpu.Scale(cb, -1.75f, length);
            TestData.AssertClose(TestData.Read(_reference, rb, length), TestData.Read(cpu, cb, length), $"Add+Scale length {length}");
            Assert.Equal(0f, TestData.Read(cpu, cb, length + 3)[length..].Sum()); // nothing written past length
        }
    }

    [Fact]
    public void AddOfALargeBufferUsesThePoolAndMatches()
    {
        using var cpu = new CpuBackend(2);
        int length = (1 << 17) + 3;
        float[] a = TestData.Random(length, 1), b = TestData.Random(length, 2);
        using IBuffer ca = TestData.Buffer(cpu, a), cb = TestData.Buffer(cpu, b);
        cpu.Add(ca, cb, length);
        float[] expected = a.Zip(b, (x, y) => y + x).ToArray();
        Assert.Equal(expected, TestData.Read(cpu, cb, length));
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public void ActivationsMatchReferenceForEveryLength(SimdLevel level)
    {
        using var cpu = new CpuBackend(2, level);
        foreach (ActivationKind kind in Enum.GetValues<ActivationKind>())
            foreach (bool gated in new[] { false, true })
                for (int length = 0; length <= 257; length++)
                {
                    // mostly [-6, 6), where every function bends, plus a few far values where exp saturates
                    float[] gate = TestData.Random(length, length * 3 + 1, scale: 6f);
                    if (length > 10) { gate[3] = 40f; gate[7] = -40f; gate[9] = -100f; }
                    float[] up = TestData.Random(length, length * 3 + 2, scale: 2f);
                    using IBuffer rg = TestData.Buffer(_reference, gate), ru = TestData.Buffer(_reference, up);
                    using IBuffer cg = TestData.Buffer(cpu, gate), cu = TestData.Buffer(cpu, up);
                    _reference.Activate(rg, gated ? ru : null, kind, length);
                    cpu.Activate(cg, gated ? cu : null, kind, length);
                    TestData.AssertClose(TestData.Read(_reference, rg, length), TestData.Read(cpu, cg, length),
                        $"{kind} gated={gated} length {length}");
                }
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public void LargeActivationMatchesReference(SimdLevel level)
    {
        using var cpu = new CpuBackend(2, level);
        int length = 33 * 1024 + 5; // encoder rows x d_ff: parallel path
        float[] gate = TestData.Random(length, 5, scale: 4f), up = TestData.Random(length, 6);
        using IBuffer rg = TestData.Buffer(_reference, gate), ru = TestData.Buffer(_reference, up);
        using IBuffer cg = TestData.Buffer(cpu, gate), cu = TestData.Buffer(cpu, up);
        _reference.Activate(rg, ru, ActivationKind.GeluNew, length);
        cpu.Activate(cg, cu, ActivationKind.GeluNew, length);
        TestData.AssertClose(TestData.Read(_reference, rg, length), TestData.Read(cpu, cg, length), "gelu_new, 33 x 1024");
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public void RmsNormMatchesReference(SimdLevel level)
    {
        using var cpu = new CpuBackend(2, level);
        int[] dims = [1, 3, 7, 15, 16, 17, 31, 64, 100, 257, 512, 768];
        int[] rowCounts = [1, 2, 3, 7, 33];
        int seed = 0;
        foreach (DType dtype in new[] { DType.F32, DType.BF16, DType.F16 })
            foreach (int d in dims)
                foreach (int rows in rowCounts)
                {
                    seed++;
                    HostTensor gamma = _store.Make("norm", dtype, [d], TestData.Random(d, seed, 2f));
                    using IWeight weight = cpu.CreateWeight(gamma);
                    float[] x = TestData.Random(rows * d, seed + 500, 3f);
                    using IBuffer rx = TestData.Buffer(_reference, x), ry = _reference.Allocate(rows * d);
                    using IBuffer cx = TestData.Buffer(cpu, x), cy = cpu.Allocate(rows * d);
                    _reference.RmsNorm(rx, weight, ry, rows, 1e-6f);
                    cpu.RmsNorm(cx, weight, cy, rows, 1e-6f);
                    TestData.AssertClose(TestData.Read(_reference, ry, rows * d), TestData.Read(cpu, cy, rows * d),
                        $"RmsNorm {dtype} d={d} rows={rows}");
                }
    }

    [Fact]
    public void RmsNormOfManyRowsUsesThePoolAndMatches()
    {
        using var cpu = new CpuBackend(2);
        int rows = 300, d = 512;
        HostTensor gamma = _store.Make("norm", DType.F32, [d], TestData.Random(d, 1));
        using IWeight weight = cpu.CreateWeight(gamma);
        float[] x = TestData.Random(rows * d, 2);
        using IBuffer rx = TestData.Buffer(_reference, x), ry = _reference.Allocate(rows * d);
        using IBuffer cx = TestData.Buffer(cpu, x), cy = cpu.Allocate(rows * d);
        _reference.RmsNorm(rx, weight, ry, rows, 1e-6f);
        cpu.RmsNorm(cx, weight, cy, rows, 1e-6f);
        TestData.AssertClose(TestData.Read(_reference, ry, rows * d), TestData.Read(cpu, cy, rows * d), "RmsNorm 300 x 512");
    }

    public void Dispose() => _store.Dispose();
}
