// Every IBackend op on every ILGPU device against the scalar reference, on odd sizes (1, 3, 17, 33, 257: every tail
// of every group and tile) and on real flan-t5-small shapes (d_model 512, 6 heads of d_kv 64, d_ff 1024, vocab 32128).
// ILGPU's CPU accelerator runs each group's threads as OS threads, so barrier-heavy kernels are slow there: the
// largest shapes of the tiled kernel run on GPUs only. An op a device lacks comes out skipped with the reason (Twin).
namespace ManagedT5.Kernels.Ilgpu.Tests;

public sealed class ParityTests
{
    // flan-t5-small (tests/fixtures/configs/flan-t5-small.json)
    private const int DModel = 512, Heads = 6, DKv = 64, DFf = 1024, Vocab = 32128, NumBuckets = 32, MaxDistance = 128;

    /// <summary>Every way a weight can reach a backend: stored dtype kept, or converted on request.</summary>
    public static readonly (DType Stored, WeightFormat? Format)[] Formats =
    [
        (DType.F32, null), (DType.F16, null), (DType.BF16, null), (DType.F32, WeightFormat.BF16), (DType.F32, WeightFormat.Int8),
    ];

    private static string FormatName((DType Stored, WeightFormat? Format) f) => f.Format is null ? $"{f.Stored}" : $"{f.Stored}->{f.Format}";

    [DeviceTheory]
    public void EmbeddingMatchesReference(IlgpuDeviceKind device)
    {
        using var twin = new Twin(TestDevices.Backend(device));
        foreach (var format in Formats)
        {
            var table = twin.Weight("shared.weight", [101, 33], Parity.Random(101 * 33, 1), format.Stored, format.Format);
            int[] ids = [0, 100, 7, 7, 42];
            var output = twin.Zeros(ids.Length * 33);
            twin.Run(BackendOp.Embedding, (b, s) => b.Embedding(table[s], ids, output[s]));
            twin.AssertClose(output, ids.Length * 33, $"embedding {FormatName(format)}");
        }
        // flan-t5-small's table: 32128 x 512.
        var shared = twin.Weight("shared.weight", [Vocab, DModel], Parity.Random(Vocab * DModel, 2), DType.BF16);
        int[] prompt = [0, 32127, 1, 13959, 3, 17];
        var embedded = twin.Zeros(prompt.Length * DModel);
        twin.Run(BackendOp.Embedding, (b, s) => b.Embedding(shared[s], prompt, embedded[s]));
        twin.AssertClose(embedded, prompt.Length * DModel, "embedding flan-t5-small BF16");
    }

    public static readonly (int Rows, int In, int Out)[] LinearShapes =
        [(1, 1, 1), (3, 17, 33), (17, 33, 3), (2, 257, 19), (5, 8, 65)];

    [DeviceTheory]
    public void LinearEveryKernelMatchesReference(IlgpuDeviceKind device)
    {
        using var twin = new Twin(TestDevices.Backend(device));
        LinearKernel[] kernels = [LinearKernel.Naive, LinearKernel.Tiled, LinearKernel.Gemv, LinearKernel.Auto];
        foreach (var (rows, inDim, outDim) in LinearShapes)
            foreach (var format in Formats)
                foreach (var kernel in kernels)
                    foreach (bool accumulate in new[] { false, true })
                    {
                        if (kernel == LinearKernel.Tiled && format != Formats[0] && format != Formats[2] && !TestDevices.IsGpu(device) && accumulate)
                            continue; // the CPU accelerator's barriers are slow: every format once, accumulate with two
                        CheckLinear(twin, rows, inDim, outDim, format, kernel, accumulate, seed: rows * 1000 + inDim);
                    }
    }

    [DeviceTheory]
    public void LinearFlanT5SmallShapesMatchReference(IlgpuDeviceKind device)
    {
        using var twin = new Twin(TestDevices.Backend(device));
        bool gpu = TestDevices.IsGpu(device);
        // Decoding one token: GEMV over wi (1024 x 512) and wo (512 x 1024), each format.
        foreach (var format in Formats)
        {
            CheckLinear(twin, 1, DModel, DFf, format, LinearKernel.Gemv, accumulate: false, seed: 11);
            CheckLinear(twin, 1, DFf, DModel, format, LinearKernel.Gemv, accumulate: true, seed: 12);
        }
        // lm_head (32128 x 512) for one token, with the kernel Auto picks on this device.
        CheckLinear(twin, 1, DModel, Vocab, Formats[2], LinearKernel.Auto, accumulate: false, seed: 13);
        // A 3-token prompt through q (384 x 512): tiled on a GPU, naive on the CPU accelerator (Auto).
        CheckLinear(twin, 3, DModel, Heads * DKv, Formats[0], gpu ? LinearKernel.Tiled : LinearKernel.Auto, false, seed: 14);
        if (gpu)
        {
            foreach (var format in Formats)
                CheckLinear(twin, 33, DModel, DFf, format, LinearKernel.Tiled, accumulate: true, seed: 15);
            CheckLinear(twin, 17, DModel, Vocab, Formats[0], LinearKernel.Tiled, accumulate: false, seed: 16);
        }
    }

    private static void CheckLinear(Twin twin, int rows, int inDim, int outDim, (DType Stored, WeightFormat? Format) format,
        LinearKernel kernel, bool accumulate, int seed)
    {
        var weight = twin.Weight("w", [outDim, inDim], Parity.Random(outDim * inDim, seed), format.Stored, format.Format);
        var x = twin.Buffer(Parity.Random(rows * inDim, seed + 1));
        var y = twin.Buffer(Parity.Random(rows * outDim, seed + 2)); // what accumulate adds to
        twin.Run(BackendOp.Linear, (b, s) =>
        {
            if (b is IlgpuBackend ilgpu) ilgpu.Linear(x[s], weight[s], y[s], rows, accumulate, kernel);
            else b.Linear(x[s], weight[s], y[s], rows, accumulate);
        });
        twin.AssertClose(y, rows * outDim, $"linear {kernel} rows {rows} in {inDim} out {outDim} {FormatName(format)} accumulate {accumulate}");
    }

    [DeviceTheory]
    public void RmsNormMatchesReference(IlgpuDeviceKind device)
    {
        using var twin = new Twin(TestDevices.Backend(device));
        foreach (var (rows, d) in new[] { (1, 1), (3, 17), (17, 33), (2, 257), (3, DModel) })
            foreach (var format in Formats)
            {
                var weight = twin.Weight("layer_norm.weight", [d], Parity.Random(d, d, 2f), format.Stored, format.Format);
                var x = twin.Buffer(Parity.Random(rows * d, rows + d, 30f));
                var y = twin.Zeros(rows * d);
                twin.Run(BackendOp.RmsNorm, (b, s) => b.RmsNorm(x[s], weight[s], y[s], rows, 1e-6f));
                twin.AssertClose(y, rows * d, $"rms norm rows {rows} d {d} {FormatName(format)}");
            }
    }

    [DeviceTheory]
    public void ActivateMatchesReference(IlgpuDeviceKind device)
    {
        using var twin = new Twin(TestDevices.Backend(device));
        foreach (var kind in Enum.GetValues<ActivationKind>())
            foreach (int length in new[] { 1, 3, 257, 3 * DFf })
                foreach (bool gated in new[] { false, true })
                {
                    var gate = twin.Buffer(Parity.Random(length, length, 8f));
                    var up = twin.Buffer(Parity.Random(length, length + 1, 3f));
                    twin.Run(BackendOp.Activate, (b, s) => b.Activate(gate[s], gated ? up[s] : null, kind, length));
                    twin.AssertClose(gate, length, $"{kind} length {length} gated {gated}");
                }
    }

    [DeviceTheory]
    public void AddAndScaleMatchReference(IlgpuDeviceKind device)
    {
        using var twin = new Twin(TestDevices.Backend(device));
        foreach (int length in new[] { 1, 17, 257 })
        {
            var source = twin.Buffer(Parity.Random(length + 5, length));
            var destination = twin.Buffer(Parity.Random(length + 5, length + 1));
            twin.Run(BackendOp.Add, (b, s) => b.Add(source[s], destination[s], length));
            twin.Run(BackendOp.Scale, (b, s) => b.Scale(destination[s], 0.04419417f, length)); // d_model ** -0.5 for tied embeddings
            twin.AssertClose(destination, length + 5, $"add then scale, length {length} (the tail must stay untouched)");
        }
    }

    [DeviceTheory]
    public void PositionBiasMatchesReference(IlgpuDeviceKind device)
    {
        using var twin = new Twin(TestDevices.Backend(device));
        foreach (var format in new[] { Formats[0], Formats[2] })
        {
            var table = twin.Weight("relative_attention_bias.weight", [NumBuckets, Heads],
                Parity.Random(NumBuckets * Heads, 5), format.Stored, format.Format);
            // encoder (bidirectional) 17 x 17; decoder prompt 3 x 3; decoder step at past length 32 and at 299.
            foreach (var (q, k, offset, bidirectional) in new[] { (17, 17, 0, true), (3, 3, 0, false), (1, 33, 32, false), (1, 300, 299, false), (2, 257, 0, true) })
            {
                var output = twin.Zeros(Heads * q * k);
                twin.Run(BackendOp.PositionBias, (b, s) => b.PositionBias(table[s], output[s], q, k, offset, bidirectional, NumBuckets, MaxDistance));
                twin.AssertClose(output, Heads * q * k, $"position bias q {q} k {k} offset {offset} bidirectional {bidirectional} {FormatName(format)}");
            }
        }
    }

    /// <summary>The bucket of every relative position in [-n, n], computed on the device (a table whose entry is its
    /// own bucket number) against RelativePosition.Bucket: exact equality, no tolerance.</summary>
    [DeviceTheory]
    public void PositionBiasBucketsAreExactForEveryDistance(IlgpuDeviceKind device)
    {
        var backend = TestDevices.Backend(device);
        Twin.Require(backend, BackendOp.PositionBias);
        foreach (var (numBuckets, maxDistance) in new[] { (32, 128), (64, 256), (16, 64), (32, 64) })
        {
            var bucketIds = Enumerable.Range(0, numBuckets).Select(i => (float)i).ToArray();
            using var tensor = TestTensor.Create("bucket ids", DType.F32, [numBuckets, 1], bucketIds);
            using var table = backend.CreateWeight(tensor.Tensor);
            int n = 4 * maxDistance;
            using var output = backend.Allocate(2 * n + 1);
            var device_ = new float[2 * n + 1];
            foreach (bool bidirectional in new[] { true, false })
            {
                // one query at position n, keys 0..2n: relative positions -n..n
                backend.PositionBias(table, output, 1, 2 * n + 1, n, bidirectional, numBuckets, maxDistance);
                backend.Download(output, device_);
                for (int j = 0; j <= 2 * n; j++)
                {
                    int expected = RelativePosition.Bucket(j - n, bidirectional, numBuckets, maxDistance);
                    Assert.True(expected == (int)device_[j],
                        $"{backend.Name}: bucket of {j - n} (buckets {numBuckets}, max distance {maxDistance}, bidirectional {bidirectional}): {(int)device_[j]}, reference {expected}");
                }
            }
        }
    }

    /// <summary>The attention cases a T5 forward pass makes, plus edge cases.</summary>
    public static readonly (string Name, AttentionShape Shape, bool Bias, bool Mask)[] AttentionCases =
    [
        ("encoder self-attention, padded batch", new(2, Heads, DKv, 17, 17, 17), true, true),
        ("decoder self-attention, prompt (causal)", new(2, Heads, DKv, 3, 3, 20, Causal: true), true, false),
        ("decoder step with KV cache", new(2, Heads, DKv, 1, 33, 40, Causal: true, QueryOffset: 32), true, false),
        ("decoder cross-attention", new(2, Heads, DKv, 3, 17, 17), false, true),
        ("one key", new(1, 1, DKv, 1, 1, 1), false, false),
        ("odd head size, long keys", new(1, 2, 3, 2, 257, 257), true, true),
        ("head larger than the group", new(1, 1, 257, 2, 5, 5), false, false),
    ];

    [DeviceTheory]
    public void AttentionMatchesReference(IlgpuDeviceKind device)
    {
        using var twin = new Twin(TestDevices.Backend(device));
        int seed = 100;
        foreach (var (name, s, hasBias, hasMask) in AttentionCases)
        {
            int inner = s.InnerDim;
            var q = twin.Buffer(Parity.Random(s.Batch * s.QueryLength * inner, seed++, 0.5f));
            var k = twin.Buffer(Parity.Random(s.Batch * s.KeyCapacity * inner, seed++, 0.5f));
            var v = twin.Buffer(Parity.Random(s.Batch * s.KeyCapacity * inner, seed++));
            var bias = hasBias ? twin.Buffer(Parity.Random(s.Heads * s.QueryLength * s.KeyLength, seed++, 4f)) : (Pair<IBuffer>?)null;
            Pair<IBuffer>? mask = null;
            if (hasMask)
            {
                // batch 0 sees every key; later entries are padded after (KeyLength - 4 * b) keys.
                var m = new float[s.Batch * s.KeyLength];
                for (int b = 0; b < s.Batch; b++)
                    for (int j = 0; j < s.KeyLength; j++) m[b * s.KeyLength + j] = j < s.KeyLength - 4 * b ? 1f : 0f;
                mask = twin.Buffer(m);
            }
            var output = twin.Buffer(Parity.Random(s.Batch * s.QueryLength * inner, seed++)); // must be overwritten
            twin.Run(BackendOp.Attention, (b, side) => b.Attention(q[side], k[side], v[side], output[side], s, bias?[side], mask?[side]));
            twin.AssertClose(output, s.Batch * s.QueryLength * inner, name);
        }
    }

    [DeviceTheory]
    public void AttentionWithEveryKeyMaskedGivesZeros(IlgpuDeviceKind device)
    {
        using var twin = new Twin(TestDevices.Backend(device));
        var s = new AttentionShape(2, 2, 5, 3, 4, 4);
        var q = twin.Buffer(Parity.Random(2 * 3 * 10, 1));
        var k = twin.Buffer(Parity.Random(2 * 4 * 10, 2));
        var v = twin.Buffer(Parity.Random(2 * 4 * 10, 3));
        var mask = twin.Buffer([1, 0, 1, 0, 0, 0, 0, 0]); // batch 1 has no visible key
        var output = twin.Buffer(Parity.Random(2 * 3 * 10, 4));
        twin.Run(BackendOp.Attention, (b, side) => b.Attention(q[side], k[side], v[side], output[side], s, null, mask[side]));
        twin.AssertClose(output, 2 * 3 * 10, "fully masked batch entry");
    }

    [DeviceTheory]
    public void AppendToCacheAndGatherRowsMatchReference(IlgpuDeviceKind device)
    {
        using var twin = new Twin(TestDevices.Backend(device));
        const int batch = 2, length = 3, capacity = 17, rowLength = 33;
        var source = twin.Buffer(Parity.Random(batch * length * rowLength, 1));
        var cache = twin.Buffer(Parity.Random(batch * capacity * rowLength, 2));
        twin.Run(BackendOp.AppendToCache, (b, s) => b.AppendToCache(source[s], cache[s], batch, length, capacity, position: 5, rowLength));
        twin.Run(BackendOp.AppendToCache, (b, s) => b.AppendToCache(source[s], cache[s], batch, 1, capacity, position: 16, rowLength));
        twin.AssertClose(cache, batch * capacity * rowLength, "append to cache");

        int[] rows = [2, 0, 2, 1];
        var beams = twin.Buffer(Parity.Random(3 * 257, 3));
        var reordered = twin.Zeros(rows.Length * 257);
        twin.Run(BackendOp.GatherRows, (b, s) => b.GatherRows(beams[s], reordered[s], rows, 257));
        twin.AssertClose(reordered, rows.Length * 257, "gather rows");

        // a prefix of each row, rows 257 apart (a KV cache reordered before it is full)
        var prefix = twin.Buffer(Parity.Random(rows.Length * 257, 4));
        twin.Run(BackendOp.GatherRows, (b, s) => b.GatherRows(beams[s], prefix[s], rows, 100, rowStride: 257));
        twin.AssertClose(prefix, rows.Length * 257, "gather row prefixes");
    }

    [DeviceTheory]
    public void ArgMaxMatchesReference(IlgpuDeviceKind device)
    {
        using var twin = new Twin(TestDevices.Backend(device));
        twin.Require(BackendOp.ArgMax);
        foreach (var (rows, cols) in new[] { (1, 1), (3, 17), (2, 257), (3, Vocab) })
        {
            var logits = Parity.Random(rows * cols, cols, 20f);
            if (cols > 10)
            {
                // ties: the first index must win, whichever thread scanned it
                logits[cols - 1] = 50f;
                logits[cols - 2] = 50f;
                logits[cols + 3] = -1f;
                for (int j = 0; j < cols; j++) logits[cols + j] = Math.Min(logits[cols + j], -2f);
                logits[cols + 9] = -1f;
            }
            var input = twin.Buffer(logits);
            int[] expected = new int[rows], actual = new int[rows];
            twin.Reference.ArgMax(input.Reference, rows, cols, expected);
            twin.Device.ArgMax(input.Device, rows, cols, actual);
            Assert.Equal(expected, actual);
        }
    }
}
