using Akka.Actor;
using Akka.Event;
using Akka.Persistence;
using Tsp.Actors.Dispatch;
using Tsp.Actors.Northbound;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Actors.Telemetry;
using Tsp.Actors.Workflows.Admission;

namespace Tsp.Actors.Workflows;

/// <summary>
/// A persistent, sharded entity that holds many workflow runs — all whose run id hashes to it (see
/// <see cref="RunMessageExtractor"/>) — and walks each run's DAG. It persists, applies, replies and
/// snapshots; the decisions are pure code elsewhere: <see cref="RunState"/> walks one run's DAG,
/// <see cref="RunTables"/> holds the runs and moves them between live, queued and waiting,
/// <see cref="RunRecovery"/> fills those tables from the journal, <see cref="RunStarts"/> takes starts
/// (<see cref="StartRules"/> answers each, <see cref="AdmissionQueue"/> holds the runs that wait for a turn),
/// <see cref="RunListings"/> reads what operators ask of the runs, <see cref="NodeTasks"/> builds
/// what is dispatched, <see cref="FrameLeases"/> says when a frame is no longer needed and
/// <see cref="RunPublishing"/> publishes a finished run.
/// </summary>
/// <remarks>
/// <para>Why a host of many runs and not an entity per run: an entity per run paid, per run, a
/// journal recovery query when it started, a remember-entities write when it started and another when
/// it stopped, and a delete of its events. A host lives as long as the cluster; the events of its runs
/// that arise while it works through its mailbox are written together as one journal entry
/// (<see cref="RunJournalWriter"/>), and a snapshot every <see cref="RunHostTuning.SnapshotEvery"/> events
/// (the runs it holds plus recently finished ids) lets it delete everything before it. See
/// docs/design.md, "Workflows".</para>
/// <para>Start is idempotent: a second StartRun for a live run answers AlreadyRunning, for a finished
/// one AlreadyCompleted. The reply to StartRun waits until RunStarted is written. Node results are
/// applied and acted on at once and persisted asynchronously. A finished run is published at once, and
/// only then is its RunPublished mark written, with the host's next write: a run costs two writes at
/// most, and its end none on the result's path. On recovery every ready node without NodeCompleted is
/// dispatched again (at-least-once; outputs are keyed by run and node, so a re-run overwrites), a run
/// without its mark walks on or is published again (the results log keeps a run's first entry), and a
/// run with it is forgotten.</para>
/// </remarks>
public sealed class WorkflowRunHost : ReceivePersistentActor, IWithTimers
{
    public const string PersistenceIdPrefix = "runs-";
    private const string WatchdogTimer = "watchdog";
    private const string LateFlushTimer = "late-flush";

    private readonly string _hostId;
    private readonly RunServices _services;
    private readonly RunHostTuning _tuning;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly RunTables _tables;
    private readonly RunRecovery _recovery;
    private readonly RunListings _listings;
    private readonly RunJournalWriter _journal;
    private readonly RunStarts _starts;
    private long _eventsSinceSnapshot;
    private bool _snapshotting;
    private long _recoveredFromSnapshot;
    private long _lastSnapshot;
    private readonly RunPublishing _publishing;
    private string? _orchestrator;
    private readonly bool _current;
    private bool _stopping;

    public WorkflowRunHost(string hostId, RunServices services)
    {
        _hostId = hostId;
        _services = services;
        _current = services.RunHosts <= 0 || RunMessageExtractor.IsCurrent(hostId, services.RunHosts);
        services.Active.AddHost(1);
        _tuning = services.Tuning ?? new RunHostTuning();
        _publishing = new RunPublishing(services, _log);
        var log = _log;
        var frames = new FrameLeases(services.Store, (key, reason) => log.Warning("frames {0}: deleting them failed ({1}); they expire with the blob TTL", key, reason));
        _tables = new RunTables(services, _tuning, frames, _log);
        _recovery = new RunRecovery(_tables);
        _listings = new RunListings(_tables.Live, _tables.Waiting, _tables.Admission, services.Catalog, hostId, () => Orchestrator);
        _journal = new RunJournalWriter(
            persist: (batch, afterWrite) => PersistAsync(batch, _ =>
            {
                foreach (var action in afterWrite)
                {
                    action?.Invoke();
                }
            }),
            defer: action => DeferAsync(action, a => a()),
            requestFlush: () => Self.Tell(FlushEvents.Instance),
            requestLateFlush: () =>
            {
                if (!Timers.IsTimerActive(LateFlushTimer))
                {
                    Timers.StartSingleTimer(LateFlushTimer, FlushEvents.Instance, _tuning.PublishedMarkDelay);
                }
            },
            onFlushed: OnFlushed);
        _starts = new RunStarts(_tables, _journal, services.Catalog, Advance);

        Recover<SnapshotOffer>(offer =>
        {
            _recoveredFromSnapshot = offer.Metadata.SequenceNr;
            _recovery.Restore((RunHostSnapshot)offer.Snapshot);
        });
        Recover<RunEventBatch>(_recovery.Replay);
        Recover<RecoveryCompleted>(_ => OnRecovered());

        Command<RunHostStop>(_ => StopAfterWrites());
        Command<StartRun>(start => _starts.Start(start, new StartAnswer(Sender, start), 0));
        Command<StartRuns>(batch => _starts.StartAll(batch, Sender));
        Command<FlushEvents>(_ => _journal.Flush());
        // A deferred output rides in the NodeCompleted event itself, and applying it keeps it (LiveRun.Apply).
        Command<NodeTaskDone>(done => OnNodeResult(done.RunId, state => state.Decide(done, done.Attempts), done.HasOutput && !done.OutputDeferred ? done : null));
        Command<NodeTaskFailed>(failed => OnNodeResult(failed.RunId, state => state.Decide(failed, failed.Attempts)));
        Command<GetRunState>(query => Sender.Tell(View(query.RunId)));
        Command<GetRunSummary>(query => Sender.Tell(_listings.SummaryOf(query.RunId)));
        Command<ListHostRuns>(list => Sender.Tell(_listings.List(list)));
        Command<CancelRun>(cancel =>
        {
            var replyTo = Sender;
            Cancel(cancel.RunId, cancel.Project, cancel.Reason, reply => replyTo.Tell(reply));
        });
        Command<CancelHostRuns>(CancelMatching);
        Command<GetRunHostStats>(_ => Sender.Tell(new RunHostStats(_tables.Active, _tables.Waiting.Count, LastSequenceNr, _recoveredFromSnapshot, _lastSnapshot, _tables.Admission.Count)));
        Command<ResumeRun>(_ => { });
        Command<CatalogChanged>(_ => WakeWaiting());
        Command<Watchdog>(_ => RedispatchOverdue());
        Command<RunPublishing.Published>(published => OnPublished(published.RunId));
        Command<RunPublishing.Failed>(failed => _publishing.OnFailed(failed, Timers));
        Command<RunPublishing.Retry>(retry =>
        {
            if (_tables.Live.TryGetValue(retry.RunId, out var run))
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

    /// <summary>Sharding's hand-off message for run hosts (<see cref="StopAfterWrites"/>).</summary>
    public sealed class RunHostStop
    {
        public static readonly RunHostStop Instance = new();

        private RunHostStop()
        {
        }
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(string hostId, RunServices services) =>
        Akka.Actor.Props.Create(() => new WorkflowRunHost(hostId, services));

    protected override void PostStop()
    {
        _services.Active.AddHost(-1);
        _services.Active.Add(-(_tables.Live.Count + _tables.Admission.Count));
        _services.Active.AddQueued(-_tables.Admission.Count);
        base.PostStop();
    }

    /// <summary>Sharding moves this host (a rebalance, a leaving orchestrator) or retires it: its
    /// journal writes land before it stops, so its next incarnation recovers every event it wrote.
    /// What arrives meanwhile is dropped: node answers are sent again by the next incarnation's
    /// redispatch, and starts and asks reach the next incarnation through sharding's buffer.</summary>
    private void StopAfterWrites()
    {
        if (_stopping)
        {
            return;
        }

        _stopping = true;
        foreach (var run in _tables.Live.Values)
        {
            if (run.State.Completion is { } completion && !run.CompletionRecorded && !run.Published)
            {
                // Being published: written as finished, so that the next incarnation publishes it again
                // instead of running it again.
                Record(run, RunEvents.Wrap(completion), afterWrite: null);
                run.CompletionRecorded = true;
            }
            else
            {
                RecordHeld(run);
            }
        }

        _journal.Flush();
        _journal.AfterRecorded(() => Context.Stop(Self));
        Become(() => CommandAny(_ => { }));
    }

    /// <summary>A host made for an earlier <c>Tsp:RunHosts</c> gets no new runs: once it holds none it asks
    /// its shard to stop it, which also makes sharding forget it.</summary>
    private void RetireIfDone()
    {
        if (!_current && !_stopping && _tables.Count == 0)
        {
            _log.Info("run host {0} belongs to an earlier Tsp:RunHosts ({1} now) and holds no run: retiring it", _hostId, _services.RunHosts);
            Context.Parent.Tell(new Akka.Cluster.Sharding.Passivate(RunHostStop.Instance));
        }
    }

    private void OnRecovered()
    {
        var held = _tables.Count;
        if (held > 0)
        {
            _log.Info("run host {0}: recovered {1} run(s) at event {2}, {3} of them queued; resuming", _hostId, held, LastSequenceNr, _tables.Admission.Count);
        }

        foreach (var run in _tables.Live.Values.ToList())
        {
            if (run.State.IsCompleted)
            {
                run.CompletionRecorded = true;
                Publish(run);
            }
            else
            {
                Advance(run);
            }
        }

        _starts.StartQueued();
        Timers.StartPeriodicTimer(WatchdogTimer, Watchdog.Instance, _tuning.WatchdogInterval);
        Context.System.EventStream.Subscribe(Self, typeof(CatalogChanged));
        // Deployments may have arrived while this host recovered.
        WakeWaiting();
        RetireIfDone();
    }

    /// <summary>A deployment arrived: the runs that waited for their project or version walk now.</summary>
    private void WakeWaiting()
    {
        foreach (var run in _tables.WakeWaiting())
        {
            Advance(run);
        }
    }

    // ---- walking the DAG ----

    /// <param name="carried">A success whose reply carried its output, kept for the node's children.</param>
    private void OnNodeResult(string runId, Func<RunState, IReadOnlyList<IRunEvent>> decide, NodeTaskDone? carried = null)
    {
        if (!_tables.Live.TryGetValue(runId, out var run) || run.StartWaiters is not null || run.Completing)
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
            run.Apply(e);
            run.Unwritten++;
            if (e is NodeCompleted { Result.DurationUs: var us } && us < _tuning.WriteNodeResultsFrom.TotalMicroseconds)
            {
                run.Held.Add(RunEvents.Wrap(e));
            }
            else
            {
                Record(run, RunEvents.Wrap(e), () => run.Unwritten--);
            }
        }

        if (carried is not null)
        {
            (run.Outputs ??= [])[run.State.Workflow.IndexOf(carried.NodeId)] = carried.Output;
        }

        Advance(run);
    }

    /// <summary>Records an event of <paramref name="run"/> behind the results it still holds, so its
    /// events reach the journal in the order they were applied.</summary>
    private void Record(LiveRun run, RunEvent e, Action? afterWrite)
    {
        RecordHeld(run);
        _journal.Record(e, afterWrite);
    }

    private void RecordHeld(LiveRun run)
    {
        foreach (var held in run.Held)
        {
            _journal.Record(held, () => run.Unwritten--);
        }

        run.Held.Clear();
    }

    /// <summary>Dispatches what became ready, or completes the run once nothing is left.</summary>
    private void Advance(LiveRun run)
    {
        var state = run.State;
        if (run.Completing || state.IsCompleted)
        {
            // Finishing (its completion is being written), or cancelled.
            return;
        }

        if (state.IsFinished)
        {
            // Published before anything of its end is written: what is written after the publish
            // (RunPublished) is all recovery needs, and it waits for the host's next write. A crash before
            // it lands runs the run again from its written events (its frame is kept until then), and the
            // results log keeps the first result.
            run.Completing = true;
            run.Apply(state.Complete(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()));
            Publish(run);
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
        var template = state.Workflow.Tasks[node];
        var task = NodeTasks.Build(template, state.Started.Project, state.RunId, _services.Store.Options.BlobTtl);
        task.TraceParent = TspTracing.TraceParent(run.Span);
        if (state.Workflow.MayDeferOutput[node])
        {
            // A node short enough for its result to be held back from the journal may hold back its
            // output too: written once, with the run's result, instead of by the node and again at the end.
            task.DeferOutputUnderUs = (long)_tuning.WriteNodeResultsFrom.TotalMicroseconds;
        }

        var parents = state.Workflow.Parents[node];
        if (state.Workflow.ReadsFrame[node])
        {
            task.Inputs.Add(NodeTasks.FrameInput(state.Started.FrameKey, StartedGroups.SliceOf(state.Started)));
        }

        var carried = 0;
        foreach (var parent in parents)
        {
            if (state.ResultOf(parent) is { } result)
            {
                // A task with many parents carries only so much; an output only the host holds fits
                // (WorkflowDefinition.MayDeferOutput).
                var output = run.Outputs?.GetValueOrDefault(parent);
                carried += output?.Length ?? 0;
                task.Inputs.Add(NodeTasks.OutputOf(result, carried <= NodeTasks.MaxCarriedPerTask || run.HoldsOutputOf(parent) ? output : null));
            }
        }

        if (_services.Queues.TryGet(template.Queue, out var queue))
        {
            queue.Tell(task);
        }
        else
        {
            Self.Tell(new NodeTaskFailed
            {
                TaskId = task.TaskId,
                RunId = task.RunId,
                NodeId = task.NodeId,
                Reason = $"queue '{template.Queue}' does not exist on this orchestrator",
                Attempts = 0,
            });
        }
    }

    /// <summary>A safety net for a task lost with its queue: queues drop a duplicate of a task they
    /// hold, so re-sending one in flight is harmless.</summary>
    private void RedispatchOverdue()
    {
        var now = Environment.TickCount64;
        foreach (var run in _tables.Live.Values)
        {
            if (run.State.IsFinished || run.Completing || run.Dispatched.Count == 0)
            {
                continue;
            }

            var overdueAfter = (long)run.State.Workflow.OverdueAfter.TotalMilliseconds;
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

    // ---- finishing ----

    private void Publish(LiveRun run) => _publishing.Publish(run, Self);

    /// <summary>The result is in the log: the run's short results still held are moot, and its
    /// RunPublished mark goes with the host's next write (<see cref="RunHostTuning.PublishedMarkDelay"/>),
    /// after which the host forgets the run.</summary>
    private void OnPublished(string runId)
    {
        if (!_tables.Live.TryGetValue(runId, out var run) || run.Published)
        {
            return;
        }

        _tables.MarkPublished(run);
        RunPublishing.CountFinished(run.State);
        TspTracing.End(run.Span, run.State.Failure?.Reason);
        run.Unwritten -= run.Held.Count;
        run.Held.Clear();
        _journal.RecordLate(new RunEvent { RunPublished = new RunPublished { RunId = runId } }, () =>
        {
            _tables.Forget(run);
            RetireIfDone();
        });
        _starts.StartQueued();
    }

    // ---- control ----

    /// <summary>Ends a run as cancelled: its completion is written, its tasks are taken back from
    /// their queues (running ones cancelled on their workers), and its CANCELLED result is published.
    /// A queued run leaves its queue for it; a run waiting for its project is cancelled as it is.
    /// <paramref name="answer"/> is called once the cancellation is durable, or at once with why not
    /// (<see cref="CancelRules"/>).</summary>
    private void Cancel(string runId, string project, string reason, Action<CancelRunReply> answer)
    {
        if (CancelRules.Refusal(runId, project, _listings.CancelHeld(runId)) is { } refusal)
        {
            answer(refusal);
            return;
        }

        // Not refused, so held: live, queued or waiting for its project.
        if (_tables.TakeToEnd(runId) is not { } run)
        {
            throw new InvalidOperationException($"run {runId} was to be cancelled but is not held");
        }

        run.Completing = true;
        var cancelled = run.State.Cancel(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), reason);
        CancelTasksOf(run);
        run.CompletionRecorded = true;
        Record(run, RunEvents.Wrap(cancelled), () =>
        {
            run.Apply(cancelled);
            _log.Info("run {0} of '{1}' cancelled: {2}", runId, project, reason);
            answer(new CancelRunReply { RunId = runId, Outcome = CancelOutcome.Cancelled, Detail = reason });
            Publish(run);
        });
    }

    /// <summary>Tells each queue to drop the run's tasks it holds (and cancel those running).</summary>
    private void CancelTasksOf(LiveRun run)
    {
        var state = run.State;
        foreach (var byQueue in run.Dispatched.Keys.Where(n => state.StatusOf(n) == NodeStatus.Unspecified).GroupBy(n => state.Workflow.Nodes[n].Queue, StringComparer.Ordinal))
        {
            if (_services.Queues.TryGet(byQueue.Key, out var queue))
            {
                var cancel = new CancelTasks();
                cancel.TaskIds.Add(byQueue.Select(n => NodeTasks.TaskId(state.RunId, state.Workflow.Nodes[n].Id)));
                queue.Tell(cancel);
            }
        }
    }

    /// <summary>Cancels every unfinished run of a project (or of one of its sources) this host holds,
    /// and answers once each cancellation is durable.</summary>
    private void CancelMatching(CancelHostRuns request)
    {
        var replyTo = Sender;
        var matching = _listings.Matching(request.Project, request.SourceId)
            .Where(s => s.Stage is RunStage.Running or RunStage.Queued or RunStage.WaitingForProject)
            .Select(s => s.RunId).ToList();
        var reply = new CancelRunsReply();
        if (matching.Count == 0)
        {
            replyTo.Tell(reply);
            return;
        }

        foreach (var runId in matching)
        {
            Cancel(runId, request.Project, request.Reason, answered =>
            {
                reply.Runs.Add(answered);
                if (reply.Runs.Count == matching.Count)
                {
                    replyTo.Tell(reply);
                }
            });
        }
    }

    private string Orchestrator => _orchestrator ??= ((ExtendedActorSystem)Context.System).Provider.DefaultAddress.ToString();

    // ---- the journal ----

    /// <summary>A write was handed to the journal: runs accepted from now on open a queued group of
    /// their own, and the write counts towards the next snapshot (in runs: a RunsStarted restores as
    /// many on recovery).</summary>
    private void OnFlushed(RunEventBatch batch)
    {
        _tables.Admission.CloseWrite();
        _eventsSinceSnapshot += batch.Events.Sum(StartedGroups.RunsIn);
        SnapshotIfDue();
    }

    private void SnapshotIfDue()
    {
        if (_eventsSinceSnapshot < Math.Max(_tuning.SnapshotEvery, _tables.Count) || _snapshotting)
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
        snapshot.Runs.Add(_tables.Live.Values.Select(r => r.ToRecord()));
        snapshot.Runs.Add(_tables.Waiting.Values);
        snapshot.Queued.Add(_tables.Admission.StillQueued());
        foreach (var key in _tables.Admission.Finished.Newest())
        {
            snapshot.FinishedRunKeys.Add((ulong)(key >> 64));
            snapshot.FinishedRunKeys.Add((ulong)key);
        }

        foreach (var (prefix, offset) in _tables.Admission.HighestOffsets)
        {
            snapshot.HighestOffsets[prefix] = offset;
        }
        SaveSnapshot(snapshot);
    }

    // ---- queries ----

    private RunStateView View(string runId)
    {
        var view = new RunStateView { RunId = runId };
        if (_tables.Live.TryGetValue(runId, out var run))
        {
            return run.View();
        }

        if (_tables.Waiting.TryGetValue(runId, out var waiting))
        {
            view.Exists = true;
            view.Project = waiting.Started.Project;
        }
        else if (_tables.Admission.TryGet(runId, out var queued))
        {
            view.Exists = true;
            view.Project = queued.Group.Project;
        }
        else if (_tables.Admission.Finished.Contains(runId))
        {
            view.Exists = true;
            view.Completed = true;
        }

        return view;
    }

    private sealed record FlushEvents
    {
        public static readonly FlushEvents Instance = new();
    }

    private sealed record Watchdog
    {
        public static readonly Watchdog Instance = new();
    }
}
