using System.Collections.Concurrent;

namespace Tsp.Actors.Nodes;

/// <summary>The processors a process can run, by name. Workflows are validated against the names;
/// routees look processors up here on their own member.</summary>
public sealed class NodeProcessorRegistry
{
    private readonly ConcurrentDictionary<string, INodeProcessor> _processors = new(StringComparer.Ordinal);

    public NodeProcessorRegistry(IEnumerable<INodeProcessor> processors)
    {
        foreach (var processor in processors)
        {
            Register(processor);
        }
    }

    public static NodeProcessorRegistry WithBuiltIns() =>
        new([new PassthroughProcessor(), new ChecksumProcessor(), new SleepProcessor(), new FlakyProcessor()]);

    public IReadOnlySet<string> Names => _processors.Keys.ToHashSet(StringComparer.Ordinal);

    public void Register(INodeProcessor processor) => _processors[processor.Name] = processor;

    public bool TryGet(string name, out INodeProcessor processor) => _processors.TryGetValue(name, out processor!);
}
