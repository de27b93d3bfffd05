using Akka.Actor;
using Tsp.Actors.Dispatch;
using Tsp.Actors.Northbound;
using Tsp.Actors.Storage;

namespace Tsp.Actors.Workflows;

/// <summary>What a run host needs from its orchestrator.</summary>
/// <param name="Tuning">Snapshot cadence and finished-run memory.</param>
/// <param name="Active">Counts the runs held by the hosts of this process (for status) and the hosts.</param>
/// <param name="RunHosts">The configured number of run hosts (<c>Tsp:RunHosts</c>): a host made for another
/// number retires once it holds no run. 0: every host is current.</param>
public sealed record RunServices(WorkflowCatalog Catalog, NodeQueues Queues, RedisStore Store, IActorRef PubSubMediator, RunHostTuning? Tuning = null, ActiveRunCounter? Active = null, int RunHosts = 0)
{
    public ActiveRunCounter Active { get; } = Active ?? new();

    /// <summary>Which finished runs keep a preview of their frame, for all the hosts of this process.</summary>
    public FramePreviews Previews { get; } = new(Store.Options.PreviewEvery);
}

/// <summary>How often a run host snapshots, and how many finished run ids it remembers.</summary>
public sealed record RunHostTuning
{
    /// <summary>Events between snapshots; a snapshot lets the host delete the events before it, so
    /// recovery replays at most about this many. A snapshot holds every run the host holds, so a host
    /// that holds more runs than this waits for as many events as it holds runs: a backlog of accepted
    /// runs would otherwise be written again and again (each event costing up to runs/SnapshotEvery
    /// run records), and recovery reads about as many events as the snapshot holds runs anyway.</summary>
    public int SnapshotEvery { get; init; } = 2000;

    /// <summary>Finished run ids each host remembers, newest first, to answer a redelivered start
    /// with AlreadyCompleted at once. Older ones are still recognized by the results log's marker
    /// (one Redis read). Per host: an orchestrator holding all 64 hosts remembers 32,768.</summary>
    public int FinishedRunMemory { get; init; } = 512;

    /// <summary>How often a host looks for tasks in flight for longer than their node's timeout ×
    /// attempts + 30 s, and re-sends them (a queue lost with its orchestrator).</summary>
    public TimeSpan WatchdogInterval { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Runs the hosts of one orchestrator dispatch at once, split evenly among the hosts it
    /// holds (at least one each): an orchestrator that holds all 64 hosts gives each 64, one of 64
    /// orchestrators gives its one host all 4096. Past its part, accepted runs queue in the host in
    /// order of acceptance as their RunStarted alone (durable like any other, a few hundred bytes each
    /// instead of a run's live state), and start as others finish: a burst of acceptance (ingest with
    /// a large <c>MaxInFlightRuns</c>, a backlog) costs neither dispatch work nor memory per run until
    /// the run's turn comes. Ample for dispatch: the node queues hand tasks to routee slots, far fewer.</summary>
    public int MaxActiveRuns { get; init; } = 4096;

    /// <summary>A node that ran at least this long has its result written to the journal as soon as it
    /// arrives. A shorter node's result is applied and acted on at once, but written with its run's
    /// next write (a longer node's result, a failure, a cancellation), and not at all once the run is
    /// published (<see cref="PublishedMarkDelay"/>): a run of short nodes costs its start's write and
    /// a mark instead of a write per node. A crash
    /// re-runs the short nodes whose results were not written yet, as it already re-runs any node
    /// whose write was in flight; nothing accepted is lost and every result is published once.
    /// <see cref="TimeSpan.Zero"/> writes every result at once.</summary>
    public TimeSpan WriteNodeResultsFrom { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>How long a published run's RunPublished mark may wait for another write of its host to
    /// go with. Nothing waits on the mark (the result is already out), and under load another write
    /// comes sooner, so a run costs one write of its own instead of two. Until the mark lands the
    /// host keeps the run and its frame: a crash in between runs it again (at-least-once; the results
    /// log keeps its first result).</summary>
    public TimeSpan PublishedMarkDelay { get; init; } = TimeSpan.FromMilliseconds(20);
}

/// <summary>Asks a run host (directly, not through sharding) for <see cref="RunHostStats"/>.</summary>
public sealed record GetRunHostStats
{
    public static readonly GetRunHostStats Instance = new();
}

/// <param name="Runs">Runs taking a turn (<see cref="RunHostTuning.MaxActiveRuns"/>): started and not yet published.</param>
/// <param name="RecoveredFromSnapshot">Sequence number of the snapshot this incarnation started from (0: none).</param>
/// <param name="LastSnapshot">Sequence number of the last snapshot it saved (0: none yet).</param>
/// <param name="Queued">Accepted runs waiting for their turn (<see cref="RunHostTuning.MaxActiveRuns"/>), not counted in Runs.</param>
public sealed record RunHostStats(int Runs, int Waiting, long LastSequenceNr, long RecoveredFromSnapshot, long LastSnapshot, int Queued = 0);

/// <summary>The number of runs held by the run hosts of one process, and how many of them are queued.</summary>
public sealed class ActiveRunCounter : IDisposable
{
    private readonly IDisposable _gauge;
    private long _count;
    private long _queued;
    private int _hosts;

    public ActiveRunCounter() =>
        _gauge = Telemetry.TspMetrics.ActiveRuns.Observe(() =>
        [
            new(Count - Queued, new KeyValuePair<string, object?>("state", "started")),
            new(Queued, new KeyValuePair<string, object?>("state", "waiting")),
        ]);

    public long Count => Interlocked.Read(ref _count);

    /// <summary>Of <see cref="Count"/>, the runs waiting in their host for a turn (<see cref="RunHostTuning.MaxActiveRuns"/>).</summary>
    public long Queued => Interlocked.Read(ref _queued);

    /// <summary>Run hosts alive in this process, among which <see cref="RunHostTuning.MaxActiveRuns"/> is split.</summary>
    public int Hosts => Volatile.Read(ref _hosts);

    internal void Add(long delta) => Interlocked.Add(ref _count, delta);

    internal void AddHost(int delta) => Interlocked.Add(ref _hosts, delta);

    internal void AddQueued(long delta) => Interlocked.Add(ref _queued, delta);

    public void Dispose() => _gauge.Dispose();
}
