// The shared error measure (tests/Shared/Errors.cs): normalised by the expected side, which comes first.
namespace ManagedT5.Kernels.Tests;

public sealed class ErrorsTests
{
    [Fact]
    public void RelativeErrorIsNormalisedByTheExpectedSideWhichComesFirst()
    {
        // positional, as every caller passes them: (expected, actual)
        Assert.Equal(0.25, Errors.RelativeError([4f, 0f], [3f, 0f]));
        Assert.Equal(1.0 / 3, Errors.RelativeError([3f, 0f], [4f, 0f]), 12);
        Assert.Equal(0.5, Errors.RelativeError([0f, 0f], [0f, -0.5f])); // absolute when expected is all zero
    }

    [Fact]
    public void NonFiniteValuesMatchOnlyTheSameValue()
    {
        Assert.Equal(0, Errors.RelativeError([float.NaN, 1f, float.PositiveInfinity], [float.NaN, 1f, float.PositiveInfinity]));
        Assert.Equal(double.PositiveInfinity, Errors.RelativeError([float.NaN, 1f], [0f, 1f]));
        Assert.Equal(double.PositiveInfinity, Errors.RelativeError([1f, 1f], [float.NegativeInfinity, 1f]));
        Assert.Equal(double.PositiveInfinity, Errors.RelativeError([float.PositiveInfinity], [float.NegativeInfinity]));
    }
}
