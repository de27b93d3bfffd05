using System.Collections.Frozen;
using Tsp.Actors.Dispatch;

namespace Tsp.Actors.Workflows;

public static class NodeRoles
{
    public const string Gpu = "gpu";
    public const string Cpu = "cpu";

    public static readonly IReadOnlySet<string> All = new HashSet<string>(StringComparer.Ordinal) { Gpu, Cpu };
}

/// <summary>One node of a workflow as written in its YAML file. <see cref="ReadsFrame"/>: 'after'
/// lists <c>frame</c>, so the node gets the run's frame besides its parents' outputs (a source node
/// always does).</summary>
public sealed record NodeDefinition(
    string Id,
    string Processor,
    string Role,
    string Queue,
    IReadOnlyDictionary<string, string> Parameters,
    TimeSpan Timeout,
    int MaxAttempts,
    IReadOnlyList<string> After,
    WhenExpression? When,
    int Line,
    bool ReadsFrame = false);

/// <summary>
/// A validated workflow: its nodes indexed by position, with parents and children resolved, so a
/// run's state can be plain arrays. Built only by <see cref="WorkflowLoader"/>, which guarantees a
/// non-empty acyclic graph whose references all resolve.
/// </summary>
public sealed class WorkflowDefinition
{
    private readonly FrozenDictionary<string, int> _indexById;

    internal WorkflowDefinition(string project, string source, string hash, IReadOnlyList<NodeDefinition> nodes, ProjectScheduling? scheduling = null)
    {
        Scheduling = scheduling ?? ProjectScheduling.Default;
        Project = project;
        Source = source;
        Hash = hash;
        Nodes = nodes;
        _indexById = nodes.Select((n, i) => (n.Id, i)).ToFrozenDictionary(p => p.Id, p => p.i, StringComparer.Ordinal);
        Parents = nodes.Select(n => n.After.Select(p => _indexById[p]).ToArray()).ToArray();
        var children = nodes.Select(_ => new List<int>()).ToArray();
        for (var i = 0; i < nodes.Count; i++)
        {
            foreach (var parent in Parents[i])
            {
                children[parent].Add(i);
            }
        }

        Children = children.Select(c => c.ToArray()).ToArray();
        Sources = Enumerable.Range(0, nodes.Count).Where(i => Parents[i].Length == 0).ToArray();
        ReadsFrame = nodes.Select((n, i) => n.ReadsFrame || Parents[i].Length == 0).ToArray();
        Sinks = Enumerable.Range(0, nodes.Count).Where(i => Children[i].Length == 0).ToArray();
        MayDeferOutput = Children.Select(c => c.All(child => Parents[child].Length <= NodeTasks.MaxCarriedParents)).ToArray();
        Queues = nodes.Select(n => n.Queue).Distinct(StringComparer.Ordinal).ToArray();
        var depths = Depths(Parents);
        Tasks = nodes.Select((n, i) => new NodeTaskTemplate(n.Id, n.Processor, n.Queue, n.Timeout, n.MaxAttempts, n.Parameters, Scheduling.Share, depths[i])).ToArray();
        OverdueAfter = TimeSpan.FromMilliseconds(nodes.Select(n => n.Timeout.TotalMilliseconds * n.MaxAttempts).DefaultIfEmpty(0).Max()) + TimeSpan.FromSeconds(30);
    }

    /// <summary>Per node: the longest chain of parents above it (0 for a source). The graph is acyclic.</summary>
    private static int[] Depths(int[][] parents)
    {
        var depths = new int[parents.Length];
        Array.Fill(depths, -1);
        int DepthOf(int node) => depths[node] >= 0 ? depths[node] : depths[node] = parents[node].Length == 0 ? 0 : 1 + parents[node].Max(DepthOf);
        for (var i = 0; i < parents.Length; i++)
        {
            DepthOf(i);
        }

        return depths;
    }

    public string Project { get; }

    /// <summary>Where the workflow came from (a file path), for error messages.</summary>
    public string Source { get; }

    /// <summary>The workflow's text as deployed.</summary>
    public string Yaml { get; internal init; } = "";

    /// <summary>A hash of the workflow's text; recorded with every run.</summary>
    public string Hash { get; }

    public IReadOnlyList<NodeDefinition> Nodes { get; }

    public int[][] Parents { get; }

    public int[][] Children { get; }

    public int[] Sources { get; }

    /// <summary>Per node: whether its tasks get the run's frame as an input (sources, and nodes whose
    /// 'after' lists <c>frame</c>).</summary>
    public bool[] ReadsFrame { get; }

    public int[] Sinks { get; }

    /// <summary>Per node: whether its small output may stay with the run's host until the run is
    /// published (<see cref="NodeTask.DeferOutputUnderUs"/>). Only where each of its children carries
    /// every parent's output in its task: an output the host holds cannot be read by key.</summary>
    public bool[] MayDeferOutput { get; }

    public IReadOnlyList<string> Queues { get; }

    /// <summary>Per node (by index): how its tasks are built and where they go.</summary>
    public IReadOnlyList<NodeTaskTemplate> Tasks { get; }

    /// <summary>How long a task may be in flight before its run's host sends it again: the slowest
    /// node's timeout × attempts, plus 30 s (a task lost with its queue's orchestrator).</summary>
    public TimeSpan OverdueAfter { get; }

    /// <summary>How the project shares queues with others, and its rate limit (the workflow's <c>scheduling</c>).</summary>
    public ProjectScheduling Scheduling { get; }

    /// <summary>Stands in for the workflow of a run whose project is not deployed where the run is
    /// held, so an operator can still cancel it: no nodes, the hash the run started on.</summary>
    public static WorkflowDefinition NotDeployed(string project, string hash) => new(project, "(not deployed)", hash, []);

    public int IndexOf(string nodeId) => _indexById.TryGetValue(nodeId, out var index) ? index : -1;
}

/// <summary>A project's <c>scheduling</c>: its share of every queue its nodes use, and how many frames
/// per second it may have accepted (0: no limit).</summary>
public sealed record ProjectScheduling(Dispatch.LaneShare Share, double RateLimit)
{
    public static readonly ProjectScheduling Default = new(Dispatch.LaneShare.Default, 0);
}
