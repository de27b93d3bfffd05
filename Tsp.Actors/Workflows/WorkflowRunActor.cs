using Akka.Actor;
using Akka.Cluster.Sharding;
using Akka.Cluster.Tools.PublishSubscribe;
using Akka.Event;
using Akka.Persistence;
using Tsp.Actors.Dispatch;
using Tsp.Actors.Northbound;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;

namespace Tsp.Actors.Workflows;

/// <summary>What a run entity needs from its orchestrator.</summary>
public sealed record RunServices(WorkflowCatalog Catalog, NodeQueues Queues, RedisStore Store, IActorRef PubSubMediator);

/// <summary>
/// One workflow run: a persistent, sharded entity that walks the DAG. It persists RunStarted,
/// NodeCompleted, NodeFailed and RunCompleted; all decisions live in <see cref="RunState"/>.
/// </summary>
/// <remarks>
/// Start is idempotent: a second StartRun for a live run answers AlreadyRunning, for a finished one
/// AlreadyCompleted. Events are persisted asynchronously (the journal batches them across runs). The
/// reply to StartRun waits until RunStarted is written and the result waits for RunCompleted (which
/// the journal writes after every earlier event of the run); node results are acted on at once.
/// On recovery every ready node without NodeCompleted is dispatched again (at-least-once; outputs are
/// keyed by run and node, so a re-run overwrites). When the run completes, its TP result is appended
/// to the project's results log and published on <c>tp.{project}</c>, its events are deleted, and
/// the entity passivates. A recovered entity with no events but a sequence number is such a finished
/// run: the journal keeps the highest sequence number after deletion.
/// </remarks>
public sealed class WorkflowRunActor : ReceivePersistentActor, IWithTimers
{
    public const string PersistenceIdPrefix = "run-";

    private readonly string _runId;
    private readonly RunServices _services;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly HashSet<int> _dispatched = [];
    private readonly List<IActorRef> _startWaiters = [];
    private RunState? _state;
    private bool _finishedEarlier;
    private string? _undeployedProject;
    private bool _completing;
    private bool _starting;
    private int _unwrittenEvents;

    public WorkflowRunActor(string runId, RunServices services)
    {
        _runId = runId;
        _services = services;

        Recover<RunStarted>(started => _state = StateFor(started));
        Recover<IRunEvent>(e => _state = _state?.Apply(e));
        Recover<RecoveryCompleted>(_ => OnRecovered());

        Command<StartRun>(Start);
        Command<ResumeRun>(_ => { });
        Command<NodeTaskDone>(done => OnNodeResult(_state?.Decide(done, done.Attempts)));
        Command<NodeTaskFailed>(failed => OnNodeResult(_state?.Decide(failed, failed.Attempts)));
        Command<GetRunState>(_ => Sender.Tell(View()));
        Command<RedispatchInFlight>(_ => Redispatch());
        Command<ResultPublished>(_ => DeleteMessages(LastSequenceNr));
        Command<PublishFailed>(failed =>
        {
            _log.Warning("run {0}: publishing its result failed ({1}); retrying", _runId, failed.Reason);
            Timers.StartSingleTimer("publish", RetryPublish.Instance, TimeSpan.FromSeconds(1));
        });
        Command<RetryPublish>(_ => Publish());
        Command<DeleteMessagesSuccess>(_ => Passivate());
        Command<DeleteMessagesFailure>(failure =>
        {
            _log.Warning(failure.Cause, "run {0}: deleting its events failed; they stay in the journal", _runId);
            Passivate();
        });
    }

    public override string PersistenceId => PersistenceIdPrefix + _runId;

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(string runId, RunServices services) =>
        Akka.Actor.Props.Create(() => new WorkflowRunActor(runId, services));

    private RunState? StateFor(RunStarted started)
    {
        if (!_services.Catalog.TryGet(started.Project, out var workflow))
        {
            _log.Error("run {0}: project '{1}' is not deployed on this orchestrator ({2}); the run waits until it is", _runId, started.Project, _services.Catalog.Describe());
            _undeployedProject = started.Project;
            return null;
        }

        if (workflow.Hash != started.WorkflowHash)
        {
            _log.Warning("run {0}: started on workflow {1} of '{2}', resuming on {3}", _runId, started.WorkflowHash, started.Project, workflow.Hash);
        }

        return RunState.Start(workflow, started);
    }

    private void OnRecovered()
    {
        if (_state is null)
        {
            // No events left but a sequence number: a finished run whose events were deleted. Events
            // of a project no longer deployed are not that: the run stays, unfinished.
            _finishedEarlier = LastSequenceNr > 0 && _undeployedProject is null;
            return;
        }

        if (_state.IsCompleted)
        {
            Publish();
        }
        else
        {
            _log.Info("run {0}: recovered unfinished at event {1}; resuming", _runId, LastSequenceNr);
            Advance();
        }
    }

    private void Start(StartRun start)
    {
        if (_finishedEarlier || _state?.IsCompleted == true)
        {
            Sender.Tell(new RunAccepted { RunId = _runId, Outcome = StartOutcome.AlreadyCompleted });
            return;
        }

        if (_state is not null)
        {
            Sender.Tell(new RunAccepted { RunId = _runId, Outcome = StartOutcome.AlreadyRunning });
            return;
        }

        if (_undeployedProject is not null)
        {
            Sender.Tell(new RunAccepted
            {
                RunId = _runId,
                Outcome = StartOutcome.Rejected,
                Error = $"run {_runId} of project '{_undeployedProject}' waits: the project is not deployed (deployed: {_services.Catalog.Describe()})",
            });
            return;
        }

        if (_starting)
        {
            _startWaiters.Add(Sender);
            return;
        }

        if (!_services.Catalog.TryGet(start.Project, out var workflow))
        {
            Sender.Tell(new RunAccepted
            {
                RunId = _runId,
                Outcome = StartOutcome.Rejected,
                Error = $"unknown project '{start.Project}' (deployed: {_services.Catalog.Describe()})",
            });
            Passivate();
            return;
        }

        _starting = true;
        _startWaiters.Add(Sender);
        var started = new RunStarted
        {
            RunId = _runId,
            Project = start.Project,
            FrameKey = start.FrameKey,
            SourceId = start.SourceId,
            AcceptedAtUnixMs = start.AcceptedAtUnixMs,
            WorkflowHash = workflow.Hash,
        };
        PersistAsync(started, e =>
        {
            _state = RunState.Start(workflow, e);
            foreach (var waiter in _startWaiters)
            {
                waiter.Tell(new RunAccepted { RunId = _runId, Outcome = StartOutcome.Accepted });
            }

            _startWaiters.Clear();
            Advance();
        });
    }

    private void OnNodeResult(IReadOnlyList<IRunEvent>? events)
    {
        if (events is null || events.Count == 0)
        {
            return;
        }

        // Applied and acted on before the write completes: dispatching a child before its parent's
        // completion is durable only risks re-running the parent after a crash (at-least-once), and it
        // keeps journal latency off the DAG's critical path. RunCompleted, persisted after these, is
        // written only once they are, so a result is never published ahead of its run's events.
        foreach (var e in events)
        {
            _state = _state!.Apply(e);
        }

        _unwrittenEvents += events.Count;
        PersistAllAsync(events, _ => _unwrittenEvents--);
        Advance();
    }

    /// <summary>Dispatches what became ready, or completes the run once nothing is left.</summary>
    private void Advance()
    {
        var state = _state!;
        if (state.IsFinished)
        {
            if (_completing)
            {
                return;
            }

            _completing = true;
            Timers.Cancel("watchdog");
            PersistAsync(state.Complete(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()), e =>
            {
                _state = _state!.Apply(e);
                Publish();
            });
            return;
        }

        foreach (var node in state.Ready)
        {
            if (_dispatched.Add(node))
            {
                Dispatch(state, node);
            }
        }

        if (!Timers.IsTimerActive("watchdog"))
        {
            Timers.StartPeriodicTimer("watchdog", RedispatchInFlight.Instance, WatchdogInterval(state.Workflow));
        }
    }

    private void Dispatch(RunState state, int node)
    {
        var definition = state.Workflow.Nodes[node];
        var task = new NodeTask
        {
            TaskId = $"{_runId}/{definition.Id}",
            RunId = _runId,
            Project = state.Started.Project,
            NodeId = definition.Id,
            Processor = definition.Processor,
            OutputKey = RedisKeys.NodeOutput(state.Started.Project, _runId, definition.Id),
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
            task.Inputs.Add(new NodeInput { NodeId = RedisKeys.FrameNodeId, Key = state.Started.FrameKey });
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
                RunId = _runId,
                NodeId = definition.Id,
                Reason = $"queue '{definition.Queue}' does not exist on this orchestrator",
                Attempts = 0,
            });
        }
    }

    /// <summary>A safety net for a task lost with its queue: queues drop a duplicate of a task they
    /// hold, so re-sending what is in flight is harmless.</summary>
    private void Redispatch()
    {
        if (_state is { IsFinished: false } state)
        {
            foreach (var node in _dispatched.Where(n => state.StatusOf(n) == NodeStatus.Unspecified))
            {
                Dispatch(state, node);
            }
        }
    }

    private static TimeSpan WatchdogInterval(WorkflowDefinition workflow) =>
        TimeSpan.FromMilliseconds(workflow.Nodes.Max(n => n.Timeout.TotalMilliseconds * n.MaxAttempts)) + TimeSpan.FromSeconds(30);

    /// <summary>Logs and publishes the result. Safe to repeat (after a crash or a failed attempt): the
    /// log keeps the run's one entry, and a failed run its one dead letter.</summary>
    private void Publish()
    {
        var state = _state!;
        var result = state.ToResult();
        var store = _services.Store;
        var mediator = _services.PubSubMediator;
        PublishAsync().PipeTo(Self, failure: e => new PublishFailed(e.Message));

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
            await store.ExpireFinishedAsync(result.Nodes.Where(n => n.OutputKey.Length > 0).Select(n => n.OutputKey).Append(RedisKeys.Frame(result.Project, result.RunId)));
            return ResultPublished.Instance;
        }
    }

    private static void Passivate() => Context.Parent.Tell(new Passivate(PoisonPill.Instance));

    private RunStateView View()
    {
        var view = new RunStateView
        {
            RunId = _runId,
            Exists = _state is not null || _finishedEarlier || _undeployedProject is not null,
            Completed = _finishedEarlier || _state?.IsCompleted == true,
            UnwrittenEvents = _unwrittenEvents,
        };
        if (_state is { } state)
        {
            view.Project = state.Started.Project;
            var result = state.ToResult();
            view.Nodes.Add(result.Nodes);
            view.Pending.Add(_dispatched.Where(n => state.StatusOf(n) == NodeStatus.Unspecified).Select(n => state.Workflow.Nodes[n].Id));
        }

        return view;
    }

    private sealed record RedispatchInFlight
    {
        public static readonly RedispatchInFlight Instance = new();
    }

    private sealed record ResultPublished
    {
        public static readonly ResultPublished Instance = new();
    }

    private sealed record PublishFailed(string Reason);

    private sealed record RetryPublish
    {
        public static readonly RetryPublish Instance = new();
    }
}
