using System.Collections.Concurrent;
using Tsp.Actors.Northbound;

namespace Tsp.Actors.Workflows;

/// <summary>The projects deployed on this process, by name. Every orchestrator loads the same files.</summary>
public sealed class WorkflowCatalog : IProjectDirectory
{
    private readonly ConcurrentDictionary<string, WorkflowDefinition> _workflows = new(StringComparer.Ordinal);

    public IReadOnlyCollection<string> Projects => _workflows.Keys.Order(StringComparer.Ordinal).ToList();

    public IEnumerable<WorkflowDefinition> All => _workflows.Values;

    public void Deploy(WorkflowDefinition workflow) => _workflows[workflow.Project] = workflow;

    public bool TryGet(string project, out WorkflowDefinition workflow) => _workflows.TryGetValue(project, out workflow!);

    public bool IsDeployed(string project) => _workflows.ContainsKey(project);

    public string Describe() => _workflows.IsEmpty ? "none" : string.Join(", ", Projects);
}
