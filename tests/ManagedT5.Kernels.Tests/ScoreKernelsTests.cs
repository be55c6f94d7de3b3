// The host-side score kernels (beam search's log-softmax and score offset) against their scalar double twin, at every
// SIMD level and every length 1..257 plus a flan-t5 vocabulary row, including -inf entries (processors ban tokens).
using ManagedT5.Kernels.Cpu;
using ManagedT5.Kernels.Reference;

namespace ManagedT5.Kernels.Tests;

public sealed class ScoreKernelsTests
{
    public static TheoryData<SimdLevel> Levels() => TestData.Levels();

    [Theory]
    [MemberData(nameof(Levels))]
    public void LogSoftmaxMatchesReference(SimdLevel level)
    {
        foreach (int length in Enumerable.Range(1, 257).Append(32128))
        {
            float[] scores = TestData.Random(length, length, scale: 20f);
            if (length > 3) scores[length / 3] = float.NegativeInfinity;
            float[] expected = (float[])scores.Clone(), actual = (float[])scores.Clone();
            ReferenceKernels.LogSoftmax(expected, offset: -3.5f);
            ScoreKernels.LogSoftmax(actual, -3.5f, level);
            for (int i = 0; i < length; i++)
            {
                if (float.IsNegativeInfinity(expected[i])) { Assert.True(float.IsNegativeInfinity(actual[i]), $"length {length} [{i}]"); continue; }
                // log-probabilities: absolute error, a few fp32 ulps of the log-sum (exp is ~2 ulp, sums in fp32 lanes)
                Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-5 * Math.Max(1, Math.Abs(expected[i])),
                    $"length {length} [{i}] at {level}: {actual[i]} vs {expected[i]}");
            }
        }
    }

    [Fact]
    public void AllMinusInfinityRowIsLeftAlone()
    {
        float[] scores = [float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity];
        ScoreKernels.LogSoftmax(scores);
        Assert.All(scores, s => Assert.True(float.IsNegativeInfinity(s)));
    }

    [Fact]
    public void AddMatchesScalar()
    {
        foreach (int length in new[] { 1, 15, 16, 17, 100, 32128 })
        {
            float[] x = TestData.Random(length, 7), expected = x.Select(v => v + 1.25f).ToArray();
            ScoreKernels.Add(x, 1.25f);
            Assert.Equal(expected, x);
        }
    }
}
