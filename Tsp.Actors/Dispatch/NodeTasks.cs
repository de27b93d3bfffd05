using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;

namespace Tsp.Actors.Dispatch;

/// <summary>What dispatching one workflow node needs, fixed when its workflow is loaded: the queue it
/// goes to and the fields every one of its tasks shares.</summary>
public sealed class NodeTaskTemplate
{
    private readonly NodeTask _prototype;

    /// <param name="share">How the project shares queues with others (its workflow's <c>scheduling</c>).</param>
    /// <param name="depth">The node's distance from the workflow's first nodes (<see cref="NodeTask.Depth"/>).</param>
    public NodeTaskTemplate(string nodeId, string processor, string queue, TimeSpan timeout, int maxAttempts, IReadOnlyDictionary<string, string> parameters, LaneShare? share = null, int depth = 0)
    {
        Queue = queue;
        var scheduling = share ?? LaneShare.Default;
        _prototype = new NodeTask
        {
            NodeId = nodeId,
            Processor = processor,
            TimeoutMs = (long)timeout.TotalMilliseconds,
            MaxAttempts = maxAttempts,
            Weight = scheduling.Weight,
            Priority = scheduling.Priority,
            MaxShare = (float)scheduling.MaxShare,
            Depth = depth,
        };
        foreach (var (key, value) in parameters)
        {
            _prototype.Parameters[key] = value;
        }
    }

    public string NodeId => _prototype.NodeId;

    public string Queue { get; }

    internal NodeTask NewTask() => _prototype.Clone();
}

/// <summary>
/// The one place that builds a <see cref="NodeTask"/>: its id, the Redis key its output goes to and
/// the keys it reads its inputs from (the run's frame slice, or each parent's output). Node outputs
/// are keyed by run and node, so a task that runs twice (a retry, a recovery, a re-dispatch) overwrites
/// its output instead of adding one.
/// </summary>
public static class NodeTasks
{
    /// <summary>How many parents' small outputs a task carries at most (<see cref="Nodes.NodeActor.CarriedOutputLimit"/>
    /// each): the rest are read by key, so a task stays well inside a remoting frame (128 KiB).</summary>
    public const int MaxCarriedParents = 4;

    public const int MaxCarriedPerTask = MaxCarriedParents * Nodes.NodeActor.CarriedOutputLimit;

    public static string TaskId(string runId, string nodeId) => string.Concat(runId, "/", nodeId);

    /// <param name="outputTtl">How long the output lives in Redis unless the run finishes first.</param>
    public static NodeTask Build(NodeTaskTemplate node, string project, string runId, TimeSpan outputTtl)
    {
        var task = node.NewTask();
        task.TaskId = TaskId(runId, task.NodeId);
        task.RunId = runId;
        task.Project = project;
        task.OutputKey = RedisKeys.NodeOutput(project, runId, task.NodeId);
        task.OutputTtlS = (int)outputTtl.TotalSeconds;
        return task;
    }

    /// <summary>The input of a node without parents: the run's frame.</summary>
    public static NodeInput FrameInput(string frameKey, FrameSlice slice) =>
        new() { NodeId = RedisKeys.FrameNodeId, Key = frameKey, Offset = slice.Offset, Length = slice.Length };

    /// <summary>The input a completed parent hands its child: its output's key, and the output itself
    /// when the parent's reply carried it (<see cref="NodeTaskDone.Output"/>).</summary>
    public static NodeInput OutputOf(NodeResult parent, Google.Protobuf.ByteString? output)
    {
        var input = new NodeInput { NodeId = parent.NodeId, Key = parent.OutputKey };
        if (output is not null)
        {
            input.Data = output;
        }

        return input;
    }
}
