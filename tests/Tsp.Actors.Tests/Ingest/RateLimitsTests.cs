using Tsp.Actors.Ingest;

namespace Tsp.Actors.Tests.Ingest;

public sealed class RateLimitsTests
{
    private long _now;

    [Fact]
    public void A_limited_project_gets_a_second_of_frames_then_waits_as_long_as_the_rate_says()
    {
        var limits = new RateLimits(p => p == "limited" ? 10 : 0, () => 1, () => _now);

        Assert.True(limits.TryAcquire("free", 1_000_000, out _));
        Assert.True(limits.TryAcquire("limited", 10, out _));
        Assert.True(limits.TryAcquire("limited", 1, out _), "a bucket out of tokens but not in debt takes one more");
        Assert.False(limits.TryAcquire("limited", 1, out var wait));
        Assert.Equal(TimeSpan.FromMilliseconds(100), wait);

        _now += 100;
        Assert.True(limits.TryAcquire("limited", 1, out _));
        _now += 10_000;
        // Refilled to a second's worth, never more.
        Assert.True(limits.TryAcquire("limited", 11, out _));
        Assert.False(limits.TryAcquire("limited", 1, out _));
    }

    [Fact]
    public void Orchestrators_split_a_limit_between_them()
    {
        var orchestrators = 4;
        var limits = new RateLimits(_ => 40, () => orchestrators, () => _now);

        Assert.True(limits.TryAcquire("p", 11, out _));
        Assert.False(limits.TryAcquire("p", 1, out var wait));
        // 1 frame of debt at 10 frames/s.
        Assert.Equal(TimeSpan.FromMilliseconds(100), wait);
        orchestrators = 1;
        Assert.False(limits.TryAcquire("p", 1, out wait));
        Assert.Equal(TimeSpan.FromMilliseconds(25), wait);
    }
}
