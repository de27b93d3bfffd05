namespace Tsp.Actors.Ingest;

/// <summary>
/// Each project's limit on accepted frames (its workflow's <c>scheduling.rate_limit</c>, frames per
/// second), as a token bucket per project on each orchestrator holding that orchestrator's part of the
/// limit (the limit divided by the orchestrators that are up), so the cluster as a whole keeps it.
/// Kafka ingest waits for tokens (consumption slows, nothing is lost); a gRPC submission that finds
/// none is refused with how long to wait.
/// </summary>
/// <param name="limitOf">A project's limit in frames per second (0: none).</param>
/// <param name="orchestrators">How many orchestrators share each limit now.</param>
/// <param name="clock">Milliseconds (default: <see cref="Environment.TickCount64"/>).</param>
public sealed class RateLimits(Func<string, double> limitOf, Func<int> orchestrators, Func<long>? clock = null)
{
    private readonly Func<long> _clock = clock ?? (() => Environment.TickCount64);
    private readonly Dictionary<string, Bucket> _buckets = new(StringComparer.Ordinal);

    /// <summary>Takes <paramref name="frames"/> tokens when the bucket is not in debt.</summary>
    /// <param name="retryAfter">When refused: how long until a frame would be taken.</param>
    public bool TryAcquire(string project, int frames, out TimeSpan retryAfter)
    {
        retryAfter = TimeSpan.Zero;
        if (BucketOf(project) is not { } bucket)
        {
            return true;
        }

        lock (bucket)
        {
            bucket.Refill(_clock());
            if (bucket.Tokens < 0)
            {
                retryAfter = TimeSpan.FromMilliseconds(Math.Ceiling(-bucket.Tokens / bucket.Rate * 1000));
                return false;
            }

            bucket.Tokens -= frames;
            return true;
        }
    }

    /// <summary>Waits until the bucket is out of debt, then takes <paramref name="frames"/> (a batch
    /// may take more than the bucket holds: the next waits longer, so the average keeps the rate).</summary>
    public async Task AcquireAsync(string project, int frames, CancellationToken cancellation)
    {
        while (!TryAcquire(project, frames, out var wait))
        {
            await Task.Delay(wait, cancellation);
        }
    }

    private Bucket? BucketOf(string project)
    {
        var limit = limitOf(project);
        if (limit <= 0)
        {
            return null;
        }

        var rate = limit / Math.Max(1, orchestrators());
        lock (_buckets)
        {
            if (!_buckets.TryGetValue(project, out var bucket))
            {
                bucket = new Bucket(rate, _clock());
                _buckets.Add(project, bucket);
            }

            // A redeploy or another orchestrator changes the rate; the tokens held stay.
            bucket.Rate = rate;
            return bucket;
        }
    }

    /// <summary>Holds up to one second of frames (at least one).</summary>
    private sealed class Bucket(double rate, long now)
    {
        private long _refilledAt = now;

        public double Rate { get; set; } = rate;

        public double Tokens { get; set; } = Math.Max(1, rate);

        public void Refill(long now)
        {
            Tokens = Math.Min(Math.Max(1, Rate), Tokens + ((now - _refilledAt) * Rate / 1000));
            _refilledAt = now;
        }
    }
}
