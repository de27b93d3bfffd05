using Tsp.Actors.Workflows.Admission;

namespace Tsp.Actors.Tests.Workflows.Admission;

public sealed class SegmentedDictionaryTests
{
    [Fact]
    public void Keys_of_any_shape_are_added_found_counted_and_removed_once()
    {
        var map = new SegmentedDictionary<int>();
        string[] keys = [.. Enumerable.Range(0, 5000).Select(i => $"tsp.p.frames-{i % 3}-{i}"), "", "x", .. Enumerable.Range(0, 500).Select(_ => Guid.NewGuid().ToString("N"))];
        for (var i = 0; i < keys.Length; i++)
        {
            map.Add(keys[i], i);
        }

        Assert.Equal(keys.Length, map.Count);
        Assert.Throws<ArgumentException>(() => map.Add(keys[7], 0));
        Assert.All(Enumerable.Range(0, keys.Length), i => Assert.True(map.TryGetValue(keys[i], out var value) && value == i));
        Assert.False(map.ContainsKey("tsp.p.frames-0-5001"));

        Assert.True(map.Remove(keys[42]));
        Assert.False(map.Remove(keys[42]));
        Assert.False(map.ContainsKey(keys[42]));
        Assert.True(map.ContainsKey(keys[43]));
        Assert.Equal(keys.Length - 1, map.Count);
    }
}
