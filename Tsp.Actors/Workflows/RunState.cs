using System.Runtime.CompilerServices;
using Tsp.Actors.Protocol;

namespace Tsp.Actors.Workflows;

/// <summary>
/// The state of one workflow run as a pure function of its workflow and its events: which nodes
/// are ready, skipped, done or failed. No Akka here; <see cref="WorkflowRunHost"/> persists the
/// events this class decides and applies them back.
/// </summary>
/// <remarks>
/// A node becomes decidable once every parent is completed or skipped. It is skipped when all its
/// parents were skipped, or when its <c>when</c> condition is false; otherwise it is ready. The first
/// failed node fails the run. Skips are derived, never persisted, so replaying the events always
/// reproduces the same decisions.
/// </remarks>
public sealed record RunState
{
    private readonly NodeStatus[] _status;
    private readonly NodeResult?[] _results;

    private RunState(WorkflowDefinition workflow, RunStarted started, NodeStatus[] status, NodeResult?[] results, IReadOnlyList<Detection> detections)
    {
        Workflow = workflow;
        Started = started;
        _status = status;
        _results = results;
        Detections = detections;
    }

    public WorkflowDefinition Workflow { get; }

    public RunStarted Started { get; }

    public string RunId => Started.RunId;

    public IReadOnlyList<Detection> Detections { get; }

    /// <summary>Set once a node failed for good; the run then completes as failed.</summary>
    public NodeFailed? Failure { get; private init; }

    /// <summary>Set once RunCompleted was applied.</summary>
    public RunCompleted? Completion { get; private init; }

    public bool IsCompleted => Completion is not null;

    /// <summary>Every node is completed or skipped, or one failed: time to persist RunCompleted.</summary>
    public bool IsFinished => Failure is not null || _status.All(s => s is NodeStatus.Completed or NodeStatus.Skipped);

    public NodeStatus StatusOf(int node) => _status[node];

    public NodeResult? ResultOf(int node) => _results[node];

    /// <summary>Nodes whose parents are all done and that are neither skipped nor finished.</summary>
    public IEnumerable<int> Ready
    {
        get
        {
            if (Failure is not null || IsCompleted)
            {
                yield break;
            }

            for (var i = 0; i < _status.Length; i++)
            {
                if (_status[i] == NodeStatus.Unspecified && ParentsDone(i))
                {
                    yield return i;
                }
            }
        }
    }

    public static RunState Start(WorkflowDefinition workflow, RunStarted started)
    {
        var status = new NodeStatus[workflow.Nodes.Count];
        var results = new NodeResult?[workflow.Nodes.Count];
        var state = new RunState(workflow, started, status, results, []);
        state.PropagateSkips();
        return state;
    }

    /// <summary>The events that a node's success produces: none for a duplicate or late reply.</summary>
    public IReadOnlyList<IRunEvent> Decide(NodeTaskDone done, int attempts)
    {
        var node = Workflow.IndexOf(done.NodeId);
        if (node < 0 || IsCompleted || Failure is not null || _status[node] != NodeStatus.Unspecified)
        {
            return [];
        }

        var result = new NodeResult
        {
            NodeId = done.NodeId,
            Status = NodeStatus.Completed,
            OutputKey = done.OutputKey,
            DurationUs = done.DurationUs,
            Attempts = attempts,
            Worker = done.Worker,
            FinishedAtUnixMs = done.FinishedAtUnixMs,
            ModelName = done.ModelName,
            ModelVersion = done.ModelVersion,
        };
        result.Metrics.Add(done.Metrics);
        result.Labels.Add(done.Labels);
        var completed = new NodeCompleted { RunId = RunId, Result = result };
        completed.Detections.Add(done.Detections);
        if (done.OutputDeferred)
        {
            completed.Output = done.Output;
        }

        return [completed];
    }

    /// <summary>The events that a node's final failure produces: none for a duplicate.</summary>
    public IReadOnlyList<IRunEvent> Decide(NodeTaskFailed failed, int attempts)
    {
        var node = Workflow.IndexOf(failed.NodeId);
        if (node < 0 || IsCompleted || Failure is not null || _status[node] != NodeStatus.Unspecified)
        {
            return [];
        }

        return [new NodeFailed { RunId = RunId, NodeId = failed.NodeId, Reason = failed.Reason, Attempts = attempts }];
    }

    public RunState Apply(IRunEvent e) => e switch
    {
        NodeCompleted completed => ApplyCompleted(completed),
        NodeFailed failed => ApplyFailed(failed),
        RunCompleted done => this with { Completion = done },
        RunStarted => this,
        _ => throw new ArgumentException($"unknown run event {e.GetType().Name}", nameof(e)),
    };

    public RunCompleted Complete(long nowUnixMs) => new()
    {
        RunId = RunId,
        Status = Failure is null ? RunStatus.Succeeded : RunStatus.Failed,
        CompletedAtUnixMs = nowUnixMs,
    };

    /// <summary>The event that ends the run as cancelled, whatever its nodes are doing.</summary>
    public RunCompleted Cancel(long nowUnixMs, string reason) => new()
    {
        RunId = RunId,
        Status = RunStatus.Cancelled,
        CompletedAtUnixMs = nowUnixMs,
        Reason = reason,
    };

    /// <summary>The TP result of a completed run (position is assigned by the results log).</summary>
    public TpResult ToResult()
    {
        var result = new TpResult
        {
            RunId = RunId,
            Project = Started.Project,
            SourceId = Started.SourceId,
            Status = Completion?.Status ?? RunStatus.Unspecified,
            AcceptedAtUnixMs = Started.AcceptedAtUnixMs,
            CompletedAtUnixMs = Completion?.CompletedAtUnixMs ?? 0,
            WorkflowHash = Started.WorkflowHash,
            Error = Completion?.Status == RunStatus.Cancelled ? Completion.Reason
                : Failure is null ? string.Empty
                : $"node '{Failure.NodeId}' failed after {Failure.Attempts} attempt(s): {Failure.Reason}",
            RedriveOf = Redrives.DeadRunOf(RunId) ?? string.Empty,
        };
        for (var i = 0; i < _status.Length; i++)
        {
            result.Nodes.Add(_results[i] ?? new NodeResult
            {
                NodeId = Workflow.Nodes[i].Id,
                Status = _status[i],
                Error = Failure?.NodeId == Workflow.Nodes[i].Id ? Failure.Reason : string.Empty,
                Attempts = Failure?.NodeId == Workflow.Nodes[i].Id ? Failure.Attempts : 0,
            });
        }

        result.Detections.Add(Detections);
        return result;
    }

    private RunState ApplyCompleted(NodeCompleted completed)
    {
        var node = Workflow.IndexOf(completed.Result.NodeId);
        if (node < 0 || _status[node] != NodeStatus.Unspecified)
        {
            return this;
        }

        var status = (NodeStatus[])_status.Clone();
        var results = (NodeResult?[])_results.Clone();
        status[node] = NodeStatus.Completed;
        results[node] = completed.Result;
        var detections = completed.Detections.Count == 0 ? Detections : [.. Detections, .. completed.Detections];
        var next = new RunState(Workflow, Started, status, results, detections) { Failure = Failure, Completion = Completion };
        next.PropagateSkips();
        return next;
    }

    private RunState ApplyFailed(NodeFailed failed)
    {
        var node = Workflow.IndexOf(failed.NodeId);
        if (node < 0 || _status[node] != NodeStatus.Unspecified)
        {
            return this;
        }

        var status = (NodeStatus[])_status.Clone();
        status[node] = NodeStatus.Failed;
        return new RunState(Workflow, Started, status, _results, Detections) { Failure = Failure ?? failed, Completion = Completion };
    }

    private bool ParentsDone(int node)
    {
        foreach (var parent in Workflow.Parents[node])
        {
            if (_status[parent] is not (NodeStatus.Completed or NodeStatus.Skipped))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Marks skipped every decidable node whose parents were all skipped or whose condition is
    /// false, in topological order, so a skip flows down to descendants no other parent feeds.</summary>
    private void PropagateSkips()
    {
        bool changed;
        do
        {
            changed = false;
            for (var i = 0; i < _status.Length; i++)
            {
                if (_status[i] != NodeStatus.Unspecified || !ParentsDone(i))
                {
                    continue;
                }

                var parents = Workflow.Parents[i];
                var allSkipped = parents.Length > 0 && parents.All(p => _status[p] == NodeStatus.Skipped);
                var conditionFalse = Workflow.Nodes[i].When is { } when && !when.Evaluate(ResultByNodeId);
                if (allSkipped || conditionFalse)
                {
                    _status[i] = NodeStatus.Skipped;
                    changed = true;
                }
            }
        }
        while (changed);
    }

    private NodeResult? ResultByNodeId(string nodeId)
    {
        var index = Workflow.IndexOf(nodeId);
        return index < 0 ? null : _results[index];
    }

    public bool Equals(RunState? other) => ReferenceEquals(this, other);

    public override int GetHashCode() => RuntimeHelpers.GetHashCode(this);
}
