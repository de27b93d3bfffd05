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
public sealed class OnnxProcessor(OnnxModels models) : INodeProcessor, INodeContract
{
    public const string ProcessorName = "onnx";

    public string Name => ProcessorName;

    /// <summary>Checks the model's config.yaml against the tensor the node is fed. A model not in the
    /// repository yet (e.g. trained later) is not an error here: its runs fail until it is there.</summary>
    public (IReadOnlyList<TensorSpec>? Outputs, IReadOnlyList<string> Errors) Check(NodeSettings node, IReadOnlyList<NodeInputSpec> inputs)
    {
        if (!node.Parameters.TryGetValue("model", out var model) || model.Length == 0)
        {
            return (null, ["parameter 'model' is missing"]);
        }

        ModelConfig config;
        try
        {
            if (!File.Exists(Path.Combine(models.Repository.Root, model, ModelRepository.ConfigFile)))
            {
                return (null, []);
            }

            config = models.Repository.Config(model);
        }
        catch (ModelRepositoryException e)
        {
            return (null, [e.Message]);
        }

        var inputName = node.Parameters.GetValueOrDefault("input") ?? (config.Inputs.Count == 1 ? config.Inputs[0].Name : null);
        var spec = config.Inputs.FirstOrDefault(i => i.Name == inputName);
        if (spec is null)
        {
            return (config.Outputs, [$"model '{model}' has inputs {string.Join(", ", config.Inputs)}; parameter 'input' must name one"]);
        }

        var from = node.Parameters.GetValueOrDefault("from");
        var parent = from is null ? (inputs.Count == 1 ? inputs[0] : null) : inputs.FirstOrDefault(i => i.Parent == from);
        if (parent?.Tensors is not { } tensors)
        {
            return (config.Outputs, parent is null ? [$"takes one tensor set: name its parent with parameter 'from' (parents: {string.Join(", ", inputs.Select(i => i.Parent))})"] : []);
        }

        var tensorName = node.Parameters.GetValueOrDefault("tensor") ?? (tensors.Any(t => t.Name == spec.Name) ? spec.Name : null);
        var tensor = tensorName is null ? (tensors.Count == 1 ? tensors[0] : null) : tensors.FirstOrDefault(t => t.Name == tensorName);
        if (tensor is null)
        {
            return (config.Outputs, [$"no tensor for model input '{spec.Name}' among {string.Join(", ", tensors)} from '{parent.Parent}'; name one with parameter 'tensor'"]);
        }

        return spec.Accepts(tensor.Shape)
            ? (config.Outputs, [])
            : (config.Outputs, [$"tensor '{tensor.Name}' from '{parent.Parent}' is {TensorSets.Shape(tensor.Shape)}, but model '{model}' input '{spec.Name}' is {TensorSets.Shape(spec.Shape)}"]);
    }

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

        var inputs = new Dictionary<string, TensorData>(StringComparer.Ordinal) { [inputName] = new TensorData([.. tensor.Dims], tensor.Data.Memory) };
        InferenceResult result;
        try
        {
            // An empty batch (no crops in this image) has an empty answer; no session needs to see it.
            result = tensor.Dims.Count > 0 && tensor.Dims[0] == 0
                ? new InferenceResult(
                    config.Outputs.ToDictionary(o => o.Name, o => new TensorData(o.Shape.Select((d, i) => i == 0 || d < 0 ? 0 : d).ToArray(), ReadOnlyMemory<byte>.Empty), StringComparer.Ordinal),
                    model, await models.ServedVersionAsync(model, version), "", 0, 0)
                : await models.InferAsync(model, version, inputs, cancellationToken);
        }
        catch (ModelRepositoryException e)
        {
            throw new NodeInputException($"node '{invocation.NodeId}': {e.Message}", e);
        }

        var outputSet = new TensorSet { SourceWidth = set.SourceWidth, SourceHeight = set.SourceHeight, TileRows = set.TileRows, TileCols = set.TileCols, Regions = { set.Regions } };
        foreach (var (name, data) in result.Outputs)
        {
            outputSet.Tensors.Add(TensorSets.Wrap(name, data.Dims, data.Bytes));
        }

        var output = new NodeOutput
        {
            Data = outputSet.ToByteArray(),
            ModelName = result.Model,
            ModelVersion = result.Version.ToString(CultureInfo.InvariantCulture),
        };
        output.Metrics["batch"] = result.BatchSize;
        output.Metrics["batch_limit"] = result.BatchLimit;
        output.Metrics["inference_ms"] = result.InferenceMs;
        output.Metrics["instance"] = result.Instance;
        if (result.Provider.Length > 0)
        {
            output.Labels["provider"] = result.Provider;
        }

        return output;
    }
}
