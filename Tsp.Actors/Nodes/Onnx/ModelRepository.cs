using System.Globalization;
using YamlDotNet.RepresentationModel;

namespace Tsp.Actors.Nodes.Onnx;

/// <summary>A model's <c>config.yaml</c>.</summary>
/// <param name="Instances">Sessions of the served version in each process that serves the model, each
/// running its own batches side by side (Triton's instance count); at least 1.</param>
/// <param name="AdaptiveBatching">Whether the batch size is chosen while serving, up to
/// <paramref name="MaxBatchSize"/> (<see cref="BatchTuner"/>); false: always batches of up to the maximum.</param>
/// <param name="LatencyBudget">The longest a batch may take, its queue delay included, when the size is
/// chosen; zero: no bound.</param>
/// <param name="Labels">A file in the model's folder naming its classes, one per line (Triton's
/// label_filename): what a decoder turns class indices into; null when the model has none.</param>
public sealed record ModelConfig(
    string Name,
    IReadOnlyList<TensorSpec> Inputs,
    IReadOnlyList<TensorSpec> Outputs,
    int MaxBatchSize,
    TimeSpan MaxQueueDelay,
    int? PinnedVersion,
    int Instances = 1,
    bool AdaptiveBatching = true,
    TimeSpan LatencyBudget = default,
    string? Labels = null);

/// <summary>
/// Triton-style model repository: <c>{root}/{model}/config.yaml</c> and
/// <c>{root}/{model}/{version}/model.onnx</c>, versions being whole numbers. The version served is
/// the highest (policy <c>latest</c>) or the one pinned in config.yaml (<c>version: N</c>).
/// </summary>
public sealed class ModelRepository(string root)
{
    public const string ModelFile = "model.onnx";
    public const string ConfigFile = "config.yaml";

    public string Root { get; } = Path.GetFullPath(root);

    public IReadOnlyList<string> Models() =>
        Directory.Exists(Root) ? Directory.GetDirectories(Root).Select(d => Path.GetFileName(d)).Where(n => File.Exists(Path.Combine(Root, n, ConfigFile))).Order(StringComparer.Ordinal).ToList() : [];

    /// <summary>Versions that have a model file, ascending.</summary>
    public IReadOnlyList<int> Versions(string model)
    {
        var folder = Path.Combine(Root, model);
        return Directory.Exists(folder)
            ? Directory.GetDirectories(folder)
                .Select(d => int.TryParse(Path.GetFileName(d), NumberStyles.None, CultureInfo.InvariantCulture, out var v) && File.Exists(Path.Combine(d, ModelFile)) ? v : -1)
                .Where(v => v >= 0).Order().ToList()
            : [];
    }

    public string ModelPath(string model, int version) => Path.Combine(Root, model, version.ToString(CultureInfo.InvariantCulture), ModelFile);

    /// <summary>The version to serve: <paramref name="requested"/> if given, else the config's pin, else the latest.</summary>
    /// <returns>Null when there is none.</returns>
    public int? ServedVersion(ModelConfig config, int? requested = null)
    {
        var versions = Versions(config.Name);
        var wanted = requested ?? config.PinnedVersion;
        return wanted is { } pinned ? (versions.Contains(pinned) ? pinned : null) : versions.Count > 0 ? versions[^1] : null;
    }

    /// <exception cref="ModelRepositoryException">No such model, or its config.yaml is invalid (the message says where).</exception>
    public ModelConfig Config(string model)
    {
        var path = Path.Combine(Root, model, ConfigFile);
        if (!File.Exists(path))
        {
            var known = string.Join(", ", Models());
            throw new ModelRepositoryException($"model '{model}' is not in the repository {Root} (no {model}/{ConfigFile}; models: {(known.Length > 0 ? known : "none")})");
        }

        try
        {
            var yaml = new YamlStream();
            using (var reader = new StringReader(File.ReadAllText(path)))
            {
                yaml.Load(reader);
            }

            var rootNode = yaml.Documents.Count > 0 ? yaml.Documents[0].RootNode as YamlMappingNode : null;
            if (rootNode is null)
            {
                throw new FormatException("expected a mapping with inputs and outputs");
            }

            var batching = Child(rootNode, "batching") as YamlMappingNode;
            int? pinned = Child(rootNode, "version") is YamlScalarNode v ? ParseInt(v, "version") : null;
            return new ModelConfig(
                model,
                Specs(rootNode, "inputs"),
                Specs(rootNode, "outputs"),
                batching is not null && Child(batching, "max_batch_size") is YamlScalarNode mb ? ParseInt(mb, "batching.max_batch_size") : 1,
                TimeSpan.FromMilliseconds(batching is not null && Child(batching, "max_queue_delay_ms") is YamlScalarNode md ? ParseInt(md, "batching.max_queue_delay_ms") : 0),
                pinned,
                Child(rootNode, "instances") is YamlScalarNode n ? ParseInstances(n) : 1,
                batching is null || Child(batching, "adaptive") is not YamlScalarNode adaptive || ParseBool(adaptive, "batching.adaptive"),
                TimeSpan.FromMilliseconds(batching is not null && Child(batching, "latency_budget_ms") is YamlScalarNode budget ? ParseInt(budget, "batching.latency_budget_ms") : 0),
                Child(rootNode, "labels") is YamlScalarNode labels ? ParseFileName(labels) : null);
        }
        catch (Exception e) when (e is FormatException or YamlDotNet.Core.YamlException)
        {
            throw new ModelRepositoryException($"{path}: {e.Message}", e);
        }
    }

    /// <summary>The lines of the model's labels file (config.yaml <c>labels</c>).</summary>
    /// <exception cref="ModelRepositoryException">No such model, it names no labels file, or the file is missing.</exception>
    public IReadOnlyList<string> Labels(string model)
    {
        var config = Config(model);
        var path = config.Labels is { } file
            ? Path.Combine(Root, model, file)
            : throw new ModelRepositoryException($"model '{model}' names no labels file (config.yaml 'labels')");
        return File.Exists(path)
            ? File.ReadAllLines(path)
            : throw new ModelRepositoryException($"model '{model}': its labels file {path} is missing");
    }

    private static string ParseFileName(YamlScalarNode node) =>
        node.Value is { Length: > 0 } name && Path.GetFileName(name) == name
            ? name
            : throw new FormatException($"line {node.Start.Line}: labels '{node.Value}' must name a file in the model's folder");

    private static YamlNode? Child(YamlMappingNode node, string key) =>
        node.Children.TryGetValue(new YamlScalarNode(key), out var child) ? child : null;

    /// <summary>More than a few sessions of one model in one process only multiply its memory: scale
    /// out with more processes instead.</summary>
    private const int MaxInstances = 16;

    private static int ParseInstances(YamlScalarNode node) =>
        ParseInt(node, "instances") is var n && n is >= 1 and <= MaxInstances
            ? n
            : throw new FormatException($"line {node.Start.Line}: instances '{node.Value}' must be from 1 to {MaxInstances}");

    private static bool ParseBool(YamlScalarNode node, string what) =>
        bool.TryParse(node.Value, out var value)
            ? value
            : throw new FormatException($"line {node.Start.Line}: {what} '{node.Value}' is not true or false");

    private static int ParseInt(YamlScalarNode node, string what) =>
        int.TryParse(node.Value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) && value >= 0
            ? value
            : throw new FormatException($"line {node.Start.Line}: {what} '{node.Value}' is not a whole number ≥ 0");

    private static List<TensorSpec> Specs(YamlMappingNode root, string key)
    {
        if (Child(root, key) is not YamlSequenceNode items || items.Children.Count == 0)
        {
            throw new FormatException($"'{key}' must list at least one tensor (name, shape)");
        }

        return items.Children.Select(item =>
        {
            if (item is not YamlMappingNode map || Child(map, "name") is not YamlScalarNode { Value: { Length: > 0 } name } || Child(map, "shape") is not YamlSequenceNode shape)
            {
                throw new FormatException($"line {item.Start.Line}: each of '{key}' needs a name and a shape, e.g. {{ name: x, shape: [-1, 3, 256, 256] }}");
            }

            return new TensorSpec(name, shape.Children.Select(d => d is YamlScalarNode s && long.TryParse(s.Value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var n) && n >= -1 && n != 0
                ? n
                : throw new FormatException($"line {d.Start.Line}: dimension '{d}' of '{name}' is not a positive whole number or -1")).ToList());
        }).ToList();
    }
}

public sealed class ModelRepositoryException : Exception
{
    public ModelRepositoryException(string message)
        : base(message)
    {
    }

    public ModelRepositoryException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public ModelRepositoryException()
    {
    }
}
