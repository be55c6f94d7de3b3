// T5 attention on the device: the relative position bias (bucket computed in the kernel, exactly as
// RelativePosition.Bucket does it) and fused attention: scores, mask, fp32 softmax and the weighted sum of values
// in one kernel, one thread group per (batch, head, query). No 1/sqrt(d_kv) scaling: T5 folds it into the weights.
using ILGPU;

namespace ManagedT5.Kernels.Ilgpu.Kernels;

/// <summary>Shapes and flags of one <see cref="AttentionKernels.PositionBias{TWeight}"/> call.</summary>
internal struct PositionBiasParams
{
    public int Heads, QueryLength, KeyLength, QueryOffset, Bidirectional, NumBuckets, MaxDistance;
    /// <summary>(float)log(max_distance / max_exact), computed on the host in double as the reference does.</summary>
    public float LogDistanceRatio;
}

/// <summary>Shapes and flags of one <see cref="AttentionKernels.Attention"/> call (see AttentionShape).</summary>
internal struct AttentionParams
{
    public int Batch, Heads, HeadDim, QueryLength, KeyLength, KeyCapacity, Causal, QueryOffset, HasBias, HasMask;

    /// <summary>Floats of dynamic shared memory a group needs: q row, scores, per-slice partial outputs, reduction scratch.</summary>
    public readonly int SharedFloats(int groupSize) => HeadDim + KeyLength + Slices(groupSize) * HeadDim + groupSize;

    /// <summary>How many slices of keys the group splits the weighted sum of values into (threads per d_kv element).</summary>
    public readonly int Slices(int groupSize) => Math.Max(1, groupSize / HeadDim);
}

/// <summary>Relative position bias and attention kernels.</summary>
internal static class AttentionKernels
{
    /// <summary>output[h, i, j] = table[bucket(j - (queryOffset + i)), h] — table (num_buckets, heads),
    /// output (heads, q, k). One thread per (key j = X, query i = Y) writes all heads.</summary>
    public static void PositionBias<TWeight>(Index2D index, TWeight table, ArrayView<float> output, PositionBiasParams p)
        where TWeight : struct, IWeightView
    {
        int j = index.X, i = index.Y;
        int bucket = Bucket(j - (p.QueryOffset + i), p.Bidirectional != 0, p.NumBuckets, p.MaxDistance, p.LogDistanceRatio);
        float scale = table.RowScale(bucket);
        for (int h = 0; h < p.Heads; h++)
            output[((long)h * p.QueryLength + i) * p.KeyLength + j] = table.Load((long)bucket * p.Heads + h) * scale;
    }

    /// <summary>RelativePosition.Bucket, line for line, with the fp32 log of <see cref="DeviceMath.Log"/>.</summary>
    public static int Bucket(int relativePosition, bool bidirectional, int numBuckets, int maxDistance, float logDistanceRatio)
    {
        int bucket = 0;
        int distance;
        if (bidirectional)
        {
            numBuckets /= 2;
            if (relativePosition > 0) bucket += numBuckets;
            distance = Math.Abs(relativePosition);
        }
        else
        {
            distance = -Math.Min(relativePosition, 0);
        }

        int maxExact = numBuckets / 2;
        if (distance < maxExact) return bucket + distance;

        float ratio = DeviceMath.Log((float)distance / maxExact) / logDistanceRatio;
        int large = maxExact + (int)(ratio * (numBuckets - maxExact));
        return bucket + Math.Min(large, numBuckets - 1);
    }

    /// <summary>
    /// Attention for one (batch b, head h, query i) per group — q (batch, q, heads*d_kv); k, v (batch, capacity,
    /// heads*d_kv); bias (heads, q, k) shared by the batch; keyMask (batch, k), 0 = padding; output like q.
    /// 1. load q[b, i, h] into shared memory; 2. each thread scores keys j = thread, thread + G, ... (q . k + bias;
    /// masked and, when causal, future keys are left out); 3. group max, exp, group sum, p = e / sum (fp32);
    /// 4. the threads split into slices of d_kv threads, each slice sums p_j v[j] over its share of the keys, and
    /// the slices' partial vectors are added. Dynamic shared memory: <see cref="AttentionParams.SharedFloats"/>.
    /// </summary>
    public static void Attention(ArrayView<float> query, ArrayView<float> key, ArrayView<float> value, ArrayView<float> output,
        ArrayView<float> bias, ArrayView<float> keyMask, AttentionParams p)
    {
        int groupSize = Group.DimX, thread = Group.IdxX;
        int slices = p.Slices(groupSize);
        var shared = SharedMemory.GetDynamic<float>();
        var q = shared.SubView(0, p.HeadDim);
        var scores = shared.SubView(p.HeadDim, p.KeyLength);
        var partial = shared.SubView(p.HeadDim + p.KeyLength, slices * p.HeadDim);
        var scratch = shared.SubView(p.HeadDim + p.KeyLength + slices * p.HeadDim, groupSize);

        int group = Grid.IdxX;
        int i = group % p.QueryLength;
        int h = group / p.QueryLength % p.Heads;
        int b = group / (p.QueryLength * p.Heads);
        int inner = p.Heads * p.HeadDim;
        long headOffset = (long)h * p.HeadDim;
        long queryRow = ((long)b * p.QueryLength + i) * inner + headOffset;

        for (int d = thread; d < p.HeadDim; d += groupSize) q[d] = query[queryRow + d];
        Group.Barrier();

        // Scores. Excluded keys get -inf and later weigh exactly 0, as in the reference.
        int visible = p.Causal != 0 ? Math.Min(p.KeyLength, p.QueryOffset + i + 1) : p.KeyLength;
        float localMax = float.NegativeInfinity;
        for (int j = thread; j < visible; j += groupSize)
        {
            float score;
            if (p.HasMask != 0 && keyMask[(long)b * p.KeyLength + j] == 0f)
            {
                score = float.NegativeInfinity;
            }
            else
            {
                long keyRow = ((long)b * p.KeyCapacity + j) * inner + headOffset;
                score = 0f;
                for (int d = 0; d < p.HeadDim; d++) score += q[d] * key[keyRow + d];
                if (p.HasBias != 0) score += bias[((long)h * p.QueryLength + i) * p.KeyLength + j];
            }
            scores[j] = score;
            localMax = Math.Max(localMax, score);
        }
        float max = GroupReduce.Max(localMax, scratch);

        // Softmax in fp32.
        float localSum = 0f;
        for (int j = thread; j < visible; j += groupSize)
        {
            float e = scores[j] == float.NegativeInfinity ? 0f : DeviceMath.Exp(scores[j] - max);
            scores[j] = e;
            localSum += e;
        }
        float sum = GroupReduce.Sum(localSum, scratch); // its barriers also publish every thread's scores[j]
        for (int j = thread; j < visible; j += groupSize) scores[j] = sum == 0f ? 0f : scores[j] / sum;
        Group.Barrier();

        // output = sum_j p_j v[j]: thread (slice, d) sums keys slice, slice + slices, ...; then the slices are added.
        for (int e = thread; e < slices * p.HeadDim; e += groupSize)
        {
            int slice = e / p.HeadDim, d = e % p.HeadDim;
            float acc = 0f;
            for (int j = slice; j < visible; j += slices)
            {
                float weight = scores[j];
                if (weight != 0f) acc += weight * value[((long)b * p.KeyCapacity + j) * inner + headOffset + d];
            }
            partial[e] = acc;
        }
        Group.Barrier();
        for (int d = thread; d < p.HeadDim; d += groupSize)
        {
            float total = 0f;
            for (int slice = 0; slice < slices; slice++) total += partial[slice * p.HeadDim + d];
            output[queryRow + d] = total;
        }
    }
}
