using System.Globalization;
using Google.Protobuf;
using Tsp.Actors.Protocol;

namespace Tsp.Actors.Nodes.Onnx;

/// <summary>
/// <c>onnx</c>: runs a model from the repository on a parent's tensor set. Parameters: model, version
/// (pins one; default: what the repository serves), input (the model input to feed; default its
/// only one), tensor (the tensor of the input set to feed it; default the input's name, else the
/// only tensor), from (the parent; default the only input). The output set holds every model output,
/// and keeps the source image size and tiling. Every result records model name and version.
/// </summary>
public sealed class OnnxProcessor(OnnxModels models) : INodeProcessor
{
    public const string ProcessorName = "onnx";

    public string Name => ProcessorName;

    public OnnxModels Models => models;

    public async Task<NodeOutput> ProcessAsync(NodeInvocation invocation, CancellationToken cancellationToken)
    {
        var model = invocation.Parameters.TryGetValue("model", out var m) && m.Length > 0
            ? m
            : throw new NodeInputException($"node '{invocation.NodeId}': parameter 'model' is missing");
        int? version = invocation.Parameters.TryGetValue("version", out var v)
            ? int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var pinned) ? pinned : throw new NodeInputException($"node '{invocation.NodeId}': version '{v}' is not a whole number")
            : null;
        var config = models.Repository.Config(model);
        var inputName = invocation.Parameters.GetValueOrDefault("input") ?? (config.Inputs.Count == 1 ? config.Inputs[0].Name
            : throw new NodeInputException($"node '{invocation.NodeId}': model '{model}' has inputs {string.Join(", ", config.Inputs.Select(i => i.Name))}; name one with parameter 'input'"));
        var set = TensorSets.Read(invocation, invocation.Parameters.GetValueOrDefault("from"));
        var tensorName = invocation.Parameters.GetValueOrDefault("tensor") ?? (set.Tensors.Any(t => t.Name == inputName) ? inputName : null);
        var tensor = TensorSets.Find(set, tensorName, invocation.NodeId);
        var spec = config.Inputs.FirstOrDefault(i => i.Name == inputName)
            ?? throw new NodeInputException($"node '{invocation.NodeId}': model '{model}' has no input '{inputName}'");
        if (!spec.Accepts(tensor.Dims))
        {
            throw new NodeInputException($"node '{invocation.NodeId}': tensor '{tensor.Name}' {TensorSets.Shape(tensor.Dims)} does not fit model '{model}' input {spec}");
        }

        var inputs = new Dictionary<string, TensorData>(StringComparer.Ordinal) { [inputName] = new TensorData([.. tensor.Dims], TensorSets.Values(tensor)) };
        InferenceResult result;
        try
        {
            result = await models.InferAsync(model, version, inputs, cancellationToken);
        }
        catch (ModelRepositoryException e)
        {
            throw new NodeInputException($"node '{invocation.NodeId}': {e.Message}", e);
        }

        var outputSet = new TensorSet { SourceWidth = set.SourceWidth, SourceHeight = set.SourceHeight, TileRows = set.TileRows, TileCols = set.TileCols };
        foreach (var (name, data) in result.Outputs)
        {
            outputSet.Tensors.Add(TensorSets.Create(name, data.Dims, data.Values));
        }

        var output = new NodeOutput
        {
            Data = outputSet.ToByteArray(),
            ModelName = result.Model,
            ModelVersion = result.Version.ToString(CultureInfo.InvariantCulture),
        };
        output.Metrics["batch"] = result.BatchSize;
        output.Labels["provider"] = result.Provider;
        return output;
    }
}
