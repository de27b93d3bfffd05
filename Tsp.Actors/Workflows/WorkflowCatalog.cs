using System.Collections.Concurrent;
using Tsp.Actors.Northbound;
using Tsp.Actors.Protocol;

namespace Tsp.Actors.Workflows;

/// <summary>
/// The projects deployed on this process: each one's current workflow (what new runs take) and every
/// version this process has known (what a run that started on it finishes on). Versions come from the
/// workflow files at start and from deployments through TspControl (Control/WorkflowDeployments).
/// </summary>
public sealed class WorkflowCatalog : IProjectDirectory
{
    private readonly ConcurrentDictionary<string, WorkflowDefinition> _workflows = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<(string Project, string Hash), WorkflowDefinition> _versions = new();
    private volatile bool _deploymentsKnown = true;

    public IReadOnlyCollection<string> Projects => _workflows.Keys.Order(StringComparer.Ordinal).ToList();

    public IEnumerable<WorkflowDefinition> All => _workflows.Values;

    /// <summary>False from <see cref="ExpectDeployments"/> until <see cref="DeploymentsArrived"/>: the
    /// versions deployed through TspControl are not known yet, so a run of a version this process does
    /// not know waits instead of resuming on another one.</summary>
    public bool DeploymentsKnown => _deploymentsKnown;

    /// <summary>Makes <paramref name="workflow"/> its project's current version (and a known one).</summary>
    public void Deploy(WorkflowDefinition workflow)
    {
        Remember(workflow);
        _workflows[workflow.Project] = workflow;
    }

    /// <summary>Knows a version without making it current (an older deployed version).</summary>
    public void Remember(WorkflowDefinition workflow) => _versions[(workflow.Project, workflow.Hash)] = workflow;

    /// <summary>New runs of the project are refused from now on; runs of its versions still finish.</summary>
    public bool Remove(string project) => _workflows.TryRemove(project, out _);

    public void ExpectDeployments() => _deploymentsKnown = false;

    public void DeploymentsArrived() => _deploymentsKnown = true;

    public bool TryGet(string project, out WorkflowDefinition workflow) => _workflows.TryGetValue(project, out workflow!);

    public bool TryGetVersion(string project, string hash, out WorkflowDefinition workflow) => _versions.TryGetValue((project, hash), out workflow!);

    /// <summary>The workflow a started run walks: the version it started on; failing that (a version this
    /// process never knew), the current one once deployments are known; otherwise none (it waits).</summary>
    public WorkflowDefinition? For(RunStarted started) =>
        TryGetVersion(started.Project, started.WorkflowHash, out var exact) ? exact
        : _deploymentsKnown && TryGet(started.Project, out var current) ? current
        : null;

    public bool IsDeployed(string project) => _workflows.ContainsKey(project);

    public string Describe() => _workflows.IsEmpty ? "none" : string.Join(", ", Projects);
}

/// <summary>Published on the actor system's event stream when the catalog changed (a deployment
/// arrived): run hosts look again at the runs that wait for their project or version.</summary>
public sealed record CatalogChanged
{
    public static readonly CatalogChanged Instance = new();
}
