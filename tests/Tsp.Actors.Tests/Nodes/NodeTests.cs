using Tsp.Actors.Nodes;

namespace Tsp.Actors.Tests.Nodes;

/// <summary>For tests of processors: a throwaway model repository folder, and invocations built from
/// (input node, bytes) pairs.</summary>
public abstract class NodeTests : IDisposable
{
    protected string ModelRoot { get; } = Path.Combine(Path.GetTempPath(), "tsp-tests", "models-" + Guid.NewGuid().ToString("N")[..12]);

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    protected virtual void Dispose(bool disposing)
    {
        if (disposing && Directory.Exists(ModelRoot))
        {
            Directory.Delete(ModelRoot, recursive: true);
        }
    }

    protected static NodeInvocation Invocation(string node, IReadOnlyDictionary<string, string> parameters, params (string From, byte[] Data)[] inputs) =>
        InvocationOf("run-1", node, parameters, inputs);

    protected static NodeInvocation InvocationOf(string runId, string node, IReadOnlyDictionary<string, string> parameters, params (string From, byte[] Data)[] inputs) =>
        new("rail", runId, node, 1, parameters, inputs.Select(i => new NodeBlob(i.From, "key", i.Data)).ToList());
}
