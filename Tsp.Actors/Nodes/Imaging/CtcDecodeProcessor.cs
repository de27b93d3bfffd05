using System.Collections.Concurrent;
using System.Text;
using Google.Protobuf;
using Tsp.Actors.Nodes.Onnx;
using Tsp.Actors.Protocol;

namespace Tsp.Actors.Nodes.Imaging;

/// <summary>
/// <c>text.ctc-decode</c>: turns a recogniser's per-step class probabilities [N,T,C] into text, greedy
/// CTC: the likeliest class per step, repeats merged, blanks (class 0) dropped; the confidence is the
/// mean probability of the kept steps. Class c ≥ 1 is line c of the model's labels file
/// (config.yaml <c>labels</c>), then a space (PaddleOCR's use_space_char). Each text is given with
/// the region its line was cut from (the input set's regions, kept by the model node), as a detection.
/// Parameters: model (whose labels to use), from, tensor, label (default the region's own),
/// min_score (texts read with less confidence are dropped; 0.5), space (true). Metrics: texts, mean_score.
/// </summary>
public sealed class CtcDecodeProcessor(ModelRepository repository) : INodeProcessor, INodeContract
{
    public const string ProcessorName = "text.ctc-decode";

    private readonly ConcurrentDictionary<string, (DateTime Stamp, string[] Classes)> _classes = new(StringComparer.Ordinal);

    public string Name => ProcessorName;

    public (IReadOnlyList<TensorSpec>? Outputs, IReadOnlyList<string> Errors) Check(NodeSettings node, IReadOnlyList<NodeInputSpec> inputs)
    {
        if (!node.Parameters.TryGetValue("model", out var model) || model.Length == 0)
        {
            return (null, ["parameter 'model' is missing: the model whose labels file names the classes"]);
        }

        // A model not in the repository yet is not an error here (as for the onnx node): its runs fail until it is there.
        if (!File.Exists(Path.Combine(repository.Root, model, ModelRepository.ConfigFile)))
        {
            return (null, []);
        }

        try
        {
            return repository.Config(model).Labels is null ? (null, [$"model '{model}' names no labels file (config.yaml 'labels')"]) : (null, []);
        }
        catch (ModelRepositoryException e)
        {
            return (null, [e.Message]);
        }
    }

    public Task<NodeOutput> ProcessAsync(NodeInvocation invocation, CancellationToken cancellationToken)
    {
        var model = invocation.Parameters.TryGetValue("model", out var m) && m.Length > 0
            ? m
            : throw new NodeInputException($"node '{invocation.NodeId}': parameter 'model' is missing");
        var classes = Classes(model, invocation.Parameter("space", "true") == "true", invocation.NodeId);
        var set = TensorSets.Read(invocation, invocation.Parameters.GetValueOrDefault("from"));
        var tensor = TensorSets.Find(set, invocation.Parameters.GetValueOrDefault("tensor"), invocation.NodeId);
        var dims = tensor.Dims;
        if (dims.Count != 3)
        {
            throw new NodeInputException($"node '{invocation.NodeId}': tensor '{tensor.Name}' has shape {TensorSets.Shape(dims)}; CTC decoding takes [N,T,C]");
        }

        var (lines, steps, count) = ((int)dims[0], (int)dims[1], (int)dims[2]);
        if (lines > 0 && count != classes.Length)
        {
            throw new NodeInputException($"node '{invocation.NodeId}': tensor '{tensor.Name}' has {count} classes, but model '{model}' names {classes.Length} (blank, {classes.Length - 1} labels and space)");
        }

        if (set.Regions.Count != lines)
        {
            throw new NodeInputException($"node '{invocation.NodeId}': {lines} lines but {set.Regions.Count} regions in the input from '{invocation.Inputs[0].NodeId}'; its lines must come from text.crops");
        }

        var minScore = (float)invocation.Parameter("min_score", 0.5);
        var label = invocation.Parameters.GetValueOrDefault("label");
        var values = TensorSets.Values(tensor);
        var read = new List<Detection>();
        var text = new StringBuilder();
        for (var line = 0; line < lines; line++)
        {
            text.Clear();
            var (sum, kept, previous) = (0.0, 0, -1);
            for (var step = 0; step < steps; step++)
            {
                var row = values.AsSpan(((line * steps) + step) * count, count);
                var best = 0;
                for (var c = 1; c < count; c++)
                {
                    if (row[c] > row[best])
                    {
                        best = c;
                    }
                }

                if (best != 0 && best != previous)
                {
                    text.Append(classes[best]);
                    sum += row[best];
                    kept++;
                }

                previous = best;
            }

            var score = kept == 0 ? 0 : (float)(sum / kept);
            if (kept == 0 || score < minScore)
            {
                continue;
            }

            var detection = set.Regions[line].Clone();
            detection.Text = text.ToString();
            detection.Score = score;
            detection.NodeId = invocation.NodeId;
            detection.Label = label ?? detection.Label;
            read.Add(detection);
        }

        var output = new NodeOutput { Data = new DetectionList { Detections = { read } }.ToByteArray() };
        output.Detections.AddRange(read);
        output.Metrics["texts"] = read.Count;
        output.Metrics["mean_score"] = read.Count == 0 ? 0 : read.Average(d => d.Score);
        return Task.FromResult(output);
    }

    /// <summary>Blank, the labels, and (with <paramref name="space"/>) a space; re-read when the file changes.</summary>
    private string[] Classes(string model, bool space, string nodeId)
    {
        try
        {
            var config = repository.Config(model);
            var path = Path.Combine(repository.Root, model, config.Labels ?? throw new ModelRepositoryException($"model '{model}' names no labels file (config.yaml 'labels')"));
            var stamp = File.GetLastWriteTimeUtc(path);
            var key = $"{model}\n{space}";
            if (!_classes.TryGetValue(key, out var cached) || cached.Stamp != stamp)
            {
                cached = (stamp, ["", .. repository.Labels(model), .. space ? new[] { " " } : []]);
                _classes[key] = cached;
            }

            return cached.Classes;
        }
        catch (ModelRepositoryException e)
        {
            throw new NodeInputException($"node '{nodeId}': {e.Message}", e);
        }
    }
}
