namespace Tsp.Actors.Nodes;

/// <summary>What a processor sees of its node when the node is checked: its id (for messages) and its
/// parameters; never the workflow it is part of.</summary>
public sealed record NodeSettings(string Id, IReadOnlyDictionary<string, string> Parameters);

/// <summary>What one parent hands a node: its id and the tensors it outputs (null: not known).</summary>
public sealed record NodeInputSpec(string Parent, IReadOnlyList<TensorSpec>? Tensors);

/// <summary>
/// A processor that can check its node when the workflow is deployed, before any run: its
/// parameters, and the names and shapes of the tensors it takes from its parents.
/// </summary>
public interface INodeContract
{
    /// <returns>The tensors the node outputs (null: not tensors, or not known), and its problems.</returns>
    (IReadOnlyList<TensorSpec>? Outputs, IReadOnlyList<string> Errors) Check(NodeSettings node, IReadOnlyList<NodeInputSpec> inputs);
}
