using Tsp.Actors.Protocol;

namespace Tsp.Actors.Nodes;

/// <summary>One input of a node: the run's frame or a parent's output, read from Redis by key.</summary>
public sealed record NodeBlob(string NodeId, string Key, ReadOnlyMemory<byte> Data);

/// <summary>What a processor gets for one task.</summary>
public sealed record NodeInvocation(
    string Project,
    string RunId,
    string NodeId,
    int Attempt,
    IReadOnlyDictionary<string, string> Parameters,
    IReadOnlyList<NodeBlob> Inputs)
{
    public string Parameter(string name, string fallback) =>
        Parameters.TryGetValue(name, out var value) && !string.IsNullOrWhiteSpace(value) ? value : fallback;

    public double Parameter(string name, double fallback)
    {
        if (!Parameters.TryGetValue(name, out var text) || string.IsNullOrWhiteSpace(text))
        {
            return fallback;
        }

        return double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var value)
            ? value
            : throw new NodeInputException($"parameter '{name}' = '{text}' is not a number");
    }
}

/// <summary>What a processor returns: a blob (stored in Redis under the node's output key) and a
/// small summary that travels with the run (metrics and labels, read by <c>when</c> conditions).</summary>
public sealed class NodeOutput
{
    public ReadOnlyMemory<byte> Data { get; init; }

    public Dictionary<string, double> Metrics { get; } = new(StringComparer.Ordinal);

    public Dictionary<string, string> Labels { get; } = new(StringComparer.Ordinal);

    public List<Detection> Detections { get; } = [];

    public string ModelName { get; init; } = string.Empty;

    public string ModelVersion { get; init; } = string.Empty;
}

/// <summary>
/// The unit of work of a node. Implementations are stateless across tasks (or thread-safe), since a
/// routee runs several tasks at once. Throw <see cref="NodeInputException"/> for input that no retry
/// can fix; any other exception is retried under the node's retry policy. An input's bytes are lent
/// for the call (a frame lies in a pooled buffer): they stay valid until the node's output is written,
/// so a processor may pass them on as its output, but must copy what it keeps beyond the call.
/// </summary>
public interface INodeProcessor
{
    string Name { get; }

    Task<NodeOutput> ProcessAsync(NodeInvocation invocation, CancellationToken cancellationToken);
}

/// <summary>The input is wrong (corrupt, oversized, missing a parameter): fail without retrying.</summary>
public sealed class NodeInputException : Exception
{
    public NodeInputException(string message)
        : base(message)
    {
    }

    public NodeInputException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public NodeInputException()
    {
    }
}
