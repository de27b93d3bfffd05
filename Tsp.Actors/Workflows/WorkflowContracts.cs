using Tsp.Actors.Nodes;

namespace Tsp.Actors.Workflows;

/// <summary>Runs every node's contract over a workflow in dependency order, passing tensor shapes along.</summary>
public static class WorkflowContracts
{
    /// <exception cref="WorkflowValidationException">Every problem, with the workflow's file and the node's line.</exception>
    public static void Check(WorkflowDefinition workflow, NodeProcessorRegistry processors)
    {
        var outputs = new IReadOnlyList<TensorSpec>?[workflow.Nodes.Count];
        var errors = new List<WorkflowError>();
        foreach (var index in TopologicalOrder(workflow))
        {
            var node = workflow.Nodes[index];
            if (!processors.TryGet(node.Processor, out var processor) || processor is not INodeContract contract)
            {
                continue;
            }

            var inputs = workflow.Parents[index].Select(p => new NodeInputSpec(workflow.Nodes[p].Id, outputs[p])).ToList();
            if (workflow.ReadsFrame[index])
            {
                inputs.Insert(0, new NodeInputSpec(Storage.RedisKeys.FrameNodeId, null));
            }

            var (produced, problems) = contract.Check(new NodeSettings(node.Id, node.Parameters), inputs);
            outputs[index] = produced;
            errors.AddRange(problems.Select(p => new WorkflowError(workflow.Source, node.Line, $"node '{node.Id}': {p}")));
        }

        if (errors.Count > 0)
        {
            throw new WorkflowValidationException(errors);
        }
    }

    private static IEnumerable<int> TopologicalOrder(WorkflowDefinition workflow)
    {
        var remaining = workflow.Parents.Select(p => p.Length).ToArray();
        var ready = new Queue<int>(workflow.Sources);
        while (ready.Count > 0)
        {
            var index = ready.Dequeue();
            yield return index;
            foreach (var child in workflow.Children[index])
            {
                if (--remaining[child] == 0)
                {
                    ready.Enqueue(child);
                }
            }
        }
    }
}
