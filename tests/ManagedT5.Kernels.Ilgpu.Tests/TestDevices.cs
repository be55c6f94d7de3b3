// Which ILGPU devices the parity suite runs on, and the xunit attributes that turn an absent device into a skipped
// test with a reason (never a silent pass). Set MANAGEDT5_ILGPU_REQUIRE=cuda (or opencl, comma-separated) on a GPU
// machine to make a missing device fail instead of skip.
using System.Collections.Concurrent;
using Xunit.Abstractions;
using Xunit.Sdk;

[assembly: CollectionBehavior(DisableTestParallelization = true)] // ILGPU's CPU accelerator already uses every core

namespace ManagedT5.Kernels.Ilgpu.Tests;

/// <summary>The devices tests run on: ILGPU's CPU accelerator always, CUDA and OpenCL when present.</summary>
public static class TestDevices
{
    /// <summary>Every kind a device test is generated for (Auto is not a device).</summary>
    public static readonly IlgpuDeviceKind[] Kinds = [IlgpuDeviceKind.Cpu, IlgpuDeviceKind.Cuda, IlgpuDeviceKind.OpenCL];

    private static readonly ConcurrentDictionary<IlgpuDeviceKind, Lazy<string?>> SkipReasons = new();
    private static readonly ConcurrentDictionary<IlgpuDeviceKind, Lazy<IlgpuBackend>> Backends = new();

    /// <summary>Null when tests should run on <paramref name="kind"/>, else why they are skipped.</summary>
    public static string? SkipReason(IlgpuDeviceKind kind) => SkipReasons.GetOrAdd(kind, k => new Lazy<string?>(() =>
    {
        if (IlgpuDevices.IsAvailable(k) || Required(k)) return null;
        return $"No usable {k} device here ({string.Join("; ", IlgpuDevices.Describe().Where(l => l.StartsWith(k.ToString(), StringComparison.OrdinalIgnoreCase)))}).";
    })).Value;

    /// <summary>The shared backend of a device kind, created on first use and kept for the whole run.</summary>
    public static IlgpuBackend Backend(IlgpuDeviceKind kind) =>
        Backends.GetOrAdd(kind, k => new Lazy<IlgpuBackend>(() => IlgpuDevices.Create(k))).Value;

    /// <summary>True on a real GPU (tests may use larger shapes there).</summary>
    public static bool IsGpu(IlgpuDeviceKind kind) => kind is IlgpuDeviceKind.Cuda or IlgpuDeviceKind.OpenCL;

    private static bool Required(IlgpuDeviceKind kind) =>
        (Environment.GetEnvironmentVariable("MANAGEDT5_ILGPU_REQUIRE") ?? "")
            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Any(name => string.Equals(name, kind.ToString(), StringComparison.OrdinalIgnoreCase));
}

/// <summary>A test written once and run on every device kind: one test case per device, taking the
/// <see cref="IlgpuDeviceKind"/> as its only argument; absent devices give skipped cases with the reason, and a case
/// that throws Xunit.SkipException at run time (an op the device lacks: <see cref="Twin.Require(BackendOp)"/>) is
/// reported skipped with that exception's message, as [SkippableFact] does.</summary>
[XunitTestCaseDiscoverer("ManagedT5.Kernels.Ilgpu.Tests.DeviceTheoryDiscoverer", "ManagedT5.Kernels.Ilgpu.Tests")]
[AttributeUsage(AttributeTargets.Method)]
public sealed class DeviceTheoryAttribute : FactAttribute;

/// <summary>Creates the per-device test cases of a <see cref="DeviceTheoryAttribute"/> method.</summary>
public sealed class DeviceTheoryDiscoverer(IMessageSink diagnosticMessageSink) : IXunitTestCaseDiscoverer
{
    /// <inheritdoc />
    public IEnumerable<IXunitTestCase> Discover(ITestFrameworkDiscoveryOptions discoveryOptions, ITestMethod testMethod,
        IAttributeInfo factAttribute)
    {
        var display = discoveryOptions.MethodDisplayOrDefault();
        var displayOptions = discoveryOptions.MethodDisplayOptionsOrDefault();
        foreach (var kind in TestDevices.Kinds)
        {
            object[] arguments = [kind];
            string? skip = TestDevices.SkipReason(kind);
            yield return skip is null
                ? new SkippableFactTestCase([typeof(Xunit.SkipException).FullName!], diagnosticMessageSink, display, displayOptions, testMethod, arguments)
                : new XunitSkippedDataRowTestCase(diagnosticMessageSink, display, displayOptions, testMethod, skip, arguments);
        }
    }
}

/// <summary>A fact about one device kind, skipped with the reason when that device is absent.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class DeviceFactAttribute : FactAttribute
{
    /// <summary>Runs the fact only where <paramref name="kind"/> is present.</summary>
    public DeviceFactAttribute(IlgpuDeviceKind kind)
    {
        Kind = kind;
        Skip = TestDevices.SkipReason(kind);
    }

    /// <summary>The device the fact is about.</summary>
    public IlgpuDeviceKind Kind { get; }
}
