using Tsp.Actors.Nodes.Onnx;
using Tsp.Actors.Workflows;

namespace Tsp.Actors.Nodes;

/// <summary>What one parent hands a node: its id and the tensors it outputs (null: not known).</summary>
public sealed record NodeInputSpec(string Parent, IReadOnlyList<TensorSpec>? Tensors);

/// <summary>
/// A processor that can check its node when the workflow is deployed, before any run: its
/// parameters, and the names and shapes of the tensors it takes from its parents.
/// </summary>
public interface INodeContract
{
    /// <returns>The tensors the node outputs (null: not tensors, or not known), and its problems.</returns>
    (IReadOnlyList<TensorSpec>? Outputs, IReadOnlyList<string> Errors) Check(NodeDefinition node, IReadOnlyList<NodeInputSpec> inputs);
}

/// <summary>Runs every node's contract over a workflow in dependency order, passing tensor shapes along.</summary>
public static class NodeContracts
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

            var inputs = workflow.Parents[index].Length == 0
                ? [new NodeInputSpec(Storage.RedisKeys.FrameNodeId, null)]
                : workflow.Parents[index].Select(p => new NodeInputSpec(workflow.Nodes[p].Id, outputs[p])).ToList();
            var (produced, problems) = contract.Check(node, inputs);
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
