using Akka.Actor;
using Akka.Event;
using Akka.Persistence;
using Tsp.Actors.Dispatch;
using Tsp.Actors.Northbound;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;

namespace Tsp.Actors.Workflows;

/// <summary>What a run host needs from its orchestrator.</summary>
/// <param name="Tuning">Snapshot cadence and finished-run memory.</param>
/// <param name="Active">Counts the runs held by the hosts of this process (for status).</param>
public sealed record RunServices(WorkflowCatalog Catalog, NodeQueues Queues, RedisStore Store, IActorRef PubSubMediator, RunHostTuning? Tuning = null, ActiveRunCounter? Active = null)
{
    public ActiveRunCounter Active { get; } = Active ?? new();
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
    /// with AlreadyCompleted at once. Older ones are still recognized by the results log's marker.</summary>
    public int FinishedRunMemory { get; init; } = 4096;

    /// <summary>How often a host looks for tasks in flight for longer than their node's timeout ×
    /// attempts + 30 s, and re-sends them (a queue lost with its orchestrator).</summary>
    public TimeSpan WatchdogInterval { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Runs a host dispatches at once. Past it, accepted runs queue in the host in order of
    /// acceptance as their RunStarted alone (durable like any other, a few hundred bytes each instead
    /// of a run's live state), and start as others finish: a burst of acceptance (ingest with a large
    /// <c>MaxInFlightRuns</c>, a backlog) costs neither dispatch work nor memory per run until the
    /// run's turn comes. Ample for dispatch: the node queues hand tasks to routee slots, far fewer.</summary>
    public int MaxActiveRuns { get; init; } = 512;
}

/// <summary>Asks a run host (directly, not through sharding) for <see cref="RunHostStats"/>.</summary>
public sealed record GetRunHostStats
{
    public static readonly GetRunHostStats Instance = new();
}

/// <param name="RecoveredFromSnapshot">Sequence number of the snapshot this incarnation started from (0: none).</param>
/// <param name="LastSnapshot">Sequence number of the last snapshot it saved (0: none yet).</param>
/// <param name="Queued">Accepted runs waiting for their turn (<see cref="RunHostTuning.MaxActiveRuns"/>), not counted in Runs.</param>
public sealed record RunHostStats(int Runs, int Waiting, long LastSequenceNr, long RecoveredFromSnapshot, long LastSnapshot, int Queued = 0);

/// <summary>The number of runs held by the run hosts of one process, and how many of them are queued.</summary>
public sealed class ActiveRunCounter
{
    private long _count;
    private long _queued;

    public long Count => Interlocked.Read(ref _count);

    /// <summary>Of <see cref="Count"/>, the runs waiting in their host for a turn (<see cref="RunHostTuning.MaxActiveRuns"/>).</summary>
    public long Queued => Interlocked.Read(ref _queued);

    internal void Add(long delta) => Interlocked.Add(ref _count, delta);

    internal void AddQueued(long delta) => Interlocked.Add(ref _queued, delta);
}

/// <summary>
/// A persistent, sharded entity that holds many workflow runs — all whose run id hashes to it (see
/// <see cref="RunMessageExtractor"/>) — and walks each run's DAG. All decisions live in
/// <see cref="RunState"/>; this actor records the events (RunStarted, NodeCompleted, NodeFailed,
/// RunCompleted) in its own journal stream, dispatches nodes and publishes results.
/// </summary>
/// <remarks>
/// <para>Why a host of many runs and not an entity per run: an entity per run paid, per run, a
/// journal recovery query when it started, a remember-entities write when it started and another when
/// it stopped, and a delete of its events. A host lives as long as the cluster; the events of its runs
/// that arise while it works through its mailbox are written together as one journal entry
/// (<see cref="RunEventBatch"/>), and a snapshot every <see cref="RunHostTuning.SnapshotEvery"/> events
/// (the runs it holds plus recently finished ids) lets it delete everything before it. See
/// docs/design.md, "Run hosts".</para>
/// <para>Start is idempotent: a second StartRun for a live run answers AlreadyRunning, for a finished
/// one AlreadyCompleted. The reply to StartRun waits until RunStarted is written. Node results are
/// applied and acted on at once and persisted asynchronously (RunCompleted, persisted after them, is
/// written only once they are, so a result is never published ahead of its run's events). On recovery
/// every ready node without NodeCompleted is dispatched again (at-least-once; outputs are keyed by run
/// and node, so a re-run overwrites), and every completed run is published again (the results log
/// keeps a run's one entry).</para>
/// </remarks>
public sealed class WorkflowRunHost : ReceivePersistentActor, IWithTimers
{
    public const string PersistenceIdPrefix = "runs-";
    private const string WatchdogTimer = "watchdog";
    private const int MaxEventsPerWrite = 512;

    private readonly string _hostId;
    private readonly RunServices _services;
    private readonly RunHostTuning _tuning;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly Dictionary<string, LiveRun> _runs = new(StringComparer.Ordinal);
    private readonly Dictionary<string, RunRecord> _waiting = new(StringComparer.Ordinal);
    private readonly SegmentedDictionary<QueuedSlot> _queued = new();

    // Queued series (runs in columnar form, see StartSeries) by run id prefix, in acceptance order;
    // their runs are not in _queued: a run is found by its offset.
    private readonly Dictionary<string, List<QueuedGroup>> _queuedSeries = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<QueuedGroup>>.AlternateLookup<ReadOnlySpan<char>> _queuedSeriesByPrefix;

    // Runs of queued series that still wait for their turn.
    private int _queuedInSeries;

    // Per run id prefix that series have arrived with: the highest offset of any run with that prefix
    // this host has held (active, queued, waiting or remembered as finished). A series whose offsets
    // are all above it holds no run the host knows, so its runs need no lookup one by one.
    private readonly Dictionary<string, long> _highestOffsets = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long>.AlternateLookup<ReadOnlySpan<char>> _highestOffsetsByPrefix;

    // Shared frame string (StartRun.frame_length > 0) → how many runs held here use it; deleted at 0.
    private readonly Dictionary<string, int> _frameUsers = new(StringComparer.Ordinal);

    // Acceptance order. A run that left _queued out of turn (recovery found events of it) is skipped
    // when its group's turn reaches it.
    private readonly Queue<QueuedGroup> _queuedOrder = new();

    // The queue's last group while the write that records its runs is still open: runs accepted in
    // that write that share its common fields join it.
    private QueuedGroup? _openQueuedGroup;
    private readonly RecentIds _finished;
    private long _eventsSinceSnapshot;
    private bool _snapshotting;
    private readonly List<RunEvent> _unflushed = [];
    private readonly List<Action?> _afterFlush = [];
    private long _recoveredFromSnapshot;
    private long _lastSnapshot;

    public WorkflowRunHost(string hostId, RunServices services)
    {
        _hostId = hostId;
        _services = services;
        _tuning = services.Tuning ?? new RunHostTuning();
        _finished = new RecentIds(_tuning.FinishedRunMemory);
        _queuedSeriesByPrefix = _queuedSeries.GetAlternateLookup<ReadOnlySpan<char>>();
        _highestOffsetsByPrefix = _highestOffsets.GetAlternateLookup<ReadOnlySpan<char>>();

        Recover<SnapshotOffer>(offer =>
        {
            _recoveredFromSnapshot = offer.Metadata.SequenceNr;
            Restore((RunHostSnapshot)offer.Snapshot);
        });
        Recover<RunEventBatch>(batch =>
        {
            foreach (var e in batch.Events)
            {
                if (e.EventCase == RunEvent.EventOneofCase.RunsStarted)
                {
                    Restore(e.RunsStarted);
                }
                else if (e.EventCase == RunEvent.EventOneofCase.RunStarted)
                {
                    Restore(new RunRecord { Started = e.RunStarted });
                }
                else
                {
                    RecoverEvent(Unwrap(e));
                }
            }
        });
        Recover<RecoveryCompleted>(_ => OnRecovered());

        Command<StartRun>(start => Start(start, new StartAnswer(Sender, start), 0));
        Command<StartRuns>(batch =>
        {
            var answer = new StartAnswer(Sender, batch);
            answer.SendIfEmpty();
            for (var i = 0; i < batch.Runs.Count; i++)
            {
                Start(batch.Runs[i], answer, i);
            }

            var index = batch.Runs.Count;
            foreach (var series in batch.Series)
            {
                StartSeries(series, answer, index);
                index += series.RunOffsets.Count;
            }
        });
        Command<FlushEvents>(_ => Flush());
        Command<NodeTaskDone>(done => OnNodeResult(done.RunId, state => state.Decide(done, done.Attempts)));
        Command<NodeTaskFailed>(failed => OnNodeResult(failed.RunId, state => state.Decide(failed, failed.Attempts)));
        Command<GetRunState>(query => Sender.Tell(View(query.RunId)));
        Command<GetRunHostStats>(_ => Sender.Tell(new RunHostStats(_runs.Count, _waiting.Count, LastSequenceNr, _recoveredFromSnapshot, _lastSnapshot, QueuedCount)));
        Command<ResumeRun>(_ => { });
        Command<Watchdog>(_ => RedispatchOverdue());
        Command<ResultPublished>(published => OnPublished(published.RunId));
        Command<PublishFailed>(failed =>
        {
            _log.Warning("run {0}: publishing its result failed ({1}); retrying", failed.RunId, failed.Reason);
            Timers.StartSingleTimer("publish-" + failed.RunId, new RetryPublish(failed.RunId), TimeSpan.FromSeconds(1));
        });
        Command<RetryPublish>(retry =>
        {
            if (_runs.TryGetValue(retry.RunId, out var run))
            {
                Publish(run);
            }
        });
        Command<SaveSnapshotSuccess>(saved =>
        {
            _snapshotting = false;
            _lastSnapshot = saved.Metadata.SequenceNr;
            DeleteMessages(saved.Metadata.SequenceNr);
            DeleteSnapshots(new SnapshotSelectionCriteria(saved.Metadata.SequenceNr - 1));
            SnapshotIfDue();
        });
        Command<SaveSnapshotFailure>(failed =>
        {
            _snapshotting = false;
            _log.Warning(failed.Cause, "run host {0}: snapshot failed; its events stay in the journal until the next one", _hostId);
        });
        Command<DeleteMessagesSuccess>(_ => { });
        Command<DeleteSnapshotsSuccess>(_ => { });
        Command<DeleteMessagesFailure>(failed => _log.Warning(failed.Cause, "run host {0}: deleting events up to {1} failed", _hostId, failed.ToSequenceNr));
        Command<DeleteSnapshotsFailure>(failed => _log.Warning(failed.Cause, "run host {0}: deleting old snapshots failed", _hostId));
    }

    public override string PersistenceId => PersistenceIdPrefix + _hostId;

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(string hostId, RunServices services) =>
        Akka.Actor.Props.Create(() => new WorkflowRunHost(hostId, services));

    protected override void PostStop()
    {
        _services.Active.Add(-(_runs.Count + QueuedCount));
        _services.Active.AddQueued(-QueuedCount);
        base.PostStop();
    }

    private void Restore(RunHostSnapshot snapshot)
    {
        foreach (var record in snapshot.Runs)
        {
            Restore(record);
        }

        foreach (var group in snapshot.Queued)
        {
            Restore(group);
        }

        foreach (var id in snapshot.FinishedRunIds)
        {
            _finished.Add(id);
            NoteRunId(id);
        }
    }

    /// <summary>Restores accepted runs as queued (in order); <see cref="OnRecovered"/> starts those
    /// there is room for, and an event of one found later in the journal starts it at once.</summary>
    private void Restore(RunsStarted started)
    {
        if (started.RunIdPrefix.Length > 0 && IsUnknownSeries(started, 0))
        {
            var series = new QueuedGroup(started, durable: true);
            QueueSeries(series);
            CountQueued(series.Count);
            _openQueuedGroup = null;
            WarnIfWorkflowChanged(started, series);
            return;
        }

        QueuedGroup? group = null;
        for (var i = 0; i < RunCount(started); i++)
        {
            var runId = RunIdOf(started, i);
            if (IsHeld(runId))
            {
                continue;
            }

            NoteRunId(runId);

            if (group is null)
            {
                group = new QueuedGroup(StartedOf(started, i), durable: true);
                _queued.Add(runId, new QueuedSlot(group, 0));
            }
            else
            {
                _queued.Add(runId, new QueuedSlot(group, group.Add(runId, SourceIdAt(started, i), SliceAt(started, i))));
            }

            HoldFrame(started.Common.FrameKey, SliceAt(started, i));
        }

        if (group is not null)
        {
            WarnIfWorkflowChanged(started, group);
            CountQueued(group.Count);
            _queuedOrder.Enqueue(group);
            _openQueuedGroup = null;
        }
    }

    private void WarnIfWorkflowChanged(RunsStarted started, QueuedGroup group)
    {
        if (_services.Catalog.TryGet(started.Common.Project, out var workflow) && workflow.Hash != started.Common.WorkflowHash)
        {
            _log.Warning("{0} run(s) from {1}: started on workflow {2} of '{3}', resuming on {4}", group.Count, group.RunIdAt(0), started.Common.WorkflowHash, started.Common.Project, workflow.Hash);
        }
    }

    private bool IsHeld(string runId) => _runs.ContainsKey(runId) || _waiting.ContainsKey(runId) || TryGetQueued(runId, out _);

    private int QueuedCount => _queued.Count + _queuedInSeries;

    /// <summary>Where a queued run waits: in <see cref="_queued"/>, or in a queued series (by its offset).</summary>
    private bool TryGetQueued(string runId, out QueuedSlot slot)
    {
        if (_queued.TryGetValue(runId, out slot))
        {
            return true;
        }

        if (_queuedInSeries > 0 && SeriesRunId.TryParse(runId, out var prefix, out var offset) && _queuedSeriesByPrefix.TryGetValue(prefix, out var groups))
        {
            foreach (var group in groups)
            {
                var index = group.IndexOfOffset(offset);
                if (index >= group.Next && !group.IsTaken(index))
                {
                    slot = new QueuedSlot(group, index);
                    return true;
                }
            }
        }

        return false;
    }

    /// <summary>Keeps <see cref="_highestOffsets"/> true for a run id entering the host one by one.</summary>
    private void NoteRunId(string runId)
    {
        if (_highestOffsets.Count > 0 && SeriesRunId.TryParse(runId, out var prefix, out var offset)
            && _highestOffsetsByPrefix.TryGetValue(prefix, out var highest) && offset > highest)
        {
            _highestOffsetsByPrefix[prefix] = offset;
        }
    }

    /// <summary>The highest offset of a run with <paramref name="prefix"/> that this host holds or
    /// remembers as finished (-1: none). The first time a prefix is asked for, the host looks through
    /// what it holds; from then on every run entering keeps the figure (<see cref="NoteRunId"/>).</summary>
    private long HighestOffset(string prefix)
    {
        if (_highestOffsets.TryGetValue(prefix, out var highest))
        {
            return highest;
        }

        highest = -1;
        void Consider(string runId)
        {
            if (SeriesRunId.TryParse(runId, out var p, out var offset) && offset > highest && p.SequenceEqual(prefix))
            {
                highest = offset;
            }
        }

        foreach (var runId in _runs.Keys.Concat(_waiting.Keys).Concat(_queued.Keys).Concat(_finished.Newest()))
        {
            Consider(runId);
        }

        if (_queuedSeries.TryGetValue(prefix, out var groups))
        {
            foreach (var group in groups)
            {
                highest = Math.Max(highest, group.LastOffset);
            }
        }

        _highestOffsets.Add(prefix, highest);
        return highest;
    }

    /// <summary>Whether runs [from..] of a series hold offsets that increase and are all above every
    /// run of their prefix that this host knows: then none of them needs looking up.</summary>
    private bool IsUnknownSeries(RunsStarted series, int from)
    {
        var offsets = series.RunOffsets;
        if (from >= offsets.Count || offsets[from] <= HighestOffset(series.RunIdPrefix))
        {
            return false;
        }

        // All of them, not only [from..]: the runs before `from` start one by one, and must differ from these.
        for (var i = 1; i < offsets.Count; i++)
        {
            if (offsets[i] <= offsets[i - 1])
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Puts a series group at the end of the queue (nothing joins it) and makes its runs findable.</summary>
    private void QueueSeries(QueuedGroup series)
    {
        _queuedOrder.Enqueue(series);
        var prefix = series.Series!.RunIdPrefix;
        if (!_queuedSeries.TryGetValue(prefix, out var groups))
        {
            _queuedSeries.Add(prefix, groups = []);
        }

        groups.Add(series);
        _queuedInSeries += series.Count;
        _highestOffsets[prefix] = Math.Max(HighestOffset(prefix), series.LastOffset);
        HoldFrames(series.Series.Common.FrameKey, series.Series.FrameLengths.Count > 0 ? series.Count : 0);
    }

    private void Restore(RunRecord record)
    {
        var runId = record.Started.RunId;
        if (IsHeld(runId))
        {
            return;
        }

        if (record.Events.Count == 0)
        {
            Restore(GroupOfOne(record.Started));
            return;
        }

        if (!_services.Catalog.TryGet(record.Started.Project, out var workflow))
        {
            _log.Error("run {0}: project '{1}' is not deployed on this orchestrator ({2}); the run waits until it is", runId, record.Started.Project, _services.Catalog.Describe());
            _waiting.Add(runId, record);
            NoteRunId(runId);
            HoldFrame(record.Started);
            return;
        }

        if (workflow.Hash != record.Started.WorkflowHash)
        {
            _log.Warning("run {0}: started on workflow {1} of '{2}', resuming on {3}", runId, record.Started.WorkflowHash, record.Started.Project, workflow.Hash);
        }

        var run = Add(RunState.Start(workflow, record.Started));
        HoldFrame(record.Started);
        foreach (var e in record.Events)
        {
            Apply(run, Unwrap(e));
        }
    }

    private bool HasRoom => _runs.Count < Math.Max(1, _tuning.MaxActiveRuns);

    private void CountQueued(int runs)
    {
        _services.Active.Add(runs);
        _services.Active.AddQueued(runs);
    }

    /// <summary>Queues a newly accepted run behind the others, in the queue's last group when that
    /// group is recorded by the same write and shares the run's common fields.</summary>
    private QueuedSlot Enqueue(StartRun start, string workflowHash)
    {
        var slot = _openQueuedGroup is { } open && open.Shares(start, workflowHash)
            ? new QueuedSlot(open, open.Add(start.RunId, start.SourceId, new FrameSlice(start.FrameOffset, start.FrameLength)))
            : new QueuedSlot(OpenGroup(NewStarted(start, workflowHash)), 0);
        _queued.Add(start.RunId, slot);
        NoteRunId(start.RunId);
        HoldFrame(start.FrameKey, new FrameSlice(start.FrameOffset, start.FrameLength));
        CountQueued(1);
        return slot;
    }

    private QueuedGroup OpenGroup(RunStarted first)
    {
        var group = new QueuedGroup(first, durable: false);
        _queuedOrder.Enqueue(group);
        _openQueuedGroup = group;
        // One callback for the group, however many runs join it before its write.
        AfterRecorded(() =>
        {
            group.Written();
            StartQueued();
        });
        return group;
    }

    /// <summary>Takes a queued run out of the queue (its turn came, or recovery found events of it).</summary>
    private LiveRun? Activate(string runId, QueuedSlot slot)
    {
        if (slot.Group.Series is null)
        {
            _queued.Remove(runId);
        }
        else
        {
            // A run before Next had its turn and is never looked up again; one after it leaves out of turn.
            if (slot.Index >= slot.Group.Next)
            {
                slot.Group.Take(slot.Index);
            }

            _queuedInSeries--;
        }

        CountQueued(-1);
        var started = slot.Group.StartedOf(slot.Index);
        if (!_services.Catalog.TryGet(started.Project, out var workflow))
        {
            _log.Error("run {0}: project '{1}' is not deployed on this orchestrator ({2}); the run waits until it is", runId, started.Project, _services.Catalog.Describe());
            _waiting.Add(runId, new RunRecord { Started = started });
            return null;
        }

        return Add(RunState.Start(workflow, started));
    }

    /// <summary>Starts queued runs, oldest first, while there is room; only durable ones (writes complete
    /// in order, so a run that is not yet durable has none behind it that is).</summary>
    private void StartQueued()
    {
        while (HasRoom && _queuedOrder.TryPeek(out var group))
        {
            if (group.Next == group.Count)
            {
                _queuedOrder.Dequeue();
                if (ReferenceEquals(group, _openQueuedGroup))
                {
                    _openQueuedGroup = null;
                }

                if (group.Series is { } series && _queuedSeries.TryGetValue(series.RunIdPrefix, out var groups))
                {
                    groups.Remove(group);
                    if (groups.Count == 0)
                    {
                        _queuedSeries.Remove(series.RunIdPrefix);
                    }
                }

                continue;
            }

            if (!group.Durable)
            {
                return;
            }

            var index = group.Next++;
            if (group.Series is not null)
            {
                if (!group.IsTaken(index) && Activate(group.RunIdAt(index), new QueuedSlot(group, index)) is { } next)
                {
                    Advance(next);
                }

                continue;
            }

            var runId = group.RunIdAt(index);
            if (_queued.TryGetValue(runId, out var slot) && slot.Group == group && slot.Index == index && Activate(runId, slot) is { } run)
            {
                Advance(run);
            }
        }
    }

    private void RecoverEvent(IRunEvent e)
    {
        if (_runs.TryGetValue(e.RunId, out var run))
        {
            Apply(run, e);
        }
        else if (TryGetQueued(e.RunId, out var queued))
        {
            // It had started before the crash: it resumes now, not in its queue turn.
            if (Activate(e.RunId, queued) is { } activated)
            {
                Apply(activated, e);
            }
            else
            {
                _waiting[e.RunId].Events.Add(Wrap(e));
            }
        }
        else if (_waiting.TryGetValue(e.RunId, out var record))
        {
            record.Events.Add(Wrap(e));
        }
    }

    private void OnRecovered()
    {
        if (_runs.Count + _waiting.Count + QueuedCount > 0)
        {
            _log.Info("run host {0}: recovered {1} run(s) at event {2}, {3} of them queued; resuming", _hostId, _runs.Count + _waiting.Count + QueuedCount, LastSequenceNr, QueuedCount);
        }

        foreach (var run in _runs.Values.ToList())
        {
            if (run.State.IsCompleted)
            {
                Publish(run);
            }
            else
            {
                Advance(run);
            }
        }

        StartQueued();
        Timers.StartPeriodicTimer(WatchdogTimer, Watchdog.Instance, _tuning.WatchdogInterval);
    }

    /// <summary>Starts one run, or answers what is known about it, in slot <paramref name="index"/> of
    /// <paramref name="answer"/>. Starts that arrive together (a <see cref="StartRuns"/>, or a mailbox
    /// full of StartRun) share one journal write.</summary>
    private void Start(StartRun start, StartAnswer answer, int index)
    {
        var runId = start.RunId;
        if (_runs.TryGetValue(runId, out var live))
        {
            if (live.StartWaiters is { } waiters)
            {
                waiters.Add((answer, index));
            }
            else
            {
                answer.Set(index, live.State.IsCompleted ? StartOutcome.AlreadyCompleted : StartOutcome.AlreadyRunning);
            }

            return;
        }

        if (_finished.Contains(runId))
        {
            answer.Set(index, StartOutcome.AlreadyCompleted);
            return;
        }

        if (TryGetQueued(runId, out var queued))
        {
            if (!queued.Group.Durable)
            {
                queued.Group.WaitForWrite(answer, index, queued.Index);
            }
            else
            {
                answer.Set(index, StartOutcome.AlreadyRunning);
            }

            return;
        }

        if (_waiting.TryGetValue(runId, out var waiting))
        {
            answer.Set(index, StartOutcome.Rejected, $"run {runId} of project '{waiting.Started.Project}' waits: the project is not deployed (deployed: {_services.Catalog.Describe()})");
            return;
        }

        if (!_services.Catalog.TryGet(start.Project, out var workflow))
        {
            answer.Set(index, StartOutcome.Rejected, $"unknown project '{start.Project}' (deployed: {_services.Catalog.Describe()})");
            return;
        }

        if (start.FrameField.Length > 0 && start.FrameField != runId)
        {
            answer.Set(index, StartOutcome.Rejected, $"run {runId}: frame_field '{start.FrameField}' must be empty or the run id");
            return;
        }

        if (!HasRoom || QueuedCount > 0)
        {
            // Recorded before it is queued: the group's write callback joins the write that records it.
            RecordStart(start, workflow.Hash, afterWrite: null);
            var place = Enqueue(start, workflow.Hash);
            place.Group.WaitForWrite(answer, index, place.Index);
            return;
        }

        StartActive(start, workflow, answer, index);
    }

    /// <summary>Starts the runs of a series (<see cref="StartRuns.Series"/>) in slots
    /// <paramref name="first"/>.. of <paramref name="answer"/>. Those that wait for a turn and that the
    /// host cannot know yet (their offsets are above every offset of their prefix it holds) are
    /// recorded and queued as the series itself: no run id, index entry or object per run. The others
    /// (a redelivery, runs that start at once) go one by one through <see cref="Start"/>.</summary>
    private void StartSeries(RunsStarted series, StartAnswer answer, int first)
    {
        var count = series.RunOffsets.Count;
        if (count == 0)
        {
            return;
        }

        var problem = !_services.Catalog.TryGet(series.Common?.Project ?? string.Empty, out var workflow) ? $"unknown project '{series.Common?.Project}' (deployed: {_services.Catalog.Describe()})"
            : series.RunIds.Count > 0 || !series.RunIdPrefix.EndsWith('-') || (series.FrameLengths.Count != 0 && series.FrameLengths.Count != count) || series.FrameOffsets.Count != series.FrameLengths.Count || (series.SourceIds.Count != 0 && series.SourceIds.Count != count)
                ? $"series '{series.RunIdPrefix}' of {count} run(s) is malformed: run ids, frame slices or source ids do not match its offsets"
            : null;
        if (problem is not null)
        {
            for (var i = 0; i < count; i++)
            {
                answer.Set(first + i, StartOutcome.Rejected, problem);
            }

            return;
        }

        // Runs that start at once (the host has room) take the ordinary path; the rest may queue as one.
        var atOnce = HasRoom && QueuedCount == 0 ? Math.Min(count, Math.Max(1, _tuning.MaxActiveRuns) - _runs.Count) : 0;
        var queueAsSeries = IsUnknownSeries(series, atOnce);
        var oneByOne = queueAsSeries ? atOnce : count;
        for (var i = 0; i < oneByOne; i++)
        {
            Start(StartOf(series, i), answer, first + i);
        }

        if (!queueAsSeries)
        {
            return;
        }

        var queued = new RunsStarted
        {
            Common = new RunStarted { Project = series.Common!.Project, FrameKey = series.Common.FrameKey, AcceptedAtUnixMs = series.Common.AcceptedAtUnixMs, WorkflowHash = workflow!.Hash },
            RunIdPrefix = series.RunIdPrefix,
        };
        CopyRuns(series, atOnce, count, queued);
        Record(new RunEvent { RunsStarted = queued }, afterWrite: null);
        var group = new QueuedGroup(queued, durable: false);
        QueueSeries(group);
        CountQueued(group.Count);
        // Runs accepted after it in this write queue behind it, in a group of their own.
        _openQueuedGroup = null;
        AfterRecorded(() =>
        {
            group.Written();
            StartQueued();
        });
        group.WaitForWrite(answer, first + atOnce, 0, group.Count);
    }

    /// <summary>Runs [from..to) of a series, appended to <paramref name="target"/> (of the same prefix).</summary>
    private static void CopyRuns(RunsStarted series, int from, int to, RunsStarted target)
    {
        if (from == 0 && to == series.RunOffsets.Count)
        {
            target.RunOffsets.Add(series.RunOffsets);
            target.FrameOffsets.Add(series.FrameOffsets);
            target.FrameLengths.Add(series.FrameLengths);
            target.SourceIds.Add(series.SourceIds);
            return;
        }

        for (var i = from; i < to; i++)
        {
            target.RunOffsets.Add(series.RunOffsets[i]);
            if (series.FrameLengths.Count > 0)
            {
                target.FrameOffsets.Add(series.FrameOffsets[i]);
                target.FrameLengths.Add(series.FrameLengths[i]);
            }

            if (series.SourceIds.Count > 0)
            {
                target.SourceIds.Add(series.SourceIds[i]);
            }
        }
    }

    /// <summary>The <paramref name="index"/>-th run of a series as a StartRun of its own.</summary>
    private static StartRun StartOf(RunsStarted series, int index) => new()
    {
        RunId = SeriesRunId.Of(series.RunIdPrefix, series.RunOffsets[index]),
        Project = series.Common.Project,
        FrameKey = series.Common.FrameKey,
        SourceId = SourceIdAt(series, index),
        AcceptedAtUnixMs = series.Common.AcceptedAtUnixMs,
        FrameOffset = series.FrameOffsets.Count > 0 ? series.FrameOffsets[index] : 0,
        FrameLength = series.FrameLengths.Count > 0 ? series.FrameLengths[index] : 0,
    };

    /// <summary>Starts a run that does not wait for a turn. A method of its own so that the closure it
    /// needs is allocated only here, not on every start.</summary>
    private void StartActive(StartRun start, WorkflowDefinition workflow, StartAnswer answer, int index)
    {
        // Held from now on (a snapshot taken while its start is being written must contain the run);
        // dispatched only once the start is durable.
        var run = Add(RunState.Start(workflow, NewStarted(start, workflow.Hash)));
        HoldFrame(run.State.Started);
        run.StartWaiters = [(answer, index)];
        RecordStart(start, workflow.Hash, () =>
        {
            foreach (var (waiter, slot) in run.StartWaiters!)
            {
                waiter.Set(slot, StartOutcome.Accepted);
            }

            run.StartWaiters = null;
            Advance(run);
        });
    }

    private void OnNodeResult(string runId, Func<RunState, IReadOnlyList<IRunEvent>> decide)
    {
        if (!_runs.TryGetValue(runId, out var run) || run.StartWaiters is not null)
        {
            return;
        }

        var events = decide(run.State);
        if (events.Count == 0)
        {
            return;
        }

        // Applied and acted on before the write completes: dispatching a child before its parent's
        // completion is durable only risks re-running the parent after a crash (at-least-once), and it
        // keeps journal latency off the DAG's critical path.
        foreach (var e in events)
        {
            Apply(run, e);
            run.Unwritten++;
            Record(Wrap(e), () => run.Unwritten--);
        }

        Advance(run);
    }

    /// <summary>Dispatches what became ready, or completes the run once nothing is left.</summary>
    private void Advance(LiveRun run)
    {
        var state = run.State;
        if (state.IsFinished)
        {
            if (run.Completing || state.IsCompleted)
            {
                return;
            }

            run.Completing = true;
            var completed = state.Complete(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
            // Written after every earlier event of the run (one host, one ordered stream of batches),
            // so a result is never published ahead of its run's events.
            Record(Wrap(completed), () =>
            {
                Apply(run, completed);
                Publish(run);
            });
            return;
        }

        foreach (var node in state.Ready)
        {
            if (run.Dispatched.TryAdd(node, Environment.TickCount64))
            {
                Dispatch(run, node);
            }
        }
    }

    private void Dispatch(LiveRun run, int node)
    {
        var state = run.State;
        var runId = state.RunId;
        var definition = state.Workflow.Nodes[node];
        var task = new NodeTask
        {
            TaskId = $"{runId}/{definition.Id}",
            RunId = runId,
            Project = state.Started.Project,
            NodeId = definition.Id,
            Processor = definition.Processor,
            OutputKey = RedisKeys.NodeOutput(state.Started.Project, runId, definition.Id),
            TimeoutMs = (long)definition.Timeout.TotalMilliseconds,
            MaxAttempts = definition.MaxAttempts,
            OutputTtlS = (int)_services.Store.Options.BlobTtl.TotalSeconds,
        };
        foreach (var (key, value) in definition.Parameters)
        {
            task.Parameters[key] = value;
        }

        var parents = state.Workflow.Parents[node];
        if (parents.Length == 0)
        {
            task.Inputs.Add(new NodeInput { NodeId = RedisKeys.FrameNodeId, Key = state.Started.FrameKey, Field = state.Started.FrameField, Offset = state.Started.FrameOffset, Length = state.Started.FrameLength });
        }

        foreach (var parent in parents)
        {
            if (state.ResultOf(parent) is { } result)
            {
                task.Inputs.Add(new NodeInput { NodeId = result.NodeId, Key = result.OutputKey });
            }
        }

        if (_services.Queues.TryGet(definition.Queue, out var queue))
        {
            queue.Tell(task);
        }
        else
        {
            Self.Tell(new NodeTaskFailed
            {
                TaskId = task.TaskId,
                RunId = runId,
                NodeId = definition.Id,
                Reason = $"queue '{definition.Queue}' does not exist on this orchestrator",
                Attempts = 0,
            });
        }
    }

    /// <summary>A safety net for a task lost with its queue: queues drop a duplicate of a task they
    /// hold, so re-sending one in flight is harmless.</summary>
    private void RedispatchOverdue()
    {
        var now = Environment.TickCount64;
        foreach (var run in _runs.Values)
        {
            if (run.State.IsFinished || run.Dispatched.Count == 0)
            {
                continue;
            }

            var overdueAfter = (long)OverdueAfter(run.State.Workflow).TotalMilliseconds;
            foreach (var (node, at) in run.Dispatched.ToList())
            {
                if (run.State.StatusOf(node) == NodeStatus.Unspecified && now - at > overdueAfter)
                {
                    run.Dispatched[node] = now;
                    Dispatch(run, node);
                }
            }
        }
    }

    private static TimeSpan OverdueAfter(WorkflowDefinition workflow) =>
        TimeSpan.FromMilliseconds(workflow.Nodes.Max(n => n.Timeout.TotalMilliseconds * n.MaxAttempts)) + TimeSpan.FromSeconds(30);

    /// <summary>Logs and publishes the result. Safe to repeat (after a crash or a failed attempt): the
    /// log keeps the run's one entry, and a failed run its one dead letter.</summary>
    private void Publish(LiveRun run)
    {
        var state = run.State;
        var result = state.ToResult();
        var store = _services.Store;
        var mediator = _services.PubSubMediator;
        PublishAsync().PipeTo(Self, failure: e => new PublishFailed(result.RunId, e.Message));

        async Task<ResultPublished> PublishAsync()
        {
            var deadLetter = state.Failure is { } failure
                ? new Protocol.DeadLetter
                {
                    Project = result.Project,
                    Origin = "run",
                    Reference = result.RunId,
                    NodeId = failure.NodeId,
                    Reason = result.Error,
                    AtUnixMs = result.CompletedAtUnixMs,
                }
                : null;
            await ResultPublisher.PublishAsync(store, mediator, result, deadLetter);
            var outputs = result.Nodes.Where(n => n.OutputKey.Length > 0).Select(n => n.OutputKey);
            if (state.Started.FrameField.Length > 0)
            {
                await store.ExpireFinishedAsync(outputs);
                await store.DeleteFramesAsync(state.Started.FrameKey, [state.Started.FrameField]);
            }
            else if (state.Started.FrameLength > 0)
            {
                // The frame's string is shared: see ReleaseFrame.
                await store.ExpireFinishedAsync(outputs);
            }
            else
            {
                await store.ExpireFinishedAsync(outputs.Append(state.Started.FrameKey));
            }

            return new ResultPublished(result.RunId);
        }
    }

    private void OnPublished(string runId)
    {
        if (_runs.Remove(runId, out var run))
        {
            ReleaseFrame(run.State.Started);
            _services.Active.Add(-1);
            _finished.Add(runId);
            StartQueued();
        }
    }

    private void HoldFrame(RunStarted started) => HoldFrame(started.FrameKey, new FrameSlice(started.FrameOffset, started.FrameLength));

    /// <summary>Counts a run that this host now holds (active, queued or waiting) against the frame
    /// string it shares with the runs submitted with it. Called once per run as it enters the host.</summary>
    private void HoldFrame(string frameKey, FrameSlice slice)
    {
        if (slice.Length > 0)
        {
            HoldFrames(frameKey, 1);
        }
    }

    /// <summary><see cref="HoldFrame(string, FrameSlice)"/> for <paramref name="runs"/> runs with slices of one string.</summary>
    private void HoldFrames(string frameKey, int runs)
    {
        if (runs > 0)
        {
            System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(_frameUsers, frameKey, out _) += runs;
        }
    }

    /// <summary>A run left the host (its result is published): once no run it holds uses the shared
    /// frame string any more, the string is deleted, as a batch's frames always were (they are the
    /// bulk of what ingest writes; a frame of its own stays for the finished-blob TTL). Only the host
    /// that holds a string's runs uses it: a StartRuns is one host's runs.</summary>
    private void ReleaseFrame(RunStarted started)
    {
        if (started.FrameLength == 0 || !_frameUsers.TryGetValue(started.FrameKey, out var users))
        {
            return;
        }

        if (users > 1)
        {
            _frameUsers[started.FrameKey] = users - 1;
            return;
        }

        _frameUsers.Remove(started.FrameKey);
        var key = started.FrameKey;
        var log = _log;
        _ = _services.Store.DeleteBlobsAsync([key]).ContinueWith(
            t => log.Warning("frames {0}: deleting them failed ({1}); they expire with the blob TTL", key, t.Exception?.GetBaseException().Message),
            CancellationToken.None,
            TaskContinuationOptions.OnlyOnFaulted,
            TaskScheduler.Default);
    }

    private LiveRun Add(RunState state)
    {
        var run = new LiveRun(state);
        _runs.Add(state.RunId, run);
        NoteRunId(state.RunId);
        _services.Active.Add(1);
        return run;
    }

    private static void Apply(LiveRun run, IRunEvent e)
    {
        var before = run.State;
        run.State = before.Apply(e);
        if (!ReferenceEquals(before, run.State) || e is RunCompleted)
        {
            run.Events.Add(Wrap(e));
        }
    }

    /// <summary>Queues an event for the host's next journal write; <paramref name="afterWrite"/> runs once
    /// it is durable. Events that arise while the host works through its mailbox share one write: the
    /// flush is a message behind everything already queued.</summary>
    /// <remarks>A full write is flushed before <paramref name="e"/> is added, not after, so that
    /// <paramref name="e"/> is always in the open write when this returns (see <see cref="Enqueue"/>).</remarks>
    private void Record(RunEvent e, Action? afterWrite)
    {
        if (_unflushed.Count >= MaxEventsPerWrite)
        {
            Flush();
        }

        if (_unflushed.Count == 0)
        {
            Self.Tell(FlushEvents.Instance);
        }

        _unflushed.Add(e);
        _afterFlush.Add(afterWrite);
    }

    /// <summary>Records a run's start: added to the open write's last event when that is a
    /// <see cref="RunsStarted"/> the run shares its common fields with (the runs of one StartRuns),
    /// otherwise as a new one.</summary>
    private void RecordStart(StartRun start, string workflowHash, Action? afterWrite)
    {
        if (_unflushed.Count > 0 && _unflushed[^1].RunsStarted is { } open && Shares(open, start, workflowHash))
        {
            AddRun(open, start.RunId, start.SourceId, new FrameSlice(start.FrameOffset, start.FrameLength));
            if (afterWrite is not null)
            {
                AfterRecorded(afterWrite);
            }

            return;
        }

        var e = NewGroup(start, workflowHash);
        AddRun(e, start.RunId, start.SourceId, new FrameSlice(start.FrameOffset, start.FrameLength));
        Record(new RunEvent { RunsStarted = e }, afterWrite);
    }

    private static RunStarted NewStarted(StartRun start, string workflowHash) => new()
    {
        RunId = start.RunId,
        Project = start.Project,
        FrameKey = start.FrameKey,
        FrameField = start.FrameField,
        SourceId = start.SourceId,
        AcceptedAtUnixMs = start.AcceptedAtUnixMs,
        WorkflowHash = workflowHash,
        FrameOffset = start.FrameOffset,
        FrameLength = start.FrameLength,
    };

    private static RunsStarted NewGroup(StartRun start, string workflowHash) => new()
    {
        Common = new RunStarted { Project = start.Project, FrameKey = start.FrameKey, AcceptedAtUnixMs = start.AcceptedAtUnixMs, WorkflowHash = workflowHash },
        FrameFieldIsRunId = start.FrameField.Length > 0,
    };

    private static RunsStarted GroupOfOne(RunStarted started)
    {
        var group = EmptyGroupLike(started);
        AddRun(group, started.RunId, started.SourceId, new FrameSlice(started.FrameOffset, started.FrameLength));
        return group;
    }

    /// <summary>A RunsStarted with the common fields of <paramref name="started"/> and no runs yet.</summary>
    private static RunsStarted EmptyGroupLike(RunStarted started) => new()
    {
        Common = new RunStarted { Project = started.Project, FrameKey = started.FrameKey, AcceptedAtUnixMs = started.AcceptedAtUnixMs, WorkflowHash = started.WorkflowHash },
        FrameFieldIsRunId = started.FrameField.Length > 0,
    };

    private static bool Shares(RunsStarted group, StartRun start, string workflowHash)
    {
        var common = group.Common;
        return group.RunIdPrefix.Length == 0
            && common.AcceptedAtUnixMs == start.AcceptedAtUnixMs
            && group.FrameFieldIsRunId == start.FrameField.Length > 0
            && group.FrameLengths.Count > 0 == start.FrameLength > 0
            && string.Equals(common.FrameKey, start.FrameKey, StringComparison.Ordinal)
            && string.Equals(common.Project, start.Project, StringComparison.Ordinal)
            && string.Equals(common.WorkflowHash, workflowHash, StringComparison.Ordinal);
    }

    private static void AddRun(RunsStarted group, string runId, string sourceId, FrameSlice slice)
    {
        if (slice.Length > 0)
        {
            // A group's runs all have slices or none (Shares): one entry per run id.
            group.FrameOffsets.Add(slice.Offset);
            group.FrameLengths.Add(slice.Length);
        }

        if (sourceId.Length > 0 && group.SourceIds.Count < group.RunIds.Count)
        {
            // Source ids are kept only once a run has one: back-fill the runs before it.
            group.SourceIds.Add(Enumerable.Repeat(string.Empty, group.RunIds.Count - group.SourceIds.Count));
        }

        group.RunIds.Add(runId);
        if (group.SourceIds.Count > 0)
        {
            group.SourceIds.Add(sourceId);
        }
    }

    private static string SourceIdAt(RunsStarted group, int index) => group.SourceIds.Count > 0 ? group.SourceIds[index] : string.Empty;

    private static FrameSlice SliceAt(RunsStarted group, int index) =>
        group.FrameLengths.Count > 0 ? new FrameSlice(group.FrameOffsets[index], group.FrameLengths[index]) : default;

    private static RunStarted StartedOf(RunsStarted group, int index)
    {
        var started = group.Common.Clone();
        started.RunId = RunIdOf(group, index);
        started.SourceId = SourceIdAt(group, index);
        started.FrameField = group.FrameFieldIsRunId ? started.RunId : string.Empty;
        (started.FrameOffset, started.FrameLength) = SliceAt(group, index);
        return started;
    }

    private static int RunsIn(RunEvent e) => e.EventCase == RunEvent.EventOneofCase.RunsStarted ? RunCount(e.RunsStarted) : 1;

    /// <summary>A group's runs: its run ids, or its series' offsets.</summary>
    private static int RunCount(RunsStarted group) => group.RunIds.Count + group.RunOffsets.Count;

    private static string RunIdOf(RunsStarted group, int index) =>
        group.RunIdPrefix.Length > 0 ? SeriesRunId.Of(group.RunIdPrefix, group.RunOffsets[index]) : group.RunIds[index];

    /// <summary>Runs <paramref name="action"/> once everything recorded so far is durable.</summary>
    private void AfterRecorded(Action action)
    {
        if (_unflushed.Count > 0)
        {
            _afterFlush[^1] = _afterFlush[^1] is { } earlier ? earlier + action : action;
        }
        else
        {
            // Already handed to the journal: deferred handlers run after the pending writes' handlers.
            DeferAsync(action, a => a());
        }
    }

    private void Flush()
    {
        if (_unflushed.Count == 0)
        {
            return;
        }

        var batch = new RunEventBatch();
        batch.Events.Add(_unflushed);
        var afterWrite = _afterFlush.ToArray();
        _unflushed.Clear();
        _afterFlush.Clear();
        _openQueuedGroup = null;
        PersistAsync(batch, _ =>
        {
            foreach (var action in afterWrite)
            {
                action?.Invoke();
            }
        });
        // Counted in runs: a RunsStarted restores as many on recovery.
        _eventsSinceSnapshot += batch.Events.Sum(RunsIn);
        SnapshotIfDue();
    }

    private void SnapshotIfDue()
    {
        if (_eventsSinceSnapshot < Math.Max(_tuning.SnapshotEvery, _runs.Count + _waiting.Count + QueuedCount) || _snapshotting)
        {
            return;
        }

        _eventsSinceSnapshot = 0;
        _snapshotting = true;
        // The snapshot is stamped with LastSequenceNr, but holds the effects of every event applied so
        // far, including ones whose write is still in flight (they get higher sequence numbers).
        // Recovery replays those too, and replaying an event whose effect is already in the state
        // changes nothing (a run that exists, a node that is no longer pending), so recovering from
        // the snapshot gives the same state as replaying the whole journal.
        var snapshot = new RunHostSnapshot();
        snapshot.Runs.Add(_runs.Values.Select(r => r.ToRecord()));
        snapshot.Runs.Add(_waiting.Values);
        snapshot.Queued.Add(_queuedOrder.Select(StillQueued).Where(g => RunCount(g) > 0));
        snapshot.FinishedRunIds.Add(_finished.Newest());
        SaveSnapshot(snapshot);
    }

    /// <summary>The runs of a queued group that are still waiting for their turn.</summary>
    private RunsStarted StillQueued(QueuedGroup group)
    {
        if (group.Series is { } series)
        {
            var left = new RunsStarted { Common = series.Common, RunIdPrefix = series.RunIdPrefix };
            for (var i = group.Next; i < group.Count; i++)
            {
                if (!group.IsTaken(i))
                {
                    CopyRuns(series, i, i + 1, left);
                }
            }

            return left;
        }

        var waiting = EmptyGroupLike(group.First);
        for (var i = group.Next; i < group.Count; i++)
        {
            var runId = group.RunIdAt(i);
            if (_queued.TryGetValue(runId, out var slot) && slot.Group == group && slot.Index == i)
            {
                AddRun(waiting, runId, group.SourceIdAt(i), group.SliceAt(i));
            }
        }

        return waiting;
    }

    private RunStateView View(string runId)
    {
        var view = new RunStateView { RunId = runId };
        if (_runs.TryGetValue(runId, out var run))
        {
            var state = run.State;
            view.Exists = true;
            view.Completed = state.IsCompleted;
            view.Project = state.Started.Project;
            view.UnwrittenEvents = run.Unwritten;
            view.Nodes.Add(state.ToResult().Nodes);
            view.Pending.Add(run.Dispatched.Keys.Where(n => state.StatusOf(n) == NodeStatus.Unspecified).Select(n => state.Workflow.Nodes[n].Id));
        }
        else if (_waiting.TryGetValue(runId, out var waiting))
        {
            view.Exists = true;
            view.Project = waiting.Started.Project;
        }
        else if (TryGetQueued(runId, out var queued))
        {
            view.Exists = true;
            view.Project = queued.Group.Project;
        }
        else if (_finished.Contains(runId))
        {
            view.Exists = true;
            view.Completed = true;
        }

        return view;
    }

    private static RunEvent Wrap(IRunEvent e) => e switch
    {
        NodeCompleted c => new RunEvent { NodeCompleted = c },
        NodeFailed f => new RunEvent { NodeFailed = f },
        RunCompleted d => new RunEvent { RunCompleted = d },
        _ => throw new ArgumentException($"not a run event to record: {e.GetType().Name}", nameof(e)),
    };

    private static IRunEvent Unwrap(RunEvent e) => e.EventCase switch
    {
        RunEvent.EventOneofCase.NodeCompleted => e.NodeCompleted,
        RunEvent.EventOneofCase.NodeFailed => e.NodeFailed,
        RunEvent.EventOneofCase.RunCompleted => e.RunCompleted,
        _ => throw new InvalidOperationException("an empty run event in a snapshot"),
    };

    private sealed class LiveRun(RunState state)
    {
        public RunState State { get; set; } = state;

        /// <summary>Events applied after RunStarted, in order: what a snapshot records for the run.</summary>
        public List<RunEvent> Events { get; } = [];

        /// <summary>Node index → when it was (last) sent to its queue (Environment.TickCount64).</summary>
        public Dictionary<int, long> Dispatched { get; } = [];

        /// <summary>Non-null while RunStarted is being written: who is waiting for the answer.</summary>
        public List<(StartAnswer Answer, int Index)>? StartWaiters { get; set; }

        public int Unwritten { get; set; }

        public bool Completing { get; set; }

        public RunRecord ToRecord()
        {
            var record = new RunRecord { Started = State.Started };
            record.Events.Add(Events);
            return record;
        }
    }

    /// <summary>Where a queued run is: its group and its index there.</summary>
    private readonly record struct QueuedSlot(QueuedGroup Group, int Index);

    /// <summary>Where a run's frame is in a string shared with the runs submitted together
    /// (<see cref="StartRun.FrameLength"/>); Length 0: the frame key is the run's own.</summary>
    private readonly record struct FrameSlice(uint Offset, uint Length);

    /// <summary>Accepted runs waiting for their turn that were recorded by one write and share their
    /// common fields: the first run's RunStarted, then only the ids (and source ids) of the others; or
    /// a series (<see cref="StartSeries"/>): the RunsStarted that recorded them, whose runs are found by
    /// offset and have no entry in the host's index.</summary>
    private sealed class QueuedGroup
    {
        private List<string>? _moreRunIds;

        // Source ids of the runs after the first, kept only once one has one.
        private List<string>? _moreSourceIds;

        // Frame slices of the runs after the first, when the group's frames are slices of one string.
        private List<FrameSlice>? _moreSlices;

        // Until the group's write completes: the starts to answer, repeats included, as runs of
        // consecutive answer slots for consecutive runs of the group (a StartRuns is one such run).
        private List<WaitingStarts>? _waiters;

        // Of a series: the runs that left the queue out of turn (recovery found events of them).
        private HashSet<int>? _taken;

        public QueuedGroup(RunStarted first, bool durable)
        {
            First = first;
            Durable = durable;
        }

        public QueuedGroup(RunsStarted series, bool durable)
        {
            Series = series;
            First = series.Common;
            Durable = durable;
        }

        /// <summary>The first run's RunStarted; of a series, only its common fields.</summary>
        public RunStarted First { get; }

        public RunsStarted? Series { get; }

        public string Project => First.Project;

        public int Count => Series?.RunOffsets.Count ?? 1 + (_moreRunIds?.Count ?? 0);

        /// <summary>Runs before this index have had their turn (or left the queue earlier).</summary>
        public int Next { get; set; }

        /// <summary>Its runs' starts are written; only then may they be dispatched.</summary>
        public bool Durable { get; private set; }

        public long LastOffset => Series!.RunOffsets[^1];

        /// <summary>The index of the series run with <paramref name="offset"/>, or -1 (offsets increase).</summary>
        public int IndexOfOffset(long offset)
        {
            var offsets = Series!.RunOffsets;
            if (offsets.Count == 0 || offset < offsets[0] || offset > offsets[^1])
            {
                return -1;
            }

            var (low, high) = (0, offsets.Count - 1);
            while (low <= high)
            {
                var middle = low + ((high - low) / 2);
                var at = offsets[middle];
                if (at == offset)
                {
                    return middle;
                }

                (low, high) = at < offset ? (middle + 1, high) : (low, middle - 1);
            }

            return -1;
        }

        public bool IsTaken(int index) => _taken?.Contains(index) == true;

        public void Take(int index) => (_taken ??= []).Add(index);

        public bool Shares(StartRun start, string workflowHash) =>
            Series is null
            && First.AcceptedAtUnixMs == start.AcceptedAtUnixMs
            && First.FrameField.Length > 0 == start.FrameField.Length > 0
            && First.FrameLength > 0 == start.FrameLength > 0
            && string.Equals(First.FrameKey, start.FrameKey, StringComparison.Ordinal)
            && string.Equals(First.Project, start.Project, StringComparison.Ordinal)
            && string.Equals(First.WorkflowHash, workflowHash, StringComparison.Ordinal);

        public int Add(string runId, string sourceId, FrameSlice slice)
        {
            if (slice.Length > 0)
            {
                (_moreSlices ??= []).Add(slice);
            }

            var more = _moreRunIds ??= [];
            if (sourceId.Length > 0 && _moreSourceIds is null)
            {
                _moreSourceIds = [.. Enumerable.Repeat(string.Empty, more.Count)];
            }

            more.Add(runId);
            _moreSourceIds?.Add(sourceId);
            return more.Count;
        }

        public string RunIdAt(int index) => Series is { } series ? RunIdOf(series, index) : index == 0 ? First.RunId : _moreRunIds![index - 1];

        public string SourceIdAt(int index) => Series is { } series ? WorkflowRunHost.SourceIdAt(series, index) : index == 0 ? First.SourceId : _moreSourceIds?[index - 1] ?? string.Empty;

        public FrameSlice SliceAt(int index) => Series is { } series ? WorkflowRunHost.SliceAt(series, index) : index == 0 ? new FrameSlice(First.FrameOffset, First.FrameLength) : _moreSlices?[index - 1] ?? default;

        public RunStarted StartedOf(int index)
        {
            if (Series is { } series)
            {
                return WorkflowRunHost.StartedOf(series, index);
            }

            if (index == 0)
            {
                return First;
            }

            var started = First.Clone();
            started.RunId = RunIdAt(index);
            started.SourceId = SourceIdAt(index);
            started.FrameField = First.FrameField.Length > 0 ? started.RunId : string.Empty;
            (started.FrameOffset, started.FrameLength) = SliceAt(index);
            return started;
        }

        /// <summary>Answers slot <paramref name="slot"/> of <paramref name="answer"/> with the run at
        /// <paramref name="index"/> in this group once the group is written.</summary>
        public void WaitForWrite(StartAnswer answer, int slot, int index, int count = 1)
        {
            var waiters = _waiters ??= [];
            if (waiters.Count > 0)
            {
                ref var last = ref System.Runtime.InteropServices.CollectionsMarshal.AsSpan(waiters)[^1];
                if (ReferenceEquals(last.Answer, answer) && last.Slot + last.Count == slot && last.Index + last.Count == index)
                {
                    last.Count += count;
                    return;
                }
            }

            waiters.Add(new WaitingStarts(answer, slot, index) { Count = count });
        }

        public void Written()
        {
            Durable = true;
            foreach (var waiting in _waiters ?? [])
            {
                for (var i = 0; i < waiting.Count; i++)
                {
                    waiting.Answer.Set(waiting.Slot + i, StartOutcome.Accepted);
                }
            }

            _waiters = null;
        }

        private struct WaitingStarts(StartAnswer answer, int slot, int index)
        {
            public StartAnswer Answer { get; } = answer;

            public int Slot { get; } = slot;

            public int Index { get; } = index;

            public int Count { get; set; } = 1;
        }
    }

    /// <summary>The answer to one StartRun (a RunAccepted) or StartRuns (a RunsAccepted, in its order),
    /// sent to the asker once every start in it is known. Runs of a series are answered with their
    /// outcome alone: the asker knows their ids.</summary>
    private sealed class StartAnswer
    {
        private readonly IActorRef _asker;
        private readonly StartRun? _single;
        private readonly StartRuns? _batch;
        private readonly StartOutcome[] _outcomes;
        private string[]? _errors;
        private int _pending;

        public StartAnswer(IActorRef asker, StartRun single)
            : this(asker, 1) => _single = single;

        public StartAnswer(IActorRef asker, StartRuns batch)
            : this(asker, batch.Runs.Count + batch.Series.Sum(s => s.RunOffsets.Count)) => _batch = batch;

        private StartAnswer(IActorRef asker, int count)
        {
            _asker = asker;
            _outcomes = new StartOutcome[count];
            _pending = count;
        }

        public void Set(int index, StartOutcome outcome, string error = "")
        {
            _outcomes[index] = outcome;
            if (error.Length > 0)
            {
                (_errors ??= new string[_outcomes.Length])[index] = error;
            }

            if (--_pending == 0)
            {
                Send();
            }
        }

        /// <summary>Sends an answer with nothing to wait for (a StartRuns without runs) at once.</summary>
        public void SendIfEmpty()
        {
            if (_outcomes.Length == 0)
            {
                Send();
            }
        }

        private RunAccepted Result(int index, string runId) =>
            new() { RunId = runId, Outcome = _outcomes[index], Error = _errors?[index] ?? string.Empty };

        private void Send()
        {
            if (_batch is null)
            {
                _asker.Tell(Result(0, _single!.RunId));
                return;
            }

            var accepted = new RunsAccepted();
            var runs = _batch.Runs.Count;
            accepted.Results.Capacity = runs;
            for (var i = 0; i < runs; i++)
            {
                accepted.Results.Add(Result(i, _batch.Runs[i].RunId));
            }

            accepted.Outcomes.Add(_outcomes.AsSpan(runs).ToArray());
            if (_errors is not null && _errors.AsSpan(runs).ContainsAnyExcept((string?)null))
            {
                accepted.Errors.Add(_errors.Skip(runs).Select(e => e ?? string.Empty));
            }

            _asker.Tell(accepted);
        }
    }

    /// <summary>A bounded set of the most recently added ids.</summary>
    private sealed class RecentIds(int capacity)
    {
        private readonly Queue<string> _order = new();
        private readonly HashSet<string> _ids = new(StringComparer.Ordinal);

        public bool Contains(string id) => _ids.Contains(id);

        public void Add(string id)
        {
            if (capacity <= 0 || !_ids.Add(id))
            {
                return;
            }

            _order.Enqueue(id);
            if (_order.Count > capacity)
            {
                _ids.Remove(_order.Dequeue());
            }
        }

        public Queue<string> Newest() => _order;
    }

    private sealed record FlushEvents
    {
        public static readonly FlushEvents Instance = new();
    }

    private sealed record Watchdog
    {
        public static readonly Watchdog Instance = new();
    }

    private sealed record ResultPublished(string RunId);

    private sealed record PublishFailed(string RunId, string Reason);

    private sealed record RetryPublish(string RunId);
}
