// The fast CPU backend: IBackend over SIMD kernels (Vector512/256/128, scalar fallback) and a persistent worker
// pool. Weights are CpuWeight (used in place from the checkpoint's memory map when the format allows), activations
// are CpuBuffer. The kernels live one per file beside this one; ReferenceBackend is the twin they are tested against.
// Hot loops are marked AggressiveOptimization: the first tokens should not run tier-0 code.
using ManagedT5.Kernels.Reference;

namespace ManagedT5.Kernels.Cpu;

/// <summary>
/// SIMD, multithreaded implementation of <see cref="IBackend"/>. Safe to call from several threads at once: each op
/// uses the worker pool when it is free and runs on the calling thread alone when another op holds it.
/// </summary>
public sealed unsafe class CpuBackend : IBackend
{
    // Element counts below which an element-wise op stays on the calling thread.
    private const int ParallelMinElements = 1 << 16;
    private const int ParallelMinActivations = 1 << 13;

    private readonly WorkerPool _pool;
    private readonly CpuBufferPool _buffers = new();

    /// <inheritdoc />
    public string Name => "cpu";

    /// <summary>Threads an op may use (the calling thread included).</summary>
    public int Threads => _pool.Threads;

    /// <summary>The widest vector path the kernels take.</summary>
    public SimdLevel Simd { get; }

    /// <summary>Which Linear kernels this backend picks (tests and benchmarks set others to compare paths; set it
    /// between calls, not while one runs).</summary>
    internal LinearOptions LinearOptions { get; set; } = LinearOptions.Default;

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
    public IWeight CreateWeight(HostTensor source, WeightFormat? format = null) => CpuWeight.Create(source, format);

    /// <inheritdoc />
    public IBuffer Allocate(int length) => _buffers.Rent(length);

    /// <inheritdoc />
    public void Upload(ReadOnlySpan<float> source, IBuffer destination, int offset = 0) =>
        source.CopyTo(BufferOf(destination).Data.AsSpan(offset));

    /// <inheritdoc />
    public void Download(IBuffer source, Span<float> destination, int offset = 0) =>
        BufferOf(source).Data.AsSpan(offset, destination.Length).CopyTo(destination);

    /// <inheritdoc />
    public void Embedding(IWeight table, ReadOnlySpan<int> ids, IBuffer output)
    {
        CpuWeight weight = WeightOf(table);
        float[] y = BufferOf(output).Data;
        Require(y, (long)ids.Length * weight.Cols, nameof(output));
        fixed (float* yp = y)
        {
            var view = WeightView.Of(weight);
            for (int i = 0; i < ids.Length; i++)
                WeightRows.Widen(view, ids[i], 0, weight.Cols, yp + (long)i * weight.Cols);
        }
    }

    /// <inheritdoc />
    public void Linear(IBuffer input, IWeight weight, IBuffer output, int rows, bool accumulate = false)
    {
        CpuWeight w = WeightOf(weight);
        float[] x = BufferOf(input).Data, y = BufferOf(output).Data;
        Require(x, (long)rows * w.Cols, nameof(input));
        Require(y, (long)rows * w.Rows, nameof(output));
        if (rows == 0) return;
        fixed (float* xp = x)
        fixed (float* yp = y)
            LinearKernel.Run(_pool, Simd, LinearOptions, xp, w, yp, rows, accumulate);
    }

    /// <inheritdoc />
    /// <remarks>Up to three weights of one format run as one op (the input padded, laid out, quantized or packed once;
    /// one pool job over all their outputs); more, or weights whose kernels differ, run one by one.</remarks>
    public void Linears(IBuffer input, ReadOnlySpan<IWeight> weights, ReadOnlySpan<IBuffer> outputs, int rows)
    {
        IBackend.RequireOutputPerWeight(weights, outputs);
        if (weights.Length is 0 or > LinearKernel.MaxShared || rows == 0)
        {
            for (int i = 0; i < weights.Length; i++) Linear(input, weights[i], outputs[i], rows);
            return;
        }
        float[] x = BufferOf(input).Data;
        CpuWeight w0 = WeightOf(weights[0]);
        CpuWeight? w1 = weights.Length > 1 ? WeightOf(weights[1]) : null, w2 = weights.Length > 2 ? WeightOf(weights[2]) : null;
        float[] y0 = BufferOf(outputs[0]).Data;
        float[]? y1 = w1 is null ? null : BufferOf(outputs[1]).Data, y2 = w2 is null ? null : BufferOf(outputs[2]).Data;
        Require(x, (long)rows * w0.Cols, nameof(input));
        Require(y0, (long)rows * w0.Rows, nameof(outputs));
        if (w1 is not null) RequireShared(w0, w1, y1!, rows);
        if (w2 is not null) RequireShared(w0, w2, y2!, rows);
        fixed (float* xp = x)
        fixed (float* yp0 = y0) fixed (float* yp1 = y1) fixed (float* yp2 = y2)
        {
            Span<WeightView> views = stackalloc WeightView[weights.Length];
            Span<nint> ys = stackalloc nint[weights.Length];
            views[0] = WeightView.Of(w0);
            ys[0] = (nint)yp0;
            if (w1 is not null) { views[1] = WeightView.Of(w1); ys[1] = (nint)yp1; }
            if (w2 is not null) { views[2] = WeightView.Of(w2); ys[2] = (nint)yp2; }
            LinearKernel.RunShared(_pool, Simd, LinearOptions, xp, views, ys, rows, accumulate: false);
        }
    }

    private static void RequireShared(CpuWeight first, CpuWeight other, float[] output, int rows)
    {
        if (other.Cols != first.Cols)
            throw new ArgumentException(
                $"Weight '{other.Name}' has {other.Cols} in_features but '{first.Name}' has {first.Cols}; weights sharing an input must match.",
                "weights");
        Require(output, (long)rows * other.Rows, "outputs");
    }

    /// <inheritdoc />
    public void RmsNorm(IBuffer input, IWeight weight, IBuffer output, int rows, float epsilon)
    {
        CpuWeight w = WeightOf(weight);
        float[] x = BufferOf(input).Data, y = BufferOf(output).Data;
        int d = w.Cols;
        Require(x, (long)rows * d, nameof(input));
        Require(y, (long)rows * d, nameof(output));
        fixed (float* xp = x)
        fixed (float* yp = y)
        {
            float* gamma = (float*)w.Data;
            if (w.Format != WeightFormat.F32)
            {
                gamma = Scratch.Get(ScratchSlot.Vector, d);
                WeightRows.Widen(WeightView.Of(w), 0, 0, d, gamma);
            }
            int perItem = (long)rows * d < ParallelMinElements ? Math.Max(rows, 1) : Math.Max(1, (rows + _pool.Threads * 4 - 1) / (_pool.Threads * 4));
            var job = new RmsNormJob { Input = xp, Weight = gamma, Output = yp, DModel = d, Rows = rows, PerItem = perItem, Epsilon = epsilon, Level = Simd };
            _pool.Run(ref job, (rows + perItem - 1) / perItem);
        }
    }

    /// <inheritdoc />
    public void Activate(IBuffer gate, IBuffer? up, ActivationKind kind, int length)
    {
        float[] g = BufferOf(gate).Data;
        float[]? u = up is null ? null : BufferOf(up).Data;
        Require(g, length, nameof(gate));
        if (u is not null) Require(u, length, nameof(up));
        fixed (float* gp = g)
        fixed (float* upp = u)
        {
            var job = new ActivationJob { Gate = gp, Up = upp, Kind = kind, Length = length, PerItem = ChunkFor(length, ParallelMinActivations), Level = Simd };
            _pool.Run(ref job, (length + job.PerItem - 1) / job.PerItem);
        }
    }

    /// <inheritdoc />
    public void Add(IBuffer source, IBuffer destination, int length)
    {
        float[] s = BufferOf(source).Data, d = BufferOf(destination).Data;
        Require(s, length, nameof(source));
        Require(d, length, nameof(destination));
        fixed (float* sp = s)
        fixed (float* dp = d)
        {
            var job = new AddJob { Source = sp, Destination = dp, Length = length, PerItem = ChunkFor(length, ParallelMinElements), Level = Simd };
            _pool.Run(ref job, (length + job.PerItem - 1) / job.PerItem);
        }
    }

    /// <inheritdoc />
    public void Scale(IBuffer buffer, float factor, int length)
    {
        float[] b = BufferOf(buffer).Data;
        Require(b, length, nameof(buffer));
        fixed (float* bp = b) ElementWiseKernels.Scale(bp, factor, length, Simd);
    }

    /// <inheritdoc />
    public void PositionBias(IWeight table, IBuffer output, int queryLength, int keyLength, int queryOffset,
        bool bidirectional, int numBuckets, int maxDistance)
    {
        CpuWeight t = WeightOf(table);
        float[] y = BufferOf(output).Data;
        Require(y, (long)t.Cols * queryLength * keyLength, nameof(output));
        if (queryLength == 0 || keyLength == 0) return;
        fixed (float* yp = y)
            PositionBiasKernel.Run(WeightView.Of(t), yp, queryLength, keyLength,
                queryOffset, bidirectional, numBuckets, maxDistance);
    }

    /// <inheritdoc />
    public void Attention(IBuffer query, IBuffer key, IBuffer value, IBuffer output, AttentionShape shape,
        IBuffer? bias, IBuffer? keyMask)
    {
        float[] q = BufferOf(query).Data, k = BufferOf(key).Data, v = BufferOf(value).Data, o = BufferOf(output).Data;
        float[]? b = bias is null ? null : BufferOf(bias).Data;
        float[]? m = keyMask is null ? null : BufferOf(keyMask).Data;
        shape.Require();
        long rows = (long)shape.Batch * shape.QueryLength * shape.InnerDim;
        Require(q, rows, nameof(query));
        Require(o, rows, nameof(output));
        Require(k, (long)shape.Batch * shape.KeyCapacity * shape.InnerDim, nameof(key));
        Require(v, (long)shape.Batch * shape.KeyCapacity * shape.InnerDim, nameof(value));
        if (b is not null) Require(b, (long)shape.Heads * shape.QueryLength * shape.KeyLength, nameof(bias));
        if (m is not null) Require(m, (long)shape.Batch * shape.KeyLength, nameof(keyMask));

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
    public void AppendToCache(IBuffer source, IBuffer cache, int batch, int length, int capacity, int position, int rowLength)
    {
        float[] s = BufferOf(source).Data, c = BufferOf(cache).Data;
        if (position < 0 || position + length > capacity)
            throw new ArgumentOutOfRangeException(nameof(position), $"Rows {position}..{position + length} do not fit a cache of capacity {capacity}.");
        Require(s, (long)batch * length * rowLength, nameof(source));
        Require(c, (long)batch * capacity * rowLength, nameof(cache));
        for (int b = 0; b < batch; b++)
            Array.Copy(s, (long)b * length * rowLength, c, ((long)b * capacity + position) * rowLength, (long)length * rowLength);
    }

    /// <inheritdoc />
    public void GatherRows(IBuffer source, IBuffer destination, ReadOnlySpan<int> sourceRows, int rowLength, int rowStride = 0)
    {
        float[] s = BufferOf(source).Data, d = BufferOf(destination).Data;
        if (rowStride != 0 && rowStride < rowLength)
            throw new ArgumentOutOfRangeException(nameof(rowStride), rowStride, $"Rows of {rowLength} floats cannot start {rowStride} apart.");
        long stride = rowStride == 0 ? rowLength : rowStride;
        if (sourceRows.Length > 0) Require(d, (sourceRows.Length - 1) * stride + rowLength, nameof(destination));
        for (int r = 0; r < sourceRows.Length; r++)
            Array.Copy(s, sourceRows[r] * stride, d, r * stride, rowLength);
    }

    /// <inheritdoc />
    public void ArgMax(IBuffer input, int rows, int cols, Span<int> result)
    {
        float[] x = BufferOf(input).Data;
        Require(x, (long)rows * cols, nameof(input));
        if (result.Length < rows) throw new ArgumentException($"result holds {result.Length} ints; {rows} rows need as many.", nameof(result));
        fixed (float* xp = x)
            for (int r = 0; r < rows; r++) result[r] = ArgMaxKernel.Run(xp + (long)r * cols, cols, Simd);
    }

    /// <summary>Stops the worker threads.</summary>
    public void Dispose() => _pool.Dispose();

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

    private static void Require(float[] array, long length, string name)
    {
        if (array.Length < length)
            throw new ArgumentException($"Buffer '{name}' holds {array.Length} floats but the op needs {length}; allocate it at the largest size used.", name);
    }

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
