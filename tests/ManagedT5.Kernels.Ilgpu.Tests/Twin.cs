// The parity harness: the same inputs on the scalar reference backend and on an ILGPU device, the same op run on
// both, and one normalised error measure: max |device - reference| / max |reference| <= 1e-5. An op the device lacks
// (IBackend.Supports) is reported as skipped, "<backend> does not support <op>", not failed, as ggml's test-backend-ops.
using System.Runtime.InteropServices;
using ManagedT5.Kernels.Reference;

namespace ManagedT5.Kernels.Ilgpu.Tests;

/// <summary>Which side of a <see cref="Twin"/> a value belongs to.</summary>
public enum Side { Reference, Device }

/// <summary>One thing (buffer, weight) on both sides.</summary>
public readonly record struct Pair<T>(T Reference, T Device)
{
    /// <summary>The reference or device value.</summary>
    public T this[Side side] => side == Side.Reference ? Reference : Device;
}

/// <summary>A reference backend and a device backend fed the same data. Dispose frees what it created.</summary>
public sealed class Twin(IBackend device) : IDisposable
{
    /// <summary>The tolerance every parity check uses: max abs diff / max abs of the reference.</summary>
    public const double Tolerance = 1e-5;

    private readonly List<IDisposable> _owned = [];

    /// <summary>The scalar reference.</summary>
    public ReferenceBackend Reference { get; } = new();

    /// <summary>The backend under test.</summary>
    public IBackend Device { get; } = device;

    /// <summary>Runs <paramref name="call"/> (a call of <paramref name="op"/>) on the reference, then on the device;
    /// skips the test when the device lacks <paramref name="op"/>.</summary>
    public void Run(BackendOp op, Action<IBackend, Side> call)
    {
        Require(op);
        call(Reference, Side.Reference);
        call(Device, Side.Device);
    }

    /// <summary>Skips the test (Xunit.SkipException, reported as skipped by [SkippableFact] and [DeviceTheory]) when
    /// the device lacks <paramref name="op"/>.</summary>
    public void Require(BackendOp op) => Require(Device, op);

    /// <summary>Skips the test when <paramref name="backend"/> lacks <paramref name="op"/>, with the reason
    /// "&lt;backend&gt; does not support &lt;op&gt;".</summary>
    public static void Require(IBackend backend, BackendOp op) =>
        Skip.IfNot(backend.Supports(op), $"{backend.Name} does not support {op}");

    /// <summary>A buffer holding <paramref name="data"/> on both sides (zeros when null).</summary>
    public Pair<IBuffer> Buffer(float[] data)
    {
        var pair = new Pair<IBuffer>(Own(Reference.Allocate(data.Length)), Own(Device.Allocate(data.Length)));
        Reference.Upload(data, pair.Reference);
        Device.Upload(data, pair.Device);
        return pair;
    }

    /// <summary>A zeroed buffer of <paramref name="length"/> floats on both sides.</summary>
    public Pair<IBuffer> Zeros(int length) => new(Own(Reference.Allocate(length)), Own(Device.Allocate(length)));

    /// <summary>A weight from <paramref name="values"/> stored as <paramref name="stored"/>, prepared on both sides
    /// as <paramref name="format"/> (null keeps the stored dtype).</summary>
    public Pair<IWeight> Weight(string name, int[] shape, float[] values, DType stored = DType.F32, WeightFormat? format = null)
    {
        var tensor = Own(TestTensor.Create(name, stored, shape, values));
        return new Pair<IWeight>(Own(Reference.CreateWeight(tensor.Tensor, format)), Own(Device.CreateWeight(tensor.Tensor, format)));
    }

    /// <summary>Downloads the first <paramref name="length"/> floats of both sides and checks them.</summary>
    public void AssertClose(Pair<IBuffer> pair, int length, string what)
    {
        var expected = new float[length];
        var actual = new float[length];
        Reference.Download(pair.Reference, expected);
        Device.Download(pair.Device, actual);
        Parity.AssertClose(expected, actual, $"{Device.Name}: {what}");
    }

    private T Own<T>(T disposable) where T : IDisposable
    {
        _owned.Add(disposable);
        return disposable;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        for (int i = _owned.Count - 1; i >= 0; i--) _owned[i].Dispose();
    }
}

/// <summary>The normalised error measure and deterministic random data.</summary>
public static class Parity
{
    /// <summary>Fails unless max |actual - expected| / max |expected| &lt;= tolerance (absolute when expected is all 0).
    /// NaN and infinities must match exactly.</summary>
    public static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what, double tolerance = Twin.Tolerance)
    {
        Assert.Equal(expected.Length, actual.Length);
        double maxReference = 0, maxDiff = 0;
        int worst = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            if (!float.IsFinite(expected[i]) || !float.IsFinite(actual[i]))
            {
                Assert.True(expected[i].Equals(actual[i]), $"{what}: element {i} is {actual[i]}, reference {expected[i]}");
                continue;
            }
            maxReference = Math.Max(maxReference, Math.Abs(expected[i]));
            double diff = Math.Abs((double)actual[i] - expected[i]);
            if (diff > maxDiff)
            {
                maxDiff = diff;
                worst = i;
            }
        }
        double error = maxReference == 0 ? maxDiff : maxDiff / maxReference;
        if (error > tolerance)
            Assert.Fail($"{what}: max|diff|/max|ref| = {error:E2} > {tolerance:E0} (element {worst}: reference {expected[worst]}, device {actual[worst]})");
    }

    /// <summary>n floats uniform in [-scale, scale), from a fixed seed.</summary>
    public static float[] Random(int n, int seed, float scale = 1f)
    {
        var random = new Random(seed);
        var values = new float[n];
        for (int i = 0; i < n; i++) values[i] = (float)(random.NextDouble() * 2 - 1) * scale;
        return values;
    }
}

/// <summary>A host tensor over native memory that the test owns (as a checkpoint's memory map would be).</summary>
public sealed unsafe class TestTensor : IDisposable
{
    private void* _data;

    private TestTensor(HostTensor tensor, void* data)
    {
        Tensor = tensor;
        _data = data;
    }

    /// <summary>The view to hand to CreateWeight.</summary>
    public HostTensor Tensor { get; }

    /// <summary>Stores <paramref name="values"/> as <paramref name="dtype"/> (F32, F16 or BF16).</summary>
    public static TestTensor Create(string name, DType dtype, int[] shape, float[] values)
    {
        void* data = NativeMemory.Alloc((nuint)Math.Max(1, values.Length * dtype.SizeOf()));
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
        return new TestTensor(new HostTensor(name, dtype, shape, (nint)data), data);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_data != null) NativeMemory.Free(_data);
        _data = null;
    }
}
