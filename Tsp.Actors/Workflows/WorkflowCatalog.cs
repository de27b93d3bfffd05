using System.Collections.Concurrent;

namespace Tsp.Actors.Workflows;

/// <summary>The projects deployed on this process, by name. Every orchestrator loads the same files.</summary>
public sealed class WorkflowCatalog
{
    private readonly ConcurrentDictionary<string, WorkflowDefinition> _workflows = new(StringComparer.Ordinal);

    public IReadOnlyCollection<string> Projects => _workflows.Keys.Order(StringComparer.Ordinal).ToList();

    public IEnumerable<WorkflowDefinition> All => _workflows.Values;

    public void Deploy(WorkflowDefinition workflow) => _workflows[workflow.Project] = workflow;

    public bool TryGet(string project, out WorkflowDefinition workflow) => _workflows.TryGetValue(project, out workflow!);

    public string Describe() => _workflows.IsEmpty ? "none" : string.Join(", ", Projects);
}
