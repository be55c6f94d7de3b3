// The one normalised error measure of the test projects (linked into ManagedT5.Tests and ManagedT5.Kernels.Tests):
// max |actual - expected| / max |expected|, expected first, as in xunit's Assert.Equal(expected, actual).
using Xunit;

namespace ManagedT5.Testing;

/// <summary>How far a result is from the reference.</summary>
internal static class Errors
{
    /// <summary>max |actual - expected| / max |expected| (absolute when expected is all zero). NaN and infinities
    /// count as equal only when both sides hold the same one at that element; any other non-finite pair gives
    /// infinity.</summary>
    public static double RelativeError(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        double maxDiff = 0, maxAbs = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            if (!float.IsFinite(expected[i]) || !float.IsFinite(actual[i]))
            {
                if (expected[i].Equals(actual[i])) continue;
                return double.PositiveInfinity;
            }
            maxDiff = Math.Max(maxDiff, Math.Abs((double)actual[i] - expected[i]));
            maxAbs = Math.Max(maxAbs, Math.Abs((double)expected[i]));
        }
        return maxAbs == 0 ? maxDiff : maxDiff / maxAbs;
    }
}
