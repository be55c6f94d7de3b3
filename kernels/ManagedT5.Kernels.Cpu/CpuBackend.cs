// The fast CPU backend: IBackend over SIMD kernels (Vector512/256/128, scalar fallback) and a persistent worker
// pool. Weights are CpuWeight (used in place from the checkpoint's memory map when the format allows), activations
// are CpuBuffer. BackendBase has checked every op's arguments before a *Core method runs. The kernels live one per
// file beside this one; ReferenceBackend is the twin they are tested against.
// Hot loops are marked AggressiveOptimization: the first tokens should not run tier-0 code.
using System.Runtime.InteropServices;

namespace ManagedT5.Kernels.Cpu;

/// <summary>
/// SIMD, multithreaded implementation of <see cref="IBackend"/>. Safe to call from several threads at once: each op
/// uses the worker pool when it is free and runs on the calling thread alone when another op holds it.
/// </summary>
public sealed unsafe class CpuBackend : BackendBase
{
    // Element counts below which an element-wise op stays on the calling thread.
    private const int ParallelMinElements = 1 << 16;
    private const int ParallelMinActivations = 1 << 13;

    private readonly WorkerPool _pool;
    private readonly CpuBufferPool _buffers = new();

    /// <inheritdoc />
    public override string Name => "cpu";

    /// <summary>Threads an op may use (the calling thread included).</summary>
    public int Threads => _pool.Threads;

    /// <summary>The widest vector path the kernels take.</summary>
    public SimdLevel Simd { get; }

    /// <summary>Most threads a backend may use: 4 per processor. More only adds contention; a huge count would
    /// try to start that many OS threads.</summary>
    public static int MaxThreads => 4 * Environment.ProcessorCount;

    /// <summary>A backend using <paramref name="threads"/> threads (0: one per processor, at most
    /// <see cref="MaxThreads"/>) and the widest SIMD the CPU has.</summary>
    public CpuBackend(int threads = 0) : this(threads, SimdLevel.Vector512) { }

    /// <summary>A backend limited to <paramref name="maxSimd"/> (clamped to what the CPU accelerates): tests use it to
    /// run the Vector256, Vector128 and scalar paths on an AVX-512 machine.</summary>
    public CpuBackend(int threads, SimdLevel maxSimd)
    {
        if (threads < 0 || threads > MaxThreads)
            throw new ArgumentOutOfRangeException(nameof(threads),
                $"threads: {threads} is not a thread count; use 0 for one thread per processor, or 1 to {MaxThreads} " +
                $"(4 per processor; this machine has {Environment.ProcessorCount}).");
        Simd = SimdLevels.Clamp(maxSimd);
        _pool = new WorkerPool(threads == 0 ? Environment.ProcessorCount : threads);
    }

    /// <inheritdoc />
    public override IWeight CreateWeight(HostTensor source, WeightFormat? format = null) => CpuWeight.Create(source, format);

    /// <inheritdoc />
    protected override IBuffer AllocateCore(int length) => _buffers.Rent(length);

    /// <inheritdoc />
    protected override void UploadCore(ReadOnlySpan<float> source, IBuffer destination, int offset) =>
        source.CopyTo(BufferOf(destination).Data.AsSpan(offset));

    /// <inheritdoc />
    protected override void DownloadCore(IBuffer source, Span<float> destination, int offset) =>
        BufferOf(source).Data.AsSpan(offset, destination.Length).CopyTo(destination);

    /// <inheritdoc />
    protected override void EmbeddingCore(IWeight table, ReadOnlySpan<int> ids, IBuffer output)
    {
        CpuWeight weight = WeightOf(table);
        float[] y = BufferOf(output).Data;
        fixed (float* yp = y)
        {
            var view = WeightView.Of(weight);
            for (int i = 0; i < ids.Length; i++)
                WeightRows.Widen(view, ids[i], 0, weight.Cols, yp + (long)i * weight.Cols);
        }
    }

    /// <inheritdoc />
    protected override void LinearCore(IBuffer input, IWeight weight, IBuffer output, int rows, bool accumulate) =>
        LinearWith(input, weight, output, rows, accumulate, KernelChoices.Production);

    /// <summary><see cref="BackendBase.Linear(IBuffer, IWeight, IBuffer, int, bool)"/> down the paths
    /// <paramref name="choices"/> allow (A/B benchmarks and kernel tests; production never calls it), checked by the
    /// same rule.</summary>
    internal void Linear(IBuffer input, IWeight weight, IBuffer output, int rows, bool accumulate, KernelChoices choices)
    {
        CheckLinear(input, weight, output, rows, nameof(output));
        LinearWith(input, weight, output, rows, accumulate, choices);
    }

    /// <summary><see cref="BackendBase.Linears"/> down the paths <paramref name="choices"/> allow (A/B benchmarks and
    /// kernel tests; production never calls it), checked by the same rule.</summary>
    internal void Linears(IBuffer input, ReadOnlySpan<IWeight> weights, ReadOnlySpan<IBuffer> outputs, int rows, KernelChoices choices)
    {
        CheckLinears(input, weights, outputs, rows);
        LinearsWith(input, weights, outputs, rows, choices);
    }

    private void LinearWith(IBuffer input, IWeight weight, IBuffer output, int rows, bool accumulate, KernelChoices choices)
    {
        CpuWeight w = WeightOf(weight);
        float[] x = BufferOf(input).Data, y = BufferOf(output).Data;
        if (rows == 0) return;
        fixed (float* xp = x)
        fixed (float* yp = y)
            LinearKernel.Run(_pool, Simd, choices, xp, w, yp, rows, accumulate);
    }

    /// <summary>Up to three weights of one format run as one op (the input padded, laid out, quantized or packed once;
    /// one pool job over all their outputs); more, or weights whose kernels differ, run one by one.</summary>
    protected override void LinearsCore(IBuffer input, ReadOnlySpan<IWeight> weights, ReadOnlySpan<IBuffer> outputs, int rows) =>
        LinearsWith(input, weights, outputs, rows, KernelChoices.Production);

    private void LinearsWith(IBuffer input, ReadOnlySpan<IWeight> weights, ReadOnlySpan<IBuffer> outputs, int rows, KernelChoices choices)
    {
        if (weights.Length is 0 or > LinearKernel.MaxShared || rows == 0)
        {
            for (int i = 0; i < weights.Length; i++) LinearWith(input, weights[i], outputs[i], rows, accumulate: false, choices);
            return;
        }
        float[] x = BufferOf(input).Data;
        CpuWeight w0 = WeightOf(weights[0]);
        CpuWeight? w1 = weights.Length > 1 ? WeightOf(weights[1]) : null, w2 = weights.Length > 2 ? WeightOf(weights[2]) : null;
        float[] y0 = BufferOf(outputs[0]).Data;
        float[]? y1 = w1 is null ? null : BufferOf(outputs[1]).Data, y2 = w2 is null ? null : BufferOf(outputs[2]).Data;
        fixed (float* xp = x)
        fixed (float* yp0 = y0) fixed (float* yp1 = y1) fixed (float* yp2 = y2)
        {
            Span<WeightView> views = stackalloc WeightView[weights.Length];
            Span<nint> ys = stackalloc nint[weights.Length];
            views[0] = WeightView.Of(w0);
            ys[0] = (nint)yp0;
            if (w1 is not null) { views[1] = WeightView.Of(w1); ys[1] = (nint)yp1; }
            if (w2 is not null) { views[2] = WeightView.Of(w2); ys[2] = (nint)yp2; }
            LinearKernel.RunShared(_pool, Simd, choices, xp, views, ys, rows, accumulate: false);
        }
    }

    /// <inheritdoc />
    protected override void RmsNormCore(IBuffer input, IWeight weight, IBuffer output, int rows, float epsilon)
    {
        CpuWeight w = WeightOf(weight);
        float[] x = BufferOf(input).Data, y = BufferOf(output).Data;
        int d = w.Cols;
        fixed (float* xp = x)
        fixed (float* yp = y)
        {
            float* gamma = (float*)w.Data;
            if (w.Format != WeightFormat.F32)
            {
                gamma = Scratch.Get(ScratchSlot.SmallVector, d);
                WeightRows.Widen(WeightView.Of(w), 0, 0, d, gamma);
            }
            int perItem = (long)rows * d < ParallelMinElements ? Math.Max(rows, 1) : Math.Max(1, (rows + _pool.Threads * 4 - 1) / (_pool.Threads * 4));
            var job = new RmsNormJob { Input = xp, Weight = gamma, Output = yp, DModel = d, Rows = rows, PerItem = perItem, Epsilon = epsilon, Level = Simd };
            _pool.Run(ref job, (rows + perItem - 1) / perItem);
        }
    }

    /// <inheritdoc />
    protected override void ActivateCore(IBuffer gate, IBuffer? up, ActivationKind kind, int length)
    {
        float[] g = BufferOf(gate).Data;
        float[]? u = up is null ? null : BufferOf(up).Data;
        fixed (float* gp = g)
        fixed (float* upp = u)
        {
            var job = new ActivationJob { Gate = gp, Up = upp, Kind = kind, Length = length, PerItem = ChunkFor(length, ParallelMinActivations), Level = Simd };
            _pool.Run(ref job, (length + job.PerItem - 1) / job.PerItem);
        }
    }

    /// <inheritdoc />
    protected override void AddCore(IBuffer source, IBuffer destination, int length)
    {
        float[] s = BufferOf(source).Data, d = BufferOf(destination).Data;
        fixed (float* sp = s)
        fixed (float* dp = d)
        {
            var job = new AddJob { Source = sp, Destination = dp, Length = length, PerItem = ChunkFor(length, ParallelMinElements), Level = Simd };
            _pool.Run(ref job, (length + job.PerItem - 1) / job.PerItem);
        }
    }

    /// <inheritdoc />
    protected override void ScaleCore(IBuffer buffer, float factor, int length)
    {
        float[] b = BufferOf(buffer).Data;
        fixed (float* bp = b) ElementWiseKernels.Scale(bp, factor, length, Simd);
    }

    /// <inheritdoc />
    protected override void PositionBiasCore(IWeight table, IBuffer output, int queryLength, int keyLength, int queryOffset,
        bool bidirectional, int numBuckets, int maxDistance)
    {
        CpuWeight t = WeightOf(table);
        float[] y = BufferOf(output).Data;
        if (queryLength == 0 || keyLength == 0) return;
        fixed (float* yp = y)
            PositionBiasKernel.Run(WeightView.Of(t), yp, queryLength, keyLength,
                queryOffset, bidirectional, numBuckets, maxDistance);
    }

    /// <inheritdoc />
    protected override void AttentionCore(IBuffer query, IBuffer key, IBuffer value, IBuffer output, AttentionShape shape,
        IBuffer? bias, IBuffer? keyMask)
    {
        float[] q = BufferOf(query).Data, k = BufferOf(key).Data, v = BufferOf(value).Data, o = BufferOf(output).Data;
        float[]? b = bias is null ? null : BufferOf(bias).Data;
        float[]? m = keyMask is null ? null : BufferOf(keyMask).Data;
        fixed (float* qp = q) fixed (float* kp = k) fixed (float* vp = v) fixed (float* op = o)
        fixed (float* bp = b) fixed (float* mp = m)
        {
            int block = AttentionKernel.QueryBlock(shape, _pool.Threads);
            int blocks = (shape.QueryLength + block - 1) / block;
            var job = new AttentionJob { Query = qp, Key = kp, Value = vp, Output = op, Bias = bp, KeyMask = mp, Shape = shape, QueryBlocks = blocks, QueryBlock = block, Level = Simd };
            int units = shape.Batch * shape.Heads * blocks;
            _pool.RunRanges(ref job, units, AttentionKernel.Grain(units, _pool.Threads, block, shape.KeyLength));
        }
    }

    /// <inheritdoc />
    protected override void AppendToCacheCore(IBuffer source, IBuffer cache, int batch, int length, int capacity, int position, int rowLength)
    {
        float[] s = BufferOf(source).Data, c = BufferOf(cache).Data;
        for (int b = 0; b < batch; b++)
            Array.Copy(s, (long)b * length * rowLength, c, ((long)b * capacity + position) * rowLength, (long)length * rowLength);
    }

    /// <inheritdoc />
    /// <remarks>Each row's buffers are pinned for the call (GCHandles: no managed allocation) and the (row, head) pairs
    /// are split across the pool; each pair is computed by <see cref="AttentionKernel.OneQuery"/>, as a batch-1 decode
    /// step's Attention computes it.</remarks>
    protected override void AttentionPerRowCore(IBuffer query, ReadOnlySpan<IBuffer> keys, ReadOnlySpan<IBuffer> values, IBuffer output,
        int heads, int headDim, ReadOnlySpan<int> keyLengths, IBuffer? bias, int biasLength, ReadOnlySpan<IBuffer?> keyMasks)
    {
        float[] q = BufferOf(query).Data, o = BufferOf(output).Data;
        float[]? b = bias is null ? null : BufferOf(bias).Data;
        const int Pass = 128;                            // rows pinned at a time: 3 x 128 handles and pointers on the stack
        fixed (float* qp = q) fixed (float* op = o) fixed (float* bp = b)
            for (int first = 0; first < keyLengths.Length; first += Pass)
            {
                int rows = Math.Min(Pass, keyLengths.Length - first);
                long offset = (long)first * heads * headDim;
                AttentionPerRowPass(qp + offset, op + offset, bp, biasLength, keys.Slice(first, rows), values.Slice(first, rows),
                    keyMasks.IsEmpty ? keyMasks : keyMasks.Slice(first, rows), keyLengths.Slice(first, rows), heads, headDim);
            }
    }

    private void AttentionPerRowPass(float* q, float* o, float* bias, int biasLength, ReadOnlySpan<IBuffer> keys, ReadOnlySpan<IBuffer> values,
        ReadOnlySpan<IBuffer?> keyMasks, ReadOnlySpan<int> keyLengths, int heads, int headDim)
    {
        int rows = keyLengths.Length;
        float** k = stackalloc float*[rows], v = stackalloc float*[rows], m = stackalloc float*[rows];
        Span<GCHandle> pins = stackalloc GCHandle[3 * rows];
        int pinned = 0;
        try
        {
            for (int r = 0; r < rows; r++)
            {
                k[r] = Pin(BufferOf(keys[r]).Data, pins, ref pinned);
                v[r] = Pin(BufferOf(values[r]).Data, pins, ref pinned);
                m[r] = keyMasks.IsEmpty || keyMasks[r] is not { } mask ? null : Pin(BufferOf(mask).Data, pins, ref pinned);
            }
            fixed (int* lengths = keyLengths)
            {
                int longest = 0;
                for (int r = 0; r < rows; r++) longest = Math.Max(longest, keyLengths[r]);
                var job = new AttentionPerRowJob { Query = q, Output = o, Bias = bias, BiasLength = biasLength, Keys = k, Values = v, Masks = m,
                    Lengths = lengths, Heads = heads, HeadDim = headDim, Level = Simd };
                int units = rows * heads;
                _pool.RunRanges(ref job, units, AttentionKernel.Grain(units, _pool.Threads, 1, longest));
            }
        }
        finally
        {
            for (int i = 0; i < pinned; i++) pins[i].Free();
        }
    }

    private static float* Pin(float[] data, Span<GCHandle> pins, ref int pinned)
    {
        pins[pinned] = GCHandle.Alloc(data, GCHandleType.Pinned);
        return (float*)pins[pinned++].AddrOfPinnedObject();
    }

    /// <inheritdoc />
    protected override void AppendToCachePerRowCore(IBuffer source, ReadOnlySpan<IBuffer> caches, ReadOnlySpan<int> positions, int rowLength)
    {
        float[] s = BufferOf(source).Data;
        for (int r = 0; r < positions.Length; r++)
            Array.Copy(s, (long)r * rowLength, BufferOf(caches[r]).Data, (long)positions[r] * rowLength, rowLength);
    }

    /// <inheritdoc />
    protected override void GatherRowsCore(IBuffer source, IBuffer destination, ReadOnlySpan<int> sourceRows, int rowLength, int rowStride)
    {
        float[] s = BufferOf(source).Data, d = BufferOf(destination).Data;
        long stride = rowStride == 0 ? rowLength : rowStride;
        for (int r = 0; r < sourceRows.Length; r++)
            Array.Copy(s, sourceRows[r] * stride, d, r * stride, rowLength);
    }

    /// <inheritdoc />
    protected override void ArgMaxCore(IBuffer input, int rows, int cols, Span<int> result)
    {
        float[] x = BufferOf(input).Data;
        fixed (float* xp = x)
            for (int r = 0; r < rows; r++) result[r] = ArgMaxKernel.Run(xp + (long)r * cols, cols, Simd);
    }

    /// <summary>Worker threads still running (tests check that <see cref="Dispose"/> stops them).</summary>
    internal int LiveWorkers => _pool.LiveWorkers;

    /// <summary>Stops the worker threads.</summary>
    public override void Dispose() => _pool.Dispose();

    /// <summary>Elements per work item of an element-wise op: all of it when small, else about four items per thread
    /// (a multiple of 64 so vector loops stay whole).</summary>
    private int ChunkFor(int length, int parallelMin)
    {
        if (length < parallelMin) return Math.Max(length, 1);
        int items = _pool.Threads * 4;
        return Math.Max(64, (length + items - 1) / items + 63 & ~63);
    }

    // The interface project's CpuBuffer.Of / CpuWeight.Of are internal to it; these are the same checks.
    private static CpuBuffer BufferOf(IBuffer buffer) => buffer as CpuBuffer
        ?? throw new ArgumentException($"Buffer of type {buffer.GetType().Name} does not belong to a CPU backend.", nameof(buffer));

    private static CpuWeight WeightOf(IWeight weight) => weight as CpuWeight
        ?? throw new ArgumentException($"Weight '{weight.Name}' does not belong to a CPU backend.", nameof(weight));

    private struct RmsNormJob : IParallelJob
    {
        public float* Input, Weight, Output;
        public int DModel, Rows, PerItem;
        public float Epsilon;
        public SimdLevel Level;

        public void Execute(int index)
        {
            int first = index * PerItem;
            RmsNormKernel.Run(Input, Weight, Output, DModel, first, Math.Min(first + PerItem, Rows), Epsilon, Level);
        }
    }

    private struct ActivationJob : IParallelJob
    {
        public float* Gate, Up;
        public ActivationKind Kind;
        public int Length, PerItem;
        public SimdLevel Level;

        public void Execute(int index)
        {
            int first = index * PerItem;
            ActivationKernel.Run(Gate, Up, Kind, first, Math.Min(first + PerItem, Length), Level);
        }
    }

    private struct AddJob : IParallelJob
    {
        public float* Source, Destination;
        public int Length, PerItem;
        public SimdLevel Level;

        public void Execute(int index)
        {
            int first = index * PerItem;
            ElementWiseKernels.Add(Source + first, Destination + first, Math.Min(PerItem, Length - first), Level);
        }
    }

    /// <summary>Units [first, end) of (row, head) of <see cref="IBackend.AttentionPerRow"/>, heads fastest.</summary>
    private struct AttentionPerRowJob : IRangeJob
    {
        public float* Query, Output, Bias;
        public float** Keys, Values, Masks;
        public int* Lengths;
        public int BiasLength, Heads, HeadDim;
        public SimdLevel Level;

        public void Execute(int first, int end)
        {
            for (int index = first; index < end; index++)
            {
                int r = index / Heads, h = index % Heads;
                AttentionKernel.RunPerRow(Query, Keys[r], Values[r], Output, Heads * HeadDim, HeadDim, Lengths[r], Bias, BiasLength,
                    Masks[r], r, h, Level);
            }
        }
    }

    /// <summary>Units [first, end) of (batch, head, query block), query blocks fastest.</summary>
    private struct AttentionJob : IRangeJob
    {
        public float* Query, Key, Value, Output, Bias, KeyMask;
        public AttentionShape Shape;
        public int QueryBlocks, QueryBlock;
        public SimdLevel Level;

        public void Execute(int first, int end)
        {
            for (int index = first; index < end; index++)
            {
                int block = index % QueryBlocks, head = index / QueryBlocks % Shape.Heads, batch = index / QueryBlocks / Shape.Heads;
                int query = block * QueryBlock;
                AttentionKernel.Run(Query, Key, Value, Output, Shape, Bias, KeyMask, batch, head, query,
                    Math.Min(query + QueryBlock, Shape.QueryLength), Level);
            }
        }
    }
}
