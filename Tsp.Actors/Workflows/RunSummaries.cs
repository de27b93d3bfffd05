using Tsp.Actors.Protocol;

namespace Tsp.Actors.Workflows;

/// <summary>Builds the <see cref="RunSummary"/> an operator sees, for runs in every stage.</summary>
public static class RunSummaries
{
    public static RunSummary Of(RunStarted started, RunStage stage, string hostId, string orchestrator) => new()
    {
        RunId = started.RunId,
        Project = started.Project,
        SourceId = started.SourceId,
        Stage = stage,
        AcceptedAtUnixMs = started.AcceptedAtUnixMs,
        WorkflowHash = started.WorkflowHash,
        HostId = hostId,
        Orchestrator = orchestrator,
    };

    /// <summary>A run that waits (queued, or for its project): every node of its workflow still waiting.</summary>
    public static RunSummary Waiting(RunStarted started, RunStage stage, WorkflowDefinition? workflow, string hostId, string orchestrator)
    {
        var summary = Of(started, stage, hostId, orchestrator);
        foreach (var node in workflow?.Nodes ?? [])
        {
            summary.Nodes.Add(new NodeProgress { NodeId = node.Id, Queue = node.Queue, Stage = NodeStage.Waiting });
        }

        return summary;
    }

    /// <summary>A finished run, from its TP result: its nodes in the order they finished (the run's timeline).</summary>
    public static RunSummary Finished(TpResult result)
    {
        var summary = new RunSummary
        {
            RunId = result.RunId,
            Project = result.Project,
            SourceId = result.SourceId,
            Stage = RunStage.Finished,
            Status = result.Status,
            AcceptedAtUnixMs = result.AcceptedAtUnixMs,
            WorkflowHash = result.WorkflowHash,
        };
        var unfinished = result.Status == RunStatus.Cancelled ? NodeStage.Cancelled : NodeStage.Waiting;
        summary.Nodes.Add(result.Nodes.Select(n => Progress(n, unfinished)).OrderBy(n => n.AtUnixMs == 0 ? long.MaxValue : n.AtUnixMs));
        return summary;
    }

    /// <summary>Orders a summary's finished nodes by when they finished; the others follow in workflow order.</summary>
    public static RunSummary AsTimeline(RunSummary summary)
    {
        var ordered = summary.Nodes.OrderBy(n => n.Stage is NodeStage.Completed or NodeStage.Failed && n.AtUnixMs > 0 ? n.AtUnixMs : long.MaxValue).ToList();
        summary.Nodes.Clear();
        summary.Nodes.Add(ordered);
        return summary;
    }

    /// <summary>A node as its result says; <paramref name="unfinished"/> is the stage of one without an outcome.</summary>
    public static NodeProgress Progress(NodeResult node, NodeStage unfinished) => new()
    {
        NodeId = node.NodeId,
        Worker = node.Worker,
        DurationUs = node.DurationUs,
        Attempts = node.Attempts,
        Error = node.Error,
        AtUnixMs = node.FinishedAtUnixMs,
        Stage = node.Status switch
        {
            NodeStatus.Completed => NodeStage.Completed,
            NodeStatus.Skipped => NodeStage.Skipped,
            NodeStatus.Failed => NodeStage.Failed,
            _ => unfinished,
        },
    };
}
