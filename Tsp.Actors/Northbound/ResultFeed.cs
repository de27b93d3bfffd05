using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Akka.Actor;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Actors.Telemetry;

namespace Tsp.Actors.Northbound;

/// <summary>A subscriber fell further behind the live results than its buffer holds.</summary>
public sealed class SubscriberOverflowException(string resumeFrom, int bufferSize)
    : Exception($"subscriber fell more than {bufferSize} results behind; resume with from=\"{resumeFrom}\"")
{
    /// <summary>The <c>from</c> that continues exactly after the last result delivered.</summary>
    public string ResumeFrom { get; } = resumeFrom;
}

/// <summary>A project's results log started again below what the subscription had delivered: Redis
/// lost it (no AOF, a wipe). Results at the positions the subscriber already saw are new ones.</summary>
public sealed class ResultsLogResetException(string project, long delivered, long latest, string resumeFrom)
    : Exception($"the results log of project '{project}' was reset (Redis lost it): it ends at position {latest}, below the {delivered} results this subscription delivered; its new results start again at 1: resume with from=\"{resumeFrom}\"")
{
    public string Project { get; } = project;

    /// <summary>The <c>from</c> that reads the project's new log from its start and the other projects on.</summary>
    public string ResumeFrom { get; } = resumeFrom;
}

/// <summary>
/// One subscription's TP results, in position order per project, with no gap and no duplicate:
/// the stored results from the start position (the results log in Redis), then live ones
/// (DistributedPubSub), with gaps in the live order filled from the log. The log is appended
/// atomically, so a live result at position P means every position below P is readable.
/// <para>The live buffer is bounded. While catching up, an overflow costs nothing (the dropped
/// results are in the log and are read from there); once live, it ends the feed with
/// <see cref="SubscriberOverflowException"/> — the consumer is not keeping up, and the cluster must
/// neither wait for it nor buffer for it without bound.</para>
/// </summary>
public sealed class ResultFeed : IAsyncDisposable
{
    private const int PageSize = 256;

    /// <summary>The feeds open in this process and their projects (<see cref="TspMetrics.Subscribers"/>).</summary>
    private static readonly ConcurrentDictionary<ResultFeed, string[]> OpenFeeds = new();

    /// <summary>Per project: how many feeds follow it, and the most results any of them has buffered.
    /// Registered for the life of the process.</summary>
    private static readonly IDisposable[] Gauges =
    [
        TspMetrics.Subscribers.Observe(() => Followed().GroupBy(f => f.Project)
            .Select(g => new Measurement<long>(g.Count(), new KeyValuePair<string, object?>("project", g.Key)))),
        TspMetrics.SubscriberLag.Observe(() => Followed().GroupBy(f => f.Project)
            .Select(g => new Measurement<long>(g.Max(f => f.Buffered), new KeyValuePair<string, object?>("project", g.Key)))),
    ];

    private readonly RedisStore _store;
    private readonly IActorRef _subscriber;
    private readonly ChannelReader<TpResult> _live;
    private readonly Dictionary<string, long> _next;
    private readonly int _bufferSize;
    private readonly Dictionary<string, Dictionary<long, string>> _delivered = new(StringComparer.Ordinal);
    private int _dropped;

    private ResultFeed(RedisStore store, IActorRef subscriber, ChannelReader<TpResult> live, Dictionary<string, long> next, int bufferSize)
    {
        _store = store;
        _subscriber = subscriber;
        _live = live;
        _next = next;
        _bufferSize = bufferSize;
    }

    /// <summary>Per project, the next position this feed will deliver.</summary>
    public IReadOnlyDictionary<string, long> Next => _next;

    /// <summary>The <c>from</c> that resumes exactly after what this feed delivered.</summary>
    public string ResumeFrom => FeedStart.Format(_next);

    /// <param name="starts">Per project, the first position, or null for latest (see <see cref="FeedStart"/>).</param>
    public static async Task<ResultFeed> OpenAsync(ActorSystem system, RedisStore store, IReadOnlyDictionary<string, long?> starts, int bufferSize, TimeSpan timeout)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(bufferSize, 1);
        ResultFeed? feed = null;
        var channel = Channel.CreateBounded<TpResult>(
            new BoundedChannelOptions(bufferSize) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true },
            _ => Interlocked.Exchange(ref feed!._dropped, 1));
        // Live first, then the log's end: a result logged in between is in both, and dropped once seen.
        var subscriber = await ResultSubscriptions.SubscribeAsync(system, starts.Keys.ToList(), channel.Writer, timeout);
        var next = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var (project, start) in starts)
        {
            next[project] = start ?? await store.LatestPositionAsync(project) + 1;
        }

        feed = new ResultFeed(store, subscriber, channel.Reader, next, bufferSize);
        OpenFeeds.TryAdd(feed, [.. next.Keys]);
        return feed;
    }

    private static IEnumerable<(string Project, int Buffered)> Followed() =>
        OpenFeeds.SelectMany(f => f.Value.Select(project => (project, f.Key._live.Count)));

    /// <exception cref="SubscriberOverflowException">The consumer fell a buffer behind the live results.</exception>
    public async IAsyncEnumerable<TpResult> ReadAllAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var live = false;
        while (!cancellationToken.IsCancellationRequested)
        {
            if (!live)
            {
                Volatile.Write(ref _dropped, 0);
                foreach (var project in _next.Keys.ToList())
                {
                    await foreach (var stored in ReadStoredAsync(project, long.MaxValue, cancellationToken))
                    {
                        yield return stored;
                    }
                }

                // Results dropped while catching up are in the log: catch up again rather than go live with a hole.
                live = Volatile.Read(ref _dropped) == 0;
                continue;
            }

            if (!_live.TryRead(out var result))
            {
                if (!await _live.WaitToReadAsync(cancellationToken))
                {
                    yield break;
                }

                continue;
            }

            if (Volatile.Read(ref _dropped) != 0)
            {
                throw new SubscriberOverflowException(ResumeFrom, _bufferSize);
            }

            if (!_next.TryGetValue(result.Project, out var next))
            {
                continue;
            }

            if (result.Position < next)
            {
                // A repeat, normally: read from the log too, or published again after a crash. After
                // Redis lost the log, the new log's results come at positions already passed, with
                // other runs: the log's counter then says it started again.
                if (!IsRepeat(result))
                {
                    await ThrowIfResetAsync(result.Project, next);
                }

                continue;
            }

            if (result.Position > next)
            {
                // Published out of order (runs finish concurrently): everything below it is in the log.
                await foreach (var stored in ReadStoredAsync(result.Project, result.Position, cancellationToken))
                {
                    yield return stored;
                }
            }

            _next[result.Project] = result.Position + 1;
            Remember(result);
            yield return result;
        }
    }

    /// <summary>Whether this feed delivered this run at this position (among the last
    /// <c>bufferSize</c> positions it delivered of the project; an older one is not known).</summary>
    private bool IsRepeat(TpResult result) =>
        _delivered.TryGetValue(result.Project, out var recent) && recent.TryGetValue(result.Position, out var runId) && runId == result.RunId;

    private void Remember(TpResult result)
    {
        if (!_delivered.TryGetValue(result.Project, out var recent))
        {
            _delivered[result.Project] = recent = [];
        }

        recent[result.Position] = result.RunId;
        recent.Remove(result.Position - _bufferSize);
    }

    /// <summary>Whether the log's counter went below what was delivered.</summary>
    /// <exception cref="ResultsLogResetException">It did.</exception>
    private async Task ThrowIfResetAsync(string project, long next)
    {
        var latest = await _store.LatestPositionAsync(project);
        if (latest < next - 1)
        {
            var resume = new Dictionary<string, long>(_next, StringComparer.Ordinal) { [project] = 1 };
            throw new ResultsLogResetException(project, next - 1, latest, FeedStart.Format(resume));
        }
    }

    /// <summary>Logged results of a project from its next position up to (not including) <paramref name="before"/>.</summary>
    private async IAsyncEnumerable<TpResult> ReadStoredAsync(string project, long before, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested && _next[project] < before)
        {
            var page = await _store.ReadResultsAsync(project, _next[project], PageSize);
            foreach (var (position, result) in page)
            {
                if (position >= before)
                {
                    yield break;
                }

                _next[project] = position + 1;
                Remember(result);
                yield return result;
            }

            if (page.Count < PageSize)
            {
                yield break;
            }
        }
    }

    public ValueTask DisposeAsync()
    {
        OpenFeeds.TryRemove(this, out _);
        _subscriber.Tell(PoisonPill.Instance);
        return ValueTask.CompletedTask;
    }
}
