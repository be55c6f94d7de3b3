// The relative position bucket function against HF's _relative_position_bucket on every distance in [-600, 600].
using System.Text.Json;
using ManagedT5.Kernels;

namespace ManagedT5.Tests;

public sealed class RelativePositionTests
{
    public static IEnumerable<object[]> Tables()
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.Root, "relative_position_buckets.json")));
        foreach (JsonElement t in doc.RootElement.GetProperty("tables").EnumerateArray())
            yield return [t.GetProperty("num_buckets").GetInt32(), t.GetProperty("max_distance").GetInt32(),
                t.GetProperty("bidirectional").GetBoolean(), t.GetProperty("buckets").EnumerateArray().Select(x => x.GetInt32()).ToArray()];
    }

    [Theory]
    [MemberData(nameof(Tables))]
    public void BucketMatchesHuggingFaceOnEveryDistance(int numBuckets, int maxDistance, bool bidirectional, int[] expected)
    {
        Assert.Equal(1201, expected.Length);
        for (int rp = -600; rp <= 600; rp++)
            Assert.True(expected[rp + 600] == RelativePosition.Bucket(rp, bidirectional, numBuckets, maxDistance),
                $"relative position {rp}: expected bucket {expected[rp + 600]}, got {RelativePosition.Bucket(rp, bidirectional, numBuckets, maxDistance)}");
    }

    [Fact]
    public void BothDirectionsAreCovered()
    {
        var tables = Tables().ToList();
        Assert.Contains(tables, t => (bool)t[2]);
        Assert.Contains(tables, t => !(bool)t[2]);
    }
}
