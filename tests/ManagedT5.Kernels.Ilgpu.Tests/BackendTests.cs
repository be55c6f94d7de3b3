// IlgpuBackend and IlgpuDevices beyond the arithmetic: device selection and its messages, out-of-memory reports,
// argument checks, disposal, and several threads sharing one backend.
using ManagedT5.Kernels.Reference;

namespace ManagedT5.Kernels.Ilgpu.Tests;

public sealed class BackendTests
{
    [Fact]
    public void DescribeListsEveryKindOfDevice()
    {
        var lines = IlgpuDevices.Describe();
        Assert.Contains(lines, l => l.StartsWith("cpu: ILGPU CPU accelerator", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("cuda: ", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("opencl: ", StringComparison.Ordinal));
    }

    [Fact]
    public void CpuAndAutoAlwaysGiveABackend()
    {
        using var cpu = IlgpuDevices.Create(IlgpuDeviceKind.Cpu);
        Assert.Equal("ilgpu-cpu", cpu.Name);
        Assert.Equal(IlgpuDeviceKind.Cpu, cpu.Kind);
        using var auto = IlgpuDevices.Create();
        Assert.StartsWith("ilgpu-", auto.Name);
        Assert.True(IlgpuDevices.IsAvailable(IlgpuDeviceKind.Cpu));
    }

    [Theory]
    [InlineData(IlgpuDeviceKind.Cuda)]
    [InlineData(IlgpuDeviceKind.OpenCL)]
    public void AnAbsentDeviceIsNotSupportedWithWhatWasFound(IlgpuDeviceKind kind)
    {
        if (IlgpuDevices.IsAvailable(kind)) return; // present here: nothing to check (the parity suite runs on it)
        var e = Assert.Throws<NotSupportedException>(() => IlgpuDevices.Create(kind));
        Assert.Contains(kind == IlgpuDeviceKind.Cuda ? "CUDA" : "OpenCL", e.Message);
        Assert.Contains("Found: ", e.Message);
        Assert.Contains("cpu: ILGPU CPU accelerator", e.Message);
    }

    [Fact]
    public void OutOfMemorySaysHowMuchWasAskedAndWhatIsLeft()
    {
        using var backend = IlgpuDevices.Create(IlgpuDeviceKind.Cpu);
        using var first = backend.Allocate(1 << 20);
        backend.MemoryLimitBytes = backend.AllocatedBytes + (2 << 20);
        var e = Assert.Throws<InsufficientMemoryException>(() => backend.Allocate(1 << 20));
        Assert.Contains("4.0 MiB", e.Message);        // asked for
        Assert.Contains("held by this backend", e.Message);
        Assert.Contains("limit", e.Message);
        using var fits = backend.Allocate(1 << 18);     // a smaller one still fits: nothing leaked, nothing hung
        Assert.Equal(1 << 18, fits.Length);
    }

    [DeviceFact(IlgpuDeviceKind.Cuda)]
    public void CudaOutOfMemoryIsReportedNotHung()
    {
        var backend = TestDevices.Backend(IlgpuDeviceKind.Cuda);
        var e = Assert.Throws<InsufficientMemoryException>((Action)(() =>
        {
            var held = new List<IBuffer>();
            try
            {
                while (true) held.Add(backend.Allocate(int.MaxValue)); // 8 GiB each until the device is full
            }
            finally
            {
                foreach (var b in held) b.Dispose();
            }
        }));
        Assert.Contains("free of", e.Message);
    }

    [Fact]
    public void BuffersAreZeroedAndRoundTrip()
    {
        var backend = TestDevices.Backend(IlgpuDeviceKind.Cpu);
        using var buffer = backend.Allocate(37);
        var back = new float[37];
        backend.Download(buffer, back);
        Assert.All(back, v => Assert.Equal(0f, v));
        var data = Parity.Random(30, 9);
        backend.Upload(data, buffer, offset: 7);
        backend.Download(buffer, back.AsSpan(0, 30), offset: 7);
        Assert.Equal(data, back[..30]);
        Assert.Throws<ArgumentOutOfRangeException>(() => backend.Upload(data, buffer, offset: 8));
    }

    [Fact]
    public void ForeignBuffersAndWeightsAreRejected()
    {
        var backend = TestDevices.Backend(IlgpuDeviceKind.Cpu);
        var reference = new ReferenceBackend();
        using var host = reference.Allocate(4);
        using var mine = backend.Allocate(4);
        var e = Assert.Throws<ArgumentException>(() => backend.Add(host, mine, 4));
        Assert.Contains("not a buffer of this ILGPU backend", e.Message);
        using var tensor = TestTensor.Create("w", DType.F32, [2, 2], [1, 2, 3, 4]);
        using var hostWeight = reference.CreateWeight(tensor.Tensor);
        Assert.Throws<ArgumentException>(() => backend.Linear(mine, hostWeight, mine, 1));
        Assert.Throws<ArgumentException>(() => backend.Add(mine, mine, 5)); // too short
    }

    [Fact]
    public void ADisposedBackendRefusesWork()
    {
        var backend = IlgpuDevices.Create(IlgpuDeviceKind.Cpu);
        var buffer = backend.Allocate(3);
        backend.Dispose();
        Assert.Throws<ObjectDisposedException>(() => backend.Scale(buffer, 2f, 3));
        buffer.Dispose(); // after the backend: harmless
        backend.Dispose();
    }

    [Fact]
    public void Int8WeightsReportTheirBytes()
    {
        var backend = TestDevices.Backend(IlgpuDeviceKind.Cpu);
        using var tensor = TestTensor.Create("w", DType.F32, [3, 5], Parity.Random(15, 1));
        using var w8 = backend.CreateWeight(tensor.Tensor, WeightFormat.Int8);
        using var w16 = backend.CreateWeight(tensor.Tensor, WeightFormat.BF16);
        Assert.Equal(WeightFormat.Int8, w8.Format);
        Assert.Equal(15 + 3 * 4, w8.ByteLength);
        Assert.Equal(30, w16.ByteLength);
    }

    /// <summary>Four "generations" at once on one backend, each its own chain of ops on its own buffers.</summary>
    [DeviceTheory]
    public void ConcurrentCallersGetTheReferenceResults(IlgpuDeviceKind device)
    {
        var backend = TestDevices.Backend(device);
        const int d = 33, dff = 65, rows = 3;
        using var wiTensor = TestTensor.Create("wi", DType.BF16, [dff, d], Parity.Random(dff * d, 1));
        using var woTensor = TestTensor.Create("wo", DType.BF16, [d, dff], Parity.Random(d * dff, 2));
        using var normTensor = TestTensor.Create("ln", DType.F32, [d], Parity.Random(d, 3));
        using var wi = backend.CreateWeight(wiTensor.Tensor);
        using var wo = backend.CreateWeight(woTensor.Tensor);
        using var norm = backend.CreateWeight(normTensor.Tensor);

        var reference = new ReferenceBackend();
        using var rWi = reference.CreateWeight(wiTensor.Tensor);
        using var rWo = reference.CreateWeight(woTensor.Tensor);
        using var rNorm = reference.CreateWeight(normTensor.Tensor);

        float[] Chain(IBackend b, IWeight w1, IWeight w2, IWeight ln, float[] input)
        {
            using var x = b.Allocate(rows * d);
            using var h = b.Allocate(rows * d);
            using var f = b.Allocate(rows * dff);
            b.Upload(input, x);
            for (int step = 0; step < 5; step++)
            {
                b.RmsNorm(x, ln, h, rows, 1e-6f);
                b.Linear(h, w1, f, rows);
                b.Activate(f, null, ActivationKind.GeluNew, rows * dff);
                b.Linear(f, w2, x, rows, accumulate: true);
            }
            var result = new float[rows * d];
            b.Download(x, result);
            return result;
        }

        var inputs = Enumerable.Range(0, 4).Select(i => Parity.Random(rows * d, 10 + i)).ToArray();
        var expected = inputs.Select(input => Chain(reference, rWi, rWo, rNorm, input)).ToArray();
        var actual = new float[inputs.Length][];
        Parallel.For(0, inputs.Length, new ParallelOptions { MaxDegreeOfParallelism = inputs.Length },
            i => actual[i] = Chain(backend, wi, wo, norm, inputs[i]));
        for (int i = 0; i < inputs.Length; i++) Parity.AssertClose(expected[i], actual[i], $"{backend.Name}: caller {i}");
    }
}
