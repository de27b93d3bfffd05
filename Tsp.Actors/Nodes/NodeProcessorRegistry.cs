using System.Collections.Concurrent;
using Tsp.Actors.Nodes.Imaging;
using Tsp.Actors.Nodes.Onnx;
using Tsp.Actors.Nodes.Training;

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
        new([new PassthroughProcessor(), new ChecksumProcessor(), new SleepProcessor(), new SpinProcessor(), new FlakyProcessor()]);

    /// <summary>The built-ins plus the AI nodes: imaging, ONNX models, postprocessing, text reading, training.</summary>
    public static NodeProcessorRegistry Standard(OnnxModels models)
    {
        var registry = WithBuiltIns();
        registry.Register(new ImageNormalizeProcessor());
        registry.Register(new MapRegionsProcessor());
        registry.Register(new TextCropsProcessor());
        registry.Register(new CtcDecodeProcessor(models.Repository));
        registry.Register(new OnnxProcessor(models));
        registry.Register(new FitNormalProcessor());
        registry.Register(new ExportOnnxProcessor(models.Repository));
        return registry;
    }

    public IReadOnlySet<string> Names => _processors.Keys.ToHashSet(StringComparer.Ordinal);

    public void Register(INodeProcessor processor) => _processors[processor.Name] = processor;

    public bool TryGet(string name, out INodeProcessor processor) => _processors.TryGetValue(name, out processor!);
}
