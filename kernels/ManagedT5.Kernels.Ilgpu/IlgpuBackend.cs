// The ILGPU backend: every IBackend op as an ILGPU kernel on one accelerator (CUDA, OpenCL, or ILGPU's CPU
// accelerator). Weights are uploaded once; activations live in device buffers; only ids and explicit downloads
// come back to the host. One lock guards the accelerator stream, so several generations may share a backend.
// BackendBase has checked each op's arguments before a *Core method runs; these only claim the buffers as their own.
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;
using ManagedT5.Kernels.Cpu;
using ManagedT5.Kernels.Ilgpu.Kernels;

namespace ManagedT5.Kernels.Ilgpu;

/// <summary>
/// <see cref="IBackend"/> on an ILGPU accelerator. Create one with <see cref="IlgpuDevices.Create"/>. Thread-safe:
/// every op takes one lock around the accelerator's stream, so ops from several threads run one after another in
/// the order they took the lock (kernels on one stream execute in launch order).
/// </summary>
public sealed class IlgpuBackend : BackendBase
{
    /// <summary><see cref="LinearKernel.Auto"/> uses the GEMV up to this many rows and the tiled kernel above.</summary>
    public const int GemvMaxRows = 4;

    /// <inheritdoc />
    /// <remarks>The per-row ops of continuous batching (<see cref="BackendOp.AttentionPerRow"/>,
    /// <see cref="BackendOp.AppendToCachePerRow"/>) have no ILGPU kernel yet: the engine then decodes the rows of a
    /// continuous batch one at a time.</remarks>
    public override bool Supports(BackendOp op) =>
        op is not (BackendOp.AttentionPerRow or BackendOp.AppendToCachePerRow) && base.Supports(op);

    private readonly Context _context;
    private readonly Accelerator _accelerator;
    private readonly AcceleratorStream _stream;
    private readonly Lock _gate = new();
    private readonly bool _warpShuffles;
    private bool _disposed;
    private long _allocatedBytes;

    // Group sizes, fitted to the device once (ILGPU's CPU accelerator allows 16 threads per group, GPUs 1024).
    private readonly int _reduceGroup;    // RmsNorm, ArgMax: threads per row
    private readonly int _attentionGroup; // threads per (batch, head, query)
    private readonly int _tile;           // LinearKernel.Tiled: tile x tile threads
    private readonly int _gemvGroup;      // LinearKernel.Gemv: warps per group x warp size

    // Launchers of the kernels that read no weight, loaded in the constructor.
    private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<float>, int, int> _activate;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<float>> _add;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, float> _scale;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<float>, int, int, int, int> _appendToCache;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int> _gatherRows;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        ArrayView<float>, ArrayView<float>, AttentionParams> _attention;
    private readonly Action<AcceleratorStream, KernelConfig, ArrayView<float>, ArrayView<int>, int> _argMax;
    // Launchers of the weight-reading kernels, one set per weight format, loaded on first use.
    private readonly Dictionary<Type, object> _weightKernels = [];

    // Device scratch: row indices going up (embedding ids, gather rows) and argmax ids coming back; grows as needed.
    private MemoryBuffer1D<int, Stride1D.Dense> _indices;
    // Stands in for an absent optional argument (no bias, no mask, no up projection): kernels never read it.
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _placeholder;

    internal IlgpuBackend(Context context, Accelerator accelerator, IlgpuDeviceKind kind)
    {
        _context = context;
        _accelerator = accelerator;
        _stream = accelerator.DefaultStream;
        Kind = kind;
        Name = kind switch
        {
            IlgpuDeviceKind.Cuda => "ilgpu-cuda",
            IlgpuDeviceKind.OpenCL => "ilgpu-opencl",
            _ => "ilgpu-cpu",
        };
        if (accelerator is CLAccelerator opencl && OpenCLProblem(opencl.Capabilities) is string problem)
            throw new NotSupportedException($"OpenCL device '{accelerator.Name}': {problem}");
        _warpShuffles = accelerator is not CLAccelerator cl || OpenCLWarpShuffles(cl.Capabilities, cl.Vendor);

        var groups = GroupSizes.For(accelerator.MaxNumThreadsPerGroup, accelerator.WarpSize);
        _reduceGroup = groups.Reduce;
        _attentionGroup = groups.Attention;
        _tile = groups.Tile;
        _gemvGroup = groups.Gemv;

        _activate = accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int>(
            ElementwiseKernels.Activate);
        _add = accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>>(ElementwiseKernels.Add);
        _scale = accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>, float>(ElementwiseKernels.Scale);
        _appendToCache = accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int, int, int>(
            ElementwiseKernels.AppendToCache);
        _gatherRows = accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int>(
            ElementwiseKernels.GatherRows);
        _attention = accelerator.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, AttentionParams>(AttentionKernels.Attention);
        _argMax = accelerator.LoadKernel<ArrayView<float>, ArrayView<int>, int>(ArgMaxKernels.ArgMax);

        _indices = AllocateDevice<int>(256, "index scratch");
        _placeholder = AllocateDevice<float>(1, "placeholder");
    }

    /// <summary>Whether the kernels may use warp shuffles (the GEMV) on an OpenCL device: only with sub-groups on an
    /// Intel device, because ILGPU's OpenCL backend writes a shuffle as Intel's <c>intel_sub_group_shuffle_down</c>
    /// (cl_intel_subgroups) and cannot compile one for any other vendor. CUDA and the CPU accelerator always have them.</summary>
    internal static bool OpenCLWarpShuffles(CLCapabilityContext capabilities, CLDeviceVendor vendor) =>
        capabilities.SubGroups && vendor == CLDeviceVendor.Intel;

    /// <summary>Why an OpenCL device cannot run every kernel, or null. PositionBias computes T5's bucket log in double
    /// (DeviceMath.Log), so a device without cl_khr_fp64 (many Intel Xe and mobile GPUs) cannot compile it.</summary>
    internal static string? OpenCLProblem(CLCapabilityContext capabilities) => capabilities.Float64
        ? null
        : "no 64-bit floating point (cl_khr_fp64), which the relative position bias kernel needs for its exact log; use CUDA or the CPU backend.";

    /// <inheritdoc />
    public override string Name { get; }

    /// <summary>Which kind of ILGPU accelerator this backend runs on.</summary>
    public IlgpuDeviceKind Kind { get; }

    /// <summary>The device's name as the driver reports it.</summary>
    public string DeviceName => _accelerator.Name;

    /// <summary>Device memory in bytes (for ILGPU's CPU accelerator: what the process may use).</summary>
    public long DeviceMemoryBytes => _accelerator is CPUAccelerator ? HostMemoryBytes() : _accelerator.MemorySize;

    /// <summary>Bytes of device memory this backend's buffers and weights hold now.</summary>
    public long AllocatedBytes => Interlocked.Read(ref _allocatedBytes);

    /// <summary>Test hook: allocations beyond this many bytes in total fail as if the device were full.</summary>
    internal long MemoryLimitBytes { get; set; } = long.MaxValue;

    // ---------------------------------------------------------------------------------------------------------------
    // Weights and buffers

    /// <inheritdoc />
    /// <remarks>Conversion (F32 -> BF16/F16, anything -> Int8 with per-row scales) is CpuWeight's, so the device holds
    /// exactly the values the CPU backends use; the result is uploaded once and <paramref name="source"/> may go.</remarks>
    public override unsafe IWeight CreateWeight(HostTensor source, WeightFormat? format = null)
    {
        using CpuWeight host = CpuWeight.Create(source, format);
        long count = (long)host.Rows * host.Cols;
        if (count > int.MaxValue)
            throw new NotSupportedException($"Weight '{source.Name}' has {count} elements; the ILGPU backend uploads at most {int.MaxValue}.");
        int n = (int)count;
        string what = $"weight '{source.Name}' ({host.Format}, [{string.Join(", ", source.Shape)}])";
        MemoryBuffer1D<float, Stride1D.Dense>? floats = null, scales = null;
        MemoryBuffer1D<ushort, Stride1D.Dense>? halves = null;
        MemoryBuffer1D<sbyte, Stride1D.Dense>? bytes = null;
        lock (_gate)
        {
            EnterDevice();
            try
            {
                switch (host.Format)
                {
                    case WeightFormat.F32:
                        floats = AllocateDevice<float>(n, what);
                        if (n > 0) floats.View.CopyFromCPU(_stream, new ReadOnlySpan<float>((void*)host.Data, n));
                        break;
                    case WeightFormat.F16:
                    case WeightFormat.BF16:
                        halves = AllocateDevice<ushort>(n, what);
                        if (n > 0) halves.View.CopyFromCPU(_stream, new ReadOnlySpan<ushort>((void*)host.Data, n));
                        break;
                    case WeightFormat.Int8:
                        bytes = AllocateDevice<sbyte>(n, what);
                        scales = AllocateDevice<float>(host.Rows, what + " scales");
                        if (n > 0) bytes.View.CopyFromCPU(_stream, new ReadOnlySpan<sbyte>((void*)host.Data, n));
                        if (host.Rows > 0) scales.View.CopyFromCPU(_stream, host.Scales);
                        break;
                    default:
                        throw new ArgumentOutOfRangeException(nameof(format), host.Format, "Unknown weight format.");
                }
            }
            catch
            {
                foreach (MemoryBuffer? m in new MemoryBuffer?[] { floats, halves, bytes, scales })
                    if (m is not null) ReleaseLocked(m, m.LengthInBytes);
                throw;
            }
        }
        return new IlgpuWeight(this, source.Name, source.Shape, host.Format, host.Rows, host.Cols, floats, halves, bytes, scales);
    }

    /// <inheritdoc />
    protected override IBuffer AllocateCore(int length)
    {
        lock (_gate)
        {
            EnterDevice();
            var memory = AllocateDevice<float>(length, $"a buffer of {length} floats");
            memory.View.MemSetToZero(_stream);
            return new IlgpuBuffer(this, memory, length);
        }
    }

    /// <inheritdoc />
    protected override void UploadCore(ReadOnlySpan<float> source, IBuffer destination, int offset)
    {
        var d = Own(destination, nameof(destination));
        if (source.IsEmpty) return;
        lock (_gate)
        {
            EnterDevice();
            d.Memory.View.SubView(offset, source.Length).CopyFromCPU(_stream, source);
        }
    }

    /// <inheritdoc />
    protected override void DownloadCore(IBuffer source, Span<float> destination, int offset)
    {
        var s = Own(source, nameof(source));
        if (destination.IsEmpty) return;
        lock (_gate)
        {
            EnterDevice();
            s.Memory.View.SubView(offset, destination.Length).CopyToCPU(_stream, destination);
        }
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Ops, in the order a T5 forward pass uses them

    /// <inheritdoc />
    protected override void EmbeddingCore(IWeight table, ReadOnlySpan<int> ids, IBuffer output)
    {
        var w = Own(table);
        var o = Own(output, nameof(output));
        int d = w.Cols;
        if (ids.IsEmpty || d == 0) return;
        lock (_gate)
        {
            EnterDevice();
            var rows = UploadIndices(ids);
            int n = ids.Length * d;
            switch (w.Format)
            {
                case WeightFormat.F32: KernelsFor<F32Weights>().Embedding(_stream, n, w.F32View, rows, o.View, d); break;
                case WeightFormat.F16: KernelsFor<F16Weights>().Embedding(_stream, n, w.F16View, rows, o.View, d); break;
                case WeightFormat.BF16: KernelsFor<BF16Weights>().Embedding(_stream, n, w.BF16View, rows, o.View, d); break;
                default: KernelsFor<Int8Weights>().Embedding(_stream, n, w.Int8View, rows, o.View, d); break;
            }
        }
    }

    /// <inheritdoc />
    protected override void LinearCore(IBuffer input, IWeight weight, IBuffer output, int rows, bool accumulate) =>
        LinearWith(input, weight, output, rows, accumulate, LinearKernel.Auto);

    /// <summary><see cref="BackendBase.Linear(IBuffer, IWeight, IBuffer, int, bool)"/> with a chosen kernel (tests and benchmarks
    /// compare them), checked by the same rule.</summary>
    public void Linear(IBuffer input, IWeight weight, IBuffer output, int rows, bool accumulate, LinearKernel kernel)
    {
        CheckLinear(input, weight, output, rows, nameof(output));
        LinearWith(input, weight, output, rows, accumulate, kernel);
    }

    private void LinearWith(IBuffer input, IWeight weight, IBuffer output, int rows, bool accumulate, LinearKernel kernel)
    {
        var w = Own(weight);
        var x = Own(input, nameof(input));
        var y = Own(output, nameof(output));
        if (kernel == LinearKernel.Gemv && !_warpShuffles)
            throw new NotSupportedException($"{DeviceName} has no warp shuffles (OpenCL sub-groups), which the GEMV kernel needs; use LinearKernel.Tiled or Naive.");
        if (kernel == LinearKernel.Auto)
            kernel = _accelerator is CPUAccelerator ? LinearKernel.Naive
                : rows <= GemvMaxRows && _warpShuffles ? LinearKernel.Gemv : LinearKernel.Tiled;
        if (rows == 0 || w.Rows == 0) return;
        lock (_gate)
        {
            EnterDevice();
            switch (w.Format)
            {
                case WeightFormat.F32: LinearWith(w.F32View, x.View, y.View, rows, w.Cols, w.Rows, accumulate, kernel); break;
                case WeightFormat.F16: LinearWith(w.F16View, x.View, y.View, rows, w.Cols, w.Rows, accumulate, kernel); break;
                case WeightFormat.BF16: LinearWith(w.BF16View, x.View, y.View, rows, w.Cols, w.Rows, accumulate, kernel); break;
                default: LinearWith(w.Int8View, x.View, y.View, rows, w.Cols, w.Rows, accumulate, kernel); break;
            }
        }
    }

    private void LinearWith<TWeight>(TWeight weight, ArrayView<float> x, ArrayView<float> y, int rows, int inDim, int outDim,
        bool accumulate, LinearKernel kernel)
        where TWeight : struct, IWeightView
    {
        var k = KernelsFor<TWeight>();
        int add = accumulate ? 1 : 0;
        switch (kernel)
        {
            case LinearKernel.Naive:
                k.LinearNaive(_stream, new Index2D(outDim, rows), x, weight, y, inDim, outDim, add);
                break;
            case LinearKernel.Tiled:
                var tiles = new KernelConfig(new Index2D(CeilDiv(outDim, _tile), CeilDiv(rows, _tile)), new Index2D(_tile, _tile));
                k.LinearTiled(_stream, tiles, x, weight, y, rows, inDim, outDim, add);
                break;
            default:
                int warpsPerGroup = _gemvGroup / _accelerator.WarpSize;
                var warps = new KernelConfig(CeilDiv(outDim, warpsPerGroup), _gemvGroup);
                k.LinearGemv!(_stream, warps, x, weight, y, rows, inDim, outDim, add);
                break;
        }
    }

    /// <inheritdoc />
    protected override void RmsNormCore(IBuffer input, IWeight weight, IBuffer output, int rows, float epsilon)
    {
        var w = Own(weight);
        var x = Own(input, nameof(input));
        var y = Own(output, nameof(output));
        int d = w.Cols;
        if (rows == 0 || d == 0) return;
        var config = new KernelConfig(rows, _reduceGroup);
        lock (_gate)
        {
            EnterDevice();
            switch (w.Format)
            {
                case WeightFormat.F32: KernelsFor<F32Weights>().RmsNorm(_stream, config, x.View, w.F32View, y.View, d, epsilon); break;
                case WeightFormat.F16: KernelsFor<F16Weights>().RmsNorm(_stream, config, x.View, w.F16View, y.View, d, epsilon); break;
                case WeightFormat.BF16: KernelsFor<BF16Weights>().RmsNorm(_stream, config, x.View, w.BF16View, y.View, d, epsilon); break;
                default: KernelsFor<Int8Weights>().RmsNorm(_stream, config, x.View, w.Int8View, y.View, d, epsilon); break;
            }
        }
    }

    /// <inheritdoc />
    protected override void ActivateCore(IBuffer gate, IBuffer? up, ActivationKind kind, int length)
    {
        var g = Own(gate, nameof(gate));
        var u = up is null ? null : Own(up, nameof(up));
        if (length == 0) return;
        lock (_gate)
        {
            EnterDevice();
            _activate(_stream, length, g.View, u?.View ?? _placeholder.View, (int)kind, u is null ? 0 : 1);
        }
    }

    /// <inheritdoc />
    protected override void AddCore(IBuffer source, IBuffer destination, int length)
    {
        var s = Own(source, nameof(source));
        var d = Own(destination, nameof(destination));
        if (length == 0) return;
        lock (_gate)
        {
            EnterDevice();
            _add(_stream, length, s.View, d.View);
        }
    }

    /// <inheritdoc />
    protected override void ScaleCore(IBuffer buffer, float factor, int length)
    {
        var b = Own(buffer, nameof(buffer));
        if (length == 0) return;
        lock (_gate)
        {
            EnterDevice();
            _scale(_stream, length, b.View, factor);
        }
    }

    /// <inheritdoc />
    protected override void PositionBiasCore(IWeight table, IBuffer output, int queryLength, int keyLength, int queryOffset,
        bool bidirectional, int numBuckets, int maxDistance)
    {
        var w = Own(table);
        var o = Own(output, nameof(output));
        int maxExact = (bidirectional ? numBuckets / 2 : numBuckets) / 2;
        if (queryLength == 0 || keyLength == 0) return;
        var p = new PositionBiasParams
        {
            Heads = w.Cols,
            QueryLength = queryLength,
            KeyLength = keyLength,
            QueryOffset = queryOffset,
            Bidirectional = bidirectional ? 1 : 0,
            NumBuckets = numBuckets,
            MaxDistance = maxDistance,
            // As RelativePosition.Bucket: log of a double ratio, rounded to fp32 (torch: math.log, then a float32 tensor).
            LogDistanceRatio = (float)Math.Log((double)maxDistance / maxExact),
        };
        var extent = new Index2D(keyLength, queryLength);
        lock (_gate)
        {
            EnterDevice();
            switch (w.Format)
            {
                case WeightFormat.F32: KernelsFor<F32Weights>().PositionBias(_stream, extent, w.F32View, o.View, p); break;
                case WeightFormat.F16: KernelsFor<F16Weights>().PositionBias(_stream, extent, w.F16View, o.View, p); break;
                case WeightFormat.BF16: KernelsFor<BF16Weights>().PositionBias(_stream, extent, w.BF16View, o.View, p); break;
                default: KernelsFor<Int8Weights>().PositionBias(_stream, extent, w.Int8View, o.View, p); break;
            }
        }
    }

    /// <inheritdoc />
    /// <remarks>One thread group per (batch, head, query) holds that query's scores in shared memory, so KeyLength is
    /// bounded by the device's shared memory per group (48 KiB on CUDA: about 12,000 keys); beyond it this throws
    /// <see cref="NotSupportedException"/>.</remarks>
    protected override void AttentionCore(IBuffer query, IBuffer key, IBuffer value, IBuffer output, AttentionShape shape,
        IBuffer? bias, IBuffer? keyMask)
    {
        var s = shape;
        var q = Own(query, nameof(query));
        var k = Own(key, nameof(key));
        var v = Own(value, nameof(value));
        var o = Own(output, nameof(output));
        var b = bias is null ? null : Own(bias, nameof(bias));
        var m = keyMask is null ? null : Own(keyMask, nameof(keyMask));
        long groups = (long)s.Batch * s.Heads * s.QueryLength;
        if (groups == 0 || s.HeadDim == 0) return;

        var p = new AttentionParams
        {
            Batch = s.Batch,
            Heads = s.Heads,
            HeadDim = s.HeadDim,
            QueryLength = s.QueryLength,
            KeyLength = s.KeyLength,
            KeyCapacity = s.KeyCapacity,
            Causal = s.Causal ? 1 : 0,
            QueryOffset = s.QueryOffset,
            HasBias = b is null ? 0 : 1,
            HasMask = m is null ? 0 : 1,
        };
        int sharedFloats = p.SharedFloats(_attentionGroup);
        if ((long)sharedFloats * sizeof(float) > _accelerator.MaxSharedMemoryPerGroup)
            throw new NotSupportedException(
                $"Attention over {s.KeyLength} keys (d_kv {s.HeadDim}) needs {sharedFloats * 4L} bytes of shared memory per group; " +
                $"{DeviceName} allows {_accelerator.MaxSharedMemoryPerGroup}. Use shorter inputs or the CPU backend.");
        if (groups > int.MaxValue) throw new NotSupportedException($"Attention over {groups} (batch, head, query) triples is too large.");
        var config = new KernelConfig((int)groups, _attentionGroup, SharedMemoryConfig.RequestDynamic<float>(sharedFloats));
        lock (_gate)
        {
            EnterDevice();
            _attention(_stream, config, q.View, k.View, v.View, o.View, b?.View ?? _placeholder.View,
                m?.View ?? _placeholder.View, p);
        }
    }

    /// <inheritdoc />
    protected override void AppendToCacheCore(IBuffer source, IBuffer cache, int batch, int length, int capacity, int position, int rowLength)
    {
        var s = Own(source, nameof(source));
        var c = Own(cache, nameof(cache));
        long n = (long)batch * length * rowLength;
        if (n == 0) return;
        lock (_gate)
        {
            EnterDevice();
            _appendToCache(_stream, (int)n, s.View, c.View, length, capacity, position, rowLength);
        }
    }

    /// <inheritdoc />
    protected override void GatherRowsCore(IBuffer source, IBuffer destination, ReadOnlySpan<int> sourceRows, int rowLength, int rowStride)
    {
        var s = Own(source, nameof(source));
        var d = Own(destination, nameof(destination));
        int stride = rowStride == 0 ? rowLength : rowStride;
        if (sourceRows.IsEmpty || rowLength == 0) return;
        lock (_gate)
        {
            EnterDevice();
            var rows = UploadIndices(sourceRows);
            _gatherRows(_stream, sourceRows.Length * rowLength, s.View, d.View, rows, rowLength, stride);
        }
    }

    /// <inheritdoc />
    protected override void ArgMaxCore(IBuffer input, int rows, int cols, Span<int> result)
    {
        var x = Own(input, nameof(input));
        if (rows == 0) return;
        lock (_gate)
        {
            EnterDevice();
            EnsureIndexCapacity(rows);
            _argMax(_stream, new KernelConfig(rows, _reduceGroup), x.View, _indices.View, cols);
            _indices.View.SubView(0, rows).CopyToCPU(_stream, result[..rows]);
        }
    }

    /// <inheritdoc />
    public override void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            _accelerator.Bind();
            _accelerator.Dispose(); // frees every buffer and weight still allocated on it
            _context.Dispose();
        }
    }

    /// <inheritdoc />
    public override string ToString() => $"{Name} ({DeviceName})";

    // ---------------------------------------------------------------------------------------------------------------
    // Plumbing: kernel sets, device memory, argument checks

    private WeightKernels<TWeight> KernelsFor<TWeight>() where TWeight : struct, IWeightView
    {
        if (!_weightKernels.TryGetValue(typeof(TWeight), out object? kernels))
        {
            kernels = new WeightKernels<TWeight>(_accelerator, _warpShuffles);
            _weightKernels.Add(typeof(TWeight), kernels);
        }
        return (WeightKernels<TWeight>)kernels;
    }

    private ArrayView<int> UploadIndices(ReadOnlySpan<int> values)
    {
        EnsureIndexCapacity(values.Length);
        var view = _indices.View.SubView(0, values.Length);
        view.CopyFromCPU(_stream, values);
        return view;
    }

    private void EnsureIndexCapacity(int count)
    {
        if (_indices.Length >= count) return;
        var grown = AllocateDevice<int>(Math.Max(count, (int)Math.Min(int.MaxValue, _indices.Length * 2)), "index scratch");
        ReleaseLocked(_indices, _indices.LengthInBytes);
        _indices = grown;
    }

    /// <summary>Allocates device memory (at least one element), turning every way a device says "full" into one
    /// <see cref="InsufficientMemoryException"/> that says how much was asked for and how much is free.</summary>
    internal MemoryBuffer1D<T, Stride1D.Dense> AllocateDevice<T>(long count, string what) where T : unmanaged
    {
        long bytes = Math.Max(count, 1) * Marshal.SizeOf<T>();
        long? free = FreeBytes();
        if (AllocatedBytes + bytes > MemoryLimitBytes || (free is long f && bytes > f))
            throw OutOfMemory(bytes, what, null);
        try
        {
            var memory = _accelerator.Allocate1D<T>(Math.Max(count, 1));
            Interlocked.Add(ref _allocatedBytes, memory.LengthInBytes);
            return memory;
        }
        catch (Exception e) when (IsOutOfMemory(e))
        {
            throw OutOfMemory(bytes, what, e);
        }
    }

    /// <summary>Frees device memory of a buffer or weight (their Dispose).</summary>
    internal void Release(MemoryBuffer memory, long bytes)
    {
        lock (_gate) ReleaseLocked(memory, bytes);
    }

    private void ReleaseLocked(MemoryBuffer memory, long bytes)
    {
        if (!_disposed) _accelerator.Bind(); // after Dispose the accelerator has freed everything already
        memory.Dispose();
        Interlocked.Add(ref _allocatedBytes, -bytes);
    }

    private InsufficientMemoryException OutOfMemory(long bytes, string what, Exception? inner)
    {
        long? free = FreeBytes();
        string freeText = free is long f ? $"{Format(f)} free of {Format(DeviceMemoryBytes)}" : $"{Format(DeviceMemoryBytes)} in total";
        string limit = MemoryLimitBytes == long.MaxValue ? "" : $", limit {Format(MemoryLimitBytes)}";
        return new InsufficientMemoryException(
            $"{Name} ({DeviceName}): cannot allocate {Format(bytes)} for {what}; the device has {freeText} " +
            $"({Format(AllocatedBytes)} held by this backend{limit}). Dispose unused buffers, store weights as BF16 or Int8, " +
            "use a smaller model or batch, or run on the CPU backend.", inner);
    }

    private long? FreeBytes() => _accelerator switch
    {
        CudaAccelerator cuda => cuda.GetFreeMemory(),
        CPUAccelerator => null,
        _ => Math.Max(0, _accelerator.MemorySize - AllocatedBytes),
    };

    private static bool IsOutOfMemory(Exception e) => e switch
    {
        OutOfMemoryException => true,
        // CudaException carries the driver's error as text: its enum name or cuGetErrorString's "out of memory".
        CudaException cuda => $"{cuda.Error} {cuda.Message}".Contains("OUT_OF_MEMORY", StringComparison.OrdinalIgnoreCase)
            || $"{cuda.Error} {cuda.Message}".Contains("out of memory", StringComparison.OrdinalIgnoreCase),
        CLException cl => cl.Error is CLError.CL_MEM_OBJECT_ALLOCATION_FAILURE or CLError.CL_OUT_OF_RESOURCES or CLError.CL_OUT_OF_HOST_MEMORY,
        _ => e.InnerException is not null && IsOutOfMemory(e.InnerException),
    };

    private static long HostMemoryBytes() => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;

    private static string Format(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):F1} MiB",
        _ => $"{bytes} bytes",
    };

    private IlgpuBuffer Own(IBuffer buffer, string name)
    {
        ArgumentNullException.ThrowIfNull(buffer, name);
        if (buffer is not IlgpuBuffer b)
            throw new ArgumentException($"{name} is a {buffer.GetType().Name}, not a buffer of this ILGPU backend.", name);
        if (!ReferenceEquals(b.Owner, this))
            throw new ArgumentException($"{name} belongs to another ILGPU backend ({b.Owner}).", name);
        return b;
    }

    private IlgpuWeight Own(IWeight weight)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (weight is not IlgpuWeight w)
            throw new ArgumentException($"Weight '{weight.Name}' is a {weight.GetType().Name}, not a weight of this ILGPU backend.", nameof(weight));
        if (!ReferenceEquals(w.Owner, this))
            throw new ArgumentException($"Weight '{weight.Name}' belongs to another ILGPU backend ({w.Owner}).", nameof(weight));
        return w;
    }

    /// <summary>First thing inside the lock: refuses work after Dispose, and makes the accelerator current on this
    /// thread (a CUDA context is current per thread; callers may come from any thread).</summary>
    private void EnterDevice()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _accelerator.Bind();
    }

    private static int CeilDiv(int a, int b) => (a + b - 1) / b;
}
