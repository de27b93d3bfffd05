using System.Globalization;
using Google.Protobuf;
using Tsp.Actors.Nodes.Imaging;
using Tsp.Actors.Nodes.Onnx;
using Tsp.Actors.Protocol;

namespace Tsp.Actors.Nodes.Training;

/// <summary>
/// <c>train.fit-normal</c>: the run's frame is a <see cref="TrainingSet"/> of good images; each is
/// decoded and normalized as <c>image.normalize</c> would (same parameters: width, height, channels,
/// mean, std) and a <see cref="NormalModel"/> is fitted (parameter pool, default 4). Output: the
/// model's statistics as a tensor set, for <c>train.export-onnx</c>.
/// </summary>
public sealed class FitNormalProcessor : INodeProcessor
{
    public const string ProcessorName = "train.fit-normal";

    public string Name => ProcessorName;

    public Task<NodeOutput> ProcessAsync(NodeInvocation invocation, CancellationToken cancellationToken)
    {
        var input = invocation.Inputs.Count > 0 ? invocation.Inputs[0] : throw new NodeInputException($"node '{invocation.NodeId}' has no input");
        TrainingSet set;
        try
        {
            set = TrainingSet.Parser.ParseFrom(input.Data.Span);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new NodeInputException($"node '{invocation.NodeId}': its input is not a TrainingSet of images: {e.Message}", e);
        }

        var settings = ImageSettings.From(invocation.Parameters, invocation.NodeId);
        var pool = (int)invocation.Parameter("pool", 4);
        var images = set.Images.Select((bytes, i) =>
        {
            cancellationToken.ThrowIfCancellationRequested();
            try
            {
                using var bitmap = ImageNormalizeProcessor.Decode(bytes.Memory, settings.MaxPixels);
                return TensorSets.Values(settings.ToTensorSet(bitmap).Tensors[0]);
            }
            catch (NodeInputException e)
            {
                throw new NodeInputException($"training image {i}: {e.Message}", e);
            }
        }).ToList();
        var model = NormalModel.Fit(images, settings.Channels, settings.Height, settings.Width, pool);

        var statistics = new TensorSet();
        var cells = new long[] { 1, model.FeatureCount, model.MapHeight, model.MapWidth };
        statistics.Tensors.Add(TensorSets.Create("mean", cells, model.Mean));
        statistics.Tensors.Add(TensorSets.Create("spread", cells, model.Spread));
        statistics.Tensors.Add(TensorSets.Create("calibration", [1], [model.Calibration]));
        statistics.Tensors.Add(TensorSets.Create("shape", [4], [model.Height, model.Width, model.Channels, model.Pool]));
        var output = new NodeOutput { Data = statistics.ToByteArray() };
        output.Metrics["images"] = images.Count;
        output.Metrics["calibration"] = model.Calibration;
        return Task.FromResult(output);
    }

    public static NormalModel Read(TensorSet statistics, string nodeId)
    {
        var shape = TensorSets.Values(TensorSets.Find(statistics, "shape", nodeId));
        return new NormalModel(
            (int)shape[0], (int)shape[1], (int)shape[2], (int)shape[3],
            TensorSets.Values(TensorSets.Find(statistics, "mean", nodeId)),
            TensorSets.Values(TensorSets.Find(statistics, "spread", nodeId)),
            TensorSets.Values(TensorSets.Find(statistics, "calibration", nodeId))[0]);
    }
}

/// <summary>
/// <c>train.export-onnx</c>: writes the fitted model into the model repository (parameter model) as
/// its next version, with a config.yaml, so serving picks it up by hot reload. A retried export of
/// the same run reuses the version it wrote.
/// </summary>
public sealed class ExportOnnxProcessor(ModelRepository repository) : INodeProcessor
{
    public const string ProcessorName = "train.export-onnx";
    private const string SourceFile = "source.txt";
    private static readonly Lock Writing = new();

    public string Name => ProcessorName;

    public Task<NodeOutput> ProcessAsync(NodeInvocation invocation, CancellationToken cancellationToken)
    {
        var name = invocation.Parameters.TryGetValue("model", out var m) && m.Length > 0 && m.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_')
            ? m
            : throw new NodeInputException($"node '{invocation.NodeId}': parameter 'model' must name the model (letters, digits, '-', '_')");
        var model = FitNormalProcessor.Read(TensorSets.Read(invocation, invocation.Parameters.GetValueOrDefault("from")), invocation.NodeId);
        var source = $"{invocation.Project}/{invocation.RunId}";
        int version;
        lock (Writing)
        {
            var versions = repository.Versions(name);
            var latest = versions.Count > 0 ? versions[^1] : 0;
            var sourcePath = Path.Combine(repository.Root, name, latest.ToString(CultureInfo.InvariantCulture), SourceFile);
            if (latest > 0 && File.Exists(sourcePath) && File.ReadAllText(sourcePath) == source)
            {
                version = latest;
            }
            else
            {
                version = latest + 1;
                Write(name, version, model, source);
            }
        }

        var output = new NodeOutput { Data = model.ToOnnx(), ModelName = name, ModelVersion = version.ToString(CultureInfo.InvariantCulture) };
        output.Metrics["version"] = version;
        return Task.FromResult(output);
    }

    private void Write(string name, int version, NormalModel model, string source)
    {
        var folder = Path.Combine(repository.Root, name, version.ToString(CultureInfo.InvariantCulture));
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, SourceFile), source);
        AtomicWrite(Path.Combine(repository.Root, name, ModelRepository.ConfigFile), System.Text.Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $$"""
            # Written by train.export-onnx: a normal-appearance model (see Tsp.Actors/Nodes/Training/NormalModel.cs).
            inputs: [{ name: {{NormalModel.Input}}, shape: [-1, {{model.Channels}}, {{model.Height}}, {{model.Width}}] }]
            outputs: [{ name: {{NormalModel.Output}}, shape: [-1, 1, {{model.MapHeight}}, {{model.MapWidth}}] }]
            batching: { max_batch_size: 8, max_queue_delay_ms: 2 }

            """)));
        // The model file last and whole: its appearance is what makes the version visible.
        AtomicWrite(Path.Combine(folder, ModelRepository.ModelFile), model.ToOnnx());
    }

    private static void AtomicWrite(string path, byte[] content)
    {
        var temporary = path + ".tmp";
        File.WriteAllBytes(temporary, content);
        File.Move(temporary, path, overwrite: true);
    }
}
