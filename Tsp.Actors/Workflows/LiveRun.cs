using Tsp.Actors.Protocol;
using Tsp.Actors.Workflows.Admission;

namespace Tsp.Actors.Workflows;

/// <summary>A run its host is walking: its state, the events that made it (what a snapshot records),
/// and what the host has dispatched and not yet heard back about.</summary>
internal sealed class LiveRun(RunState state)
{
    private RunState? _state = state;

    public string RunId { get; } = state.RunId;

    /// <summary>The run's state; gone once the host released the run (<see cref="Release"/>).</summary>
    public RunState State
    {
        get => _state ?? throw new InvalidOperationException($"run {RunId} was released by its host; its state is gone");
        set => _state = value;
    }

    /// <summary>Events applied after RunStarted, in order. Sized for a node's end each and the run's:
    /// an array outgrown by a run that lived through a young collection would keep its events alive.</summary>
    public List<RunEvent> Events { get; } = new(state.Workflow.Nodes.Count + 1);

    /// <summary>Node index → when it was (last) sent to its queue (Environment.TickCount64).</summary>
    public Dictionary<int, long> Dispatched { get; } = [];

    /// <summary>Non-null while RunStarted is being written: who is waiting for the answer.</summary>
    public List<(StartAnswer Answer, int Index)>? StartWaiters { get; set; }

    /// <summary>The run's span on this host (null while nothing traces); node tasks carry its context.</summary>
    public System.Diagnostics.Activity? Span { get; init; }

    /// <summary>Its events applied but not yet written (held ones included).</summary>
    public int Unwritten { get; set; }

    /// <summary>Results of short nodes applied and not yet recorded: they go with the run's next
    /// write (<see cref="RunHostTuning.WriteNodeResultsFrom"/>).</summary>
    public List<RunEvent> Held { get; } = [];

    /// <summary>Small outputs of its completed nodes as their replies carried them, by node index, for
    /// their children's tasks. Not journaled, except the deferred ones: after a recovery the children
    /// read the others from Redis.</summary>
    public Dictionary<int, Google.Protobuf.ByteString>? Outputs { get; set; }

    /// <summary>Nodes whose output only this host holds (deferred, <see cref="NodeTask.DeferOutputUnderUs"/>):
    /// in <see cref="Outputs"/> and in their NodeCompleted event, written to Redis when the run is published.</summary>
    public List<int>? DeferredOutputs { get; private set; }

    public bool HoldsOutputOf(int node) => DeferredOutputs?.Contains(node) == true;

    /// <summary>Its end is decided: being published (finished), or its RunCompleted being written (cancelled).</summary>
    public bool Completing { get; set; }

    /// <summary>Its RunCompleted is in the journal or on its way there (a cancel, a recovered run, a
    /// host handed off while it published); a finished run's end is written only as its RunPublished mark.</summary>
    public bool CompletionRecorded { get; set; }

    /// <summary>Its result is in the log; its RunPublished mark is being written.</summary>
    public bool Published { get; set; }

    /// <summary>Applies an event to the run's state; one that changed it (and RunCompleted) is kept
    /// for the snapshot.</summary>
    public void Apply(IRunEvent e)
    {
        var before = State;
        State = before.Apply(e);
        if (!ReferenceEquals(before, State) || e is RunCompleted)
        {
            Events.Add(RunEvents.Wrap(e));
            if (e is NodeCompleted { HasOutput: true } completed)
            {
                var node = State.Workflow.IndexOf(completed.Result.NodeId);
                (Outputs ??= [])[node] = completed.Output;
                (DeferredOutputs ??= []).Add(node);
            }
        }
    }

    /// <summary>What a query sees of the run: its nodes and the ones in flight.</summary>
    public RunStateView View()
    {
        var view = new RunStateView
        {
            RunId = State.RunId,
            Exists = true,
            // Only an end that recovery will know: a published run whose mark is written is forgotten
            // and answered from the finished ids.
            Completed = State.IsCompleted && CompletionRecorded,
            Project = State.Started.Project,
            UnwrittenEvents = Unwritten,
        };
        view.Nodes.Add(State.ToResult().Nodes);
        view.Pending.Add(Dispatched.Keys.Where(n => State.StatusOf(n) == NodeStatus.Unspecified).Select(n => State.Workflow.Nodes[n].Id));
        return view;
    }

    /// <summary>What an operator sees of the run (TspControl.ListRuns): each node's stage, its queue,
    /// and where it ran.</summary>
    public RunSummary Summary(string hostId, string orchestrator)
    {
        var stage = Completing || State.IsCompleted ? RunStage.Finishing : RunStage.Running;
        var summary = RunSummaries.Of(State.Started, stage, hostId, orchestrator);
        var nowMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var nowTicks = Environment.TickCount64;
        var result = State.ToResult();
        for (var i = 0; i < State.Workflow.Nodes.Count; i++)
        {
            var progress = RunSummaries.Progress(result.Nodes[i], unfinished: Dispatched.ContainsKey(i) ? NodeStage.Dispatched : NodeStage.Waiting);
            progress.Queue = State.Workflow.Nodes[i].Queue;
            if (progress.Stage == NodeStage.Dispatched)
            {
                progress.AtUnixMs = nowMs - (nowTicks - Dispatched[i]);
            }

            summary.Nodes.Add(progress);
        }

        return summary;
    }

    /// <summary>The host is done with the run: it lets go of what the run referenced at once. A run
    /// that lived through a young collection sits in an older generation, where, even dead, it keeps
    /// whatever it references alive through every young collection until its own generation is
    /// collected; its state (each event makes a new one), events and outputs would be copied each time for nothing.</summary>
    public void Release()
    {
        Events.Clear();
        Held.Clear();
        Dispatched.Clear();
        Outputs?.Clear();
        Outputs = null;
        DeferredOutputs = null;
        StartWaiters = null;
        _state = null;
    }

    public RunRecord ToRecord()
    {
        var record = new RunRecord { Started = State.Started };
        record.Events.Add(Events);
        return record;
    }
}

/// <summary>A run's events as the journal holds them (<see cref="RunEvent"/>) and as
/// <see cref="RunState"/> takes them (<see cref="IRunEvent"/>).</summary>
internal static class RunEvents
{
    public static RunEvent Wrap(IRunEvent e) => e switch
    {
        NodeCompleted c => new RunEvent { NodeCompleted = c },
        NodeFailed f => new RunEvent { NodeFailed = f },
        RunCompleted d => new RunEvent { RunCompleted = d },
        _ => throw new ArgumentException($"not a run event to record: {e.GetType().Name}", nameof(e)),
    };

    public static IRunEvent Unwrap(RunEvent e) => e.EventCase switch
    {
        RunEvent.EventOneofCase.NodeCompleted => e.NodeCompleted,
        RunEvent.EventOneofCase.NodeFailed => e.NodeFailed,
        RunEvent.EventOneofCase.RunCompleted => e.RunCompleted,
        _ => throw new InvalidOperationException("an empty run event in a snapshot"),
    };
}
