// Device selection in one place: which ILGPU accelerators this machine has, and an IlgpuBackend on one of them.
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace ManagedT5.Kernels.Ilgpu;

/// <summary>Which ILGPU accelerator to run on.</summary>
public enum IlgpuDeviceKind
{
    /// <summary>The first kind with a device: CUDA, then OpenCL, then ILGPU's CPU accelerator. A device that is present
    /// but fails to start is reported (NotSupportedException), not silently passed over.</summary>
    Auto,
    /// <summary>An NVIDIA GPU through the CUDA driver (the one with the most memory when there are several).</summary>
    Cuda,
    /// <summary>An OpenCL 2.0+ device with the generic address space ILGPU's OpenCL backend needs.</summary>
    OpenCL,
    /// <summary>ILGPU's CPU accelerator: runs the same kernels on host threads. Slow; for tests and CI.</summary>
    Cpu,
}

/// <summary>Finds ILGPU devices and creates <see cref="IlgpuBackend"/>s on them.</summary>
public static class IlgpuDevices
{
    /// <summary>A backend on a device of <paramref name="kind"/>.</summary>
    /// <exception cref="NotSupportedException">No usable device of that kind; the message lists what was found.</exception>
    public static IlgpuBackend Create(IlgpuDeviceKind kind = IlgpuDeviceKind.Auto)
    {
        switch (kind)
        {
            case IlgpuDeviceKind.Auto:
                return TryCreate(IlgpuDeviceKind.Cuda) ?? TryCreate(IlgpuDeviceKind.OpenCL) ?? TryCreate(IlgpuDeviceKind.Cpu)!;
            case IlgpuDeviceKind.Cuda:
            case IlgpuDeviceKind.OpenCL:
            case IlgpuDeviceKind.Cpu:
                return TryCreate(kind) ?? throw new NotSupportedException(
                    $"No usable {Label(kind)} device for the ILGPU backend. Found: {string.Join("; ", Describe())}. " +
                    (kind == IlgpuDeviceKind.Cuda
                        ? "CUDA needs an NVIDIA GPU and its driver (libcuda); use IlgpuDeviceKind.Auto or Cpu otherwise."
                        : "Use IlgpuDeviceKind.Auto to take whatever device is present."));
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown device kind.");
        }
    }

    /// <summary>True when <see cref="Create"/> would find a device of <paramref name="kind"/> (Auto and Cpu: always).</summary>
    public static bool IsAvailable(IlgpuDeviceKind kind)
    {
        if (kind is IlgpuDeviceKind.Auto or IlgpuDeviceKind.Cpu) return true;
        using var context = NewContext(kind);
        return Devices(context, kind).Count > 0;
    }

    /// <summary>One line per device found, usable or not, e.g. "cuda: NVIDIA H100 80GB HBM3, 79.2 GiB, sm_90".</summary>
    public static IReadOnlyList<string> Describe()
    {
        var lines = new List<string>();
        using (var cuda = NewContext(IlgpuDeviceKind.Cuda))
        {
            var devices = cuda.GetCudaDevices();
            foreach (var d in devices)
                lines.Add($"cuda: {d.Name}, {Gib(d.MemorySize)}, {d.Architecture?.ToString() ?? "unknown architecture"}, " +
                    $"{d.NumMultiprocessors} SMs, driver {d.DriverVersion}");
            if (devices.Count == 0) lines.Add("cuda: none (no NVIDIA GPU or no CUDA driver)");
        }
        // Every OpenCL device, including those ILGPU cannot use, with the reason.
        using (var all = Context.Create(b => b.OpenCL(_ => true)))
        using (var usable = NewContext(IlgpuDeviceKind.OpenCL))
        {
            var usableIds = new HashSet<nint>();
            foreach (var d in usable.GetCLDevices()) usableIds.Add(d.DeviceId);
            var devices = all.GetCLDevices();
            foreach (var d in devices)
            {
                string status = usableIds.Contains(d.DeviceId)
                    ? "usable"
                    : d.Capabilities.GenericAddressSpace
                        ? "not usable by ILGPU"
                        : "not usable: no generic address space (ILGPU's OpenCL backend needs OpenCL C 2.0 features)";
                lines.Add($"opencl: {d.Name} ({d.PlatformName}), {Gib(d.MemorySize)}, OpenCL C {d.CVersion}, {status}");
            }
            if (devices.Count == 0) lines.Add("opencl: none (no OpenCL platform)");
        }
        using (var cpu = NewContext(IlgpuDeviceKind.Cpu))
        {
            foreach (var d in cpu.GetCPUDevices())
                lines.Add($"cpu: ILGPU CPU accelerator, warp {d.WarpSize}, {d.MaxNumThreadsPerGroup} threads per group " +
                    "(kernels on host threads: slow, for tests)");
        }
        return lines;
    }

    private static IlgpuBackend? TryCreate(IlgpuDeviceKind kind)
    {
        var context = NewContext(kind);
        try
        {
            var devices = Devices(context, kind);
            if (devices.Count == 0)
            {
                context.Dispose();
                return null;
            }
            Device device = devices.MaxBy(d => d.MemorySize)!;
            try
            {
                return new IlgpuBackend(context, device.CreateAccelerator(context), kind);
            }
            catch (Exception e) when (e is not InsufficientMemoryException)
            {
                throw new NotSupportedException(
                    $"{Label(kind)} device '{device.Name}' was found but could not be started: {e.Message}", e);
            }
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    /// <summary>A context that knows only the devices of one kind (so asking for the CPU never touches a GPU driver).</summary>
    internal static Context NewContext(IlgpuDeviceKind kind) => Context.Create(builder =>
    {
        switch (kind)
        {
            case IlgpuDeviceKind.Cuda: builder.Cuda(); break;
            case IlgpuDeviceKind.OpenCL: builder.OpenCL(); break;
            default: builder.DefaultCPU(); break; // one CPU device (warp 4, 16 threads per group), not every emulated vendor
        }
    });

    private static IReadOnlyList<Device> Devices(Context context, IlgpuDeviceKind kind) => kind switch
    {
        IlgpuDeviceKind.Cuda => [.. context.GetCudaDevices()],
        IlgpuDeviceKind.OpenCL => [.. context.GetCLDevices()],
        _ => [.. context.GetCPUDevices()],
    };

    private static string Label(IlgpuDeviceKind kind) => kind switch
    {
        IlgpuDeviceKind.Cuda => "CUDA",
        IlgpuDeviceKind.OpenCL => "OpenCL",
        _ => "CPU",
    };

    private static string Gib(long bytes) => $"{bytes / (double)(1L << 30):F1} GiB";
}
