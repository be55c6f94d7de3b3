// The kernels' own arithmetic, run on the host (kernels are plain static methods): half widening, exp, tanh, log,
// the activations and the position buckets, each against .NET's math or the reference twin.
using ManagedT5.Kernels.Ilgpu.Kernels;
using ManagedT5.Kernels.Reference;

namespace ManagedT5.Kernels.Ilgpu.Tests;

public sealed class DeviceMathTests
{
    [Fact]
    public void HalfWideningIsExactForAll65536BitPatterns()
    {
        for (int bits = 0; bits <= ushort.MaxValue; bits++)
        {
            float expected = (float)BitConverter.UInt16BitsToHalf((ushort)bits);
            float actual = HalfBits.ToSingle((ushort)bits);
            if (float.IsNaN(expected)) Assert.True(float.IsNaN(actual), $"0x{bits:X4} should be NaN");
            else Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(actual),
                $"0x{bits:X4}: {actual}, expected {expected}");
        }
    }

    [Fact]
    public void ExpIsWithin2UlpOfMathFOverItsRange()
    {
        for (float x = -103.9f; x < 88.7f; x += 0.0137f)
        {
            int ulps = UlpDistance(MathF.Exp(x), DeviceMath.Exp(x));
            Assert.True(ulps <= 2, $"exp({x}) = {DeviceMath.Exp(x):R}, MathF.Exp {MathF.Exp(x):R}: {ulps} ulp apart");
        }
        Assert.Equal(0f, DeviceMath.Exp(float.NegativeInfinity));
        Assert.Equal(float.PositiveInfinity, DeviceMath.Exp(100f));
        Assert.Equal(1f, DeviceMath.Exp(0f));
    }

    /// <summary>Distance in representable floats between two non-negative finite floats.</summary>
    private static int UlpDistance(float a, float b) => Math.Abs(BitConverter.SingleToInt32Bits(a) - BitConverter.SingleToInt32Bits(b));

    [Fact]
    public void TanhIsWithin2e7Absolute()
    {
        for (float x = -12f; x < 12f; x += 0.00731f)
            Assert.True(Math.Abs(DeviceMath.Tanh(x) - Math.Tanh(x)) <= 2e-7, $"tanh({x}) = {DeviceMath.Tanh(x)}, expected {Math.Tanh(x)}");
    }

    /// <summary>The position bucket's log: the device computes the correctly rounded fp32 log. The CPU's logf is
    /// not always correctly rounded (glibc: ln(390.5) comes out one ulp low), so the two may differ by one ulp on a
    /// ratio; what must hold is that no such ulp moves a bucket, which the bucket tests check distance by distance.</summary>
    [Fact]
    public void LogIsWithin1UlpOfMathFLogOnEveryBucketRatio()
    {
        foreach (int maxExact in new[] { 4, 8, 16, 32, 64 })
            for (int distance = maxExact; distance <= 4096; distance++)
            {
                float x = (float)distance / maxExact;
                Assert.True(UlpDistance(MathF.Log(x), DeviceMath.Log(x)) <= 1,
                    $"log({x}) = {DeviceMath.Log(x):R}, MathF.Log {MathF.Log(x):R}");
                Assert.Equal((float)Math.Log(x), DeviceMath.Log(x)); // correctly rounded, as double-then-round gives
            }
    }

    [Fact]
    public void BucketEqualsRelativePositionBucket()
    {
        foreach (var (numBuckets, maxDistance) in new[] { (32, 128), (64, 256), (16, 64), (32, 64), (8, 20) })
            foreach (bool bidirectional in new[] { true, false })
            {
                int maxExact = (bidirectional ? numBuckets / 2 : numBuckets) / 2;
                float logRatio = (float)Math.Log((double)maxDistance / maxExact);
                for (int rp = -5000; rp <= 5000; rp++)
                    Assert.Equal(RelativePosition.Bucket(rp, bidirectional, numBuckets, maxDistance),
                        AttentionKernels.Bucket(rp, bidirectional, numBuckets, maxDistance, logRatio));
            }
    }

    [Fact]
    public void ActivationsAreWithinToleranceOfTheReference()
    {
        foreach (var kind in Enum.GetValues<ActivationKind>())
        {
            var xs = Enumerable.Range(-4000, 8001).Select(i => i * 0.0025f).ToArray(); // [-10, 10]
            var expected = xs.Select(x => ReferenceKernels.Activation(x, kind)).ToArray();
            var actual = xs.Select(x => ElementwiseKernels.Activation(x, (int)kind)).ToArray();
            Parity.AssertClose(expected, actual, $"{kind} on [-10, 10]");
            // and pointwise, relative to each value where it is not tiny (the far gelu tails)
            for (int i = 0; i < xs.Length; i++)
                if (Math.Abs(expected[i]) > 1e-3)
                    Assert.True(Math.Abs(actual[i] - expected[i]) <= 1e-5 * Math.Abs(expected[i]),
                        $"{kind}({xs[i]}) = {actual[i]}, reference {expected[i]}");
        }
    }
}
