// T5's relative position buckets (HF's T5Attention._relative_position_bucket), shared by every backend's bias op.
namespace ManagedT5.Kernels;

/// <summary>T5's mapping of a relative position (key - query) to one of num_buckets learned biases.</summary>
public static class RelativePosition
{
    /// <summary>
    /// Bucket of <paramref name="relativePosition"/> = key_position - query_position.
    /// Bidirectional (encoder): half the buckets for keys after the query. Unidirectional (decoder): only the past
    /// counts (future keys are masked anyway). Near distances get one bucket each; far ones share log-spaced buckets
    /// up to <paramref name="maxDistance"/>. The log is computed in fp32, as PyTorch does.
    /// </summary>
    public static int Bucket(int relativePosition, bool bidirectional, int numBuckets, int maxDistance)
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

        // As torch does it: log of a float32 tensor, divided by a Python double (math.log) cast to float32.
        float denominator = (float)Math.Log((double)maxDistance / maxExact);
        float ratio = MathF.Log((float)distance / maxExact) / denominator;
        int large = maxExact + (int)(ratio * (numBuckets - maxExact));
        return bucket + Math.Min(large, numBuckets - 1);
    }
}
