using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using YamlDotNet.Core;
using Tsp.Actors.Storage;
using YamlDotNet.RepresentationModel;

namespace Tsp.Actors.Workflows;

/// <summary>
/// Reads a workflow from YAML and validates it; every problem found is reported at once, each with
/// its file and line. See <c>docs/workflows.md</c> for the format.
/// </summary>
public static class WorkflowLoader
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(30);
    public const int DefaultMaxAttempts = 3;

    private static readonly HashSet<string> TopLevelKeys = ["project", "defaults", "scheduling", "nodes"];
    private static readonly HashSet<string> SchedulingKeys = ["weight", "priority", "max_share", "rate_limit"];
    private static readonly HashSet<string> DefaultsKeys = ["timeout", "max_attempts"];
    private static readonly HashSet<string> NodeKeys = ["id", "processor", "role", "queue", "params", "timeout", "max_attempts", "after", "when"];

    /// <exception cref="WorkflowValidationException">The file cannot be read, or lists every error with file and line.</exception>
    public static WorkflowDefinition LoadFile(string path, IReadOnlySet<string> knownProcessors)
    {
        string yaml;
        try
        {
            yaml = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new WorkflowValidationException([new WorkflowError(path, 0, $"cannot read the workflow file: {e.Message}")]);
        }

        return Parse(yaml, path, knownProcessors);
    }

    /// <exception cref="WorkflowValidationException">Lists every error with file and line.</exception>
    public static WorkflowDefinition Parse(string yaml, string source, IReadOnlySet<string> knownProcessors)
    {
        var errors = new List<WorkflowError>();
        void Error(YamlNode? at, string message) => errors.Add(new WorkflowError(source, at is null ? 0 : (int)at.Start.Line, message));

        var stream = new YamlStream();
        var parser = new Parser(new StringReader(yaml));
        try
        {
            stream.Load(parser);
        }
        catch (YamlException e)
        {
            throw new WorkflowValidationException([new WorkflowError(source, (int)e.Start.Line, "not valid YAML: " + (e.InnerException?.Message ?? e.Message))]);
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or IndexOutOfRangeException or FormatException or OverflowException)
        {
            // YamlDotNet's scanner fails this way on some malformed input (found by fuzzing): report
            // it as the YAML error it is, at the last place the parser read.
            var line = Math.Max(1, (int)(parser.Current?.End.Line ?? 1));
            throw new WorkflowValidationException([new WorkflowError(source, line, $"not valid YAML after this line ({e.Message})")]);
        }

        if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is not YamlMappingNode root)
        {
            throw new WorkflowValidationException([new WorkflowError(source, 1, "a workflow is a mapping with 'project' and 'nodes'")]);
        }

        CheckKeys(root, TopLevelKeys, "workflow", Error);
        var project = Scalar(root, "project");
        if (string.IsNullOrWhiteSpace(project))
        {
            Error(root, "missing 'project' (the project's name)");
        }
        else if (!IsName(project))
        {
            Error(Child(root, "project"), $"project name '{project}' may hold only letters, digits, '-' and '_'");
        }

        var defaultTimeout = DefaultTimeout;
        var defaultAttempts = DefaultMaxAttempts;
        if (Child(root, "defaults") is { } defaultsNode)
        {
            if (defaultsNode is YamlMappingNode defaults)
            {
                CheckKeys(defaults, DefaultsKeys, "defaults", Error);
                defaultTimeout = ParseTimeout(defaults, defaultTimeout, "defaults", Error);
                defaultAttempts = ParseAttempts(defaults, defaultAttempts, "defaults", Error);
            }
            else
            {
                Error(defaultsNode, "'defaults' must be a mapping");
            }
        }

        var scheduling = ParseScheduling(Child(root, "scheduling"), Error);
        var nodes = new List<NodeDefinition>();
        var nodeLines = new Dictionary<string, YamlNode>(StringComparer.Ordinal);
        if (Child(root, "nodes") is not YamlSequenceNode nodeSequence || nodeSequence.Children.Count == 0)
        {
            Error(Child(root, "nodes") ?? root, "missing 'nodes': a workflow needs at least one node");
            throw new WorkflowValidationException(errors);
        }

        foreach (var item in nodeSequence.Children)
        {
            if (item is not YamlMappingNode map)
            {
                Error(item, "a node must be a mapping with 'id', 'processor', 'role' and 'queue'");
                continue;
            }

            var id = Scalar(map, "id");
            if (string.IsNullOrWhiteSpace(id))
            {
                Error(map, "node without 'id'");
                continue;
            }

            var what = $"node '{id}'";
            CheckKeys(map, NodeKeys, what, Error);
            if (!IsName(id))
            {
                Error(Child(map, "id"), $"{what}: id may hold only letters, digits, '-' and '_'");
            }

            if (id == RedisKeys.FrameNodeId)
            {
                Error(Child(map, "id"), $"{what}: the id '{RedisKeys.FrameNodeId}' is reserved: in 'after' it names the run's frame");
            }

            if (!nodeLines.TryAdd(id, map))
            {
                Error(map, $"duplicate node id '{id}' (first defined at line {nodeLines[id].Start.Line})");
                continue;
            }

            var processor = Scalar(map, "processor");
            if (string.IsNullOrWhiteSpace(processor))
            {
                Error(map, $"{what}: missing 'processor'");
            }
            else if (!knownProcessors.Contains(processor))
            {
                Error(Child(map, "processor"), $"{what}: unknown processor '{processor}' (known: {string.Join(", ", knownProcessors.Order(StringComparer.Ordinal))})");
            }

            var role = Scalar(map, "role");
            if (string.IsNullOrWhiteSpace(role))
            {
                Error(map, $"{what}: missing 'role' (gpu or cpu)");
            }
            else if (!NodeRoles.All.Contains(role))
            {
                Error(Child(map, "role"), $"{what}: unknown role '{role}' (gpu or cpu)");
            }

            var queue = Scalar(map, "queue");
            if (string.IsNullOrWhiteSpace(queue))
            {
                Error(map, $"{what}: missing 'queue' (the named queue it runs in, e.g. cpu-short)");
            }
            else if (!IsName(queue))
            {
                Error(Child(map, "queue"), $"{what}: queue name '{queue}' may hold only letters, digits, '-' and '_'");
            }

            var parameters = new Dictionary<string, string>(StringComparer.Ordinal);
            if (Child(map, "params") is { } paramsNode)
            {
                if (paramsNode is YamlMappingNode paramsMap)
                {
                    foreach (var (key, value) in paramsMap.Children)
                    {
                        if (value is YamlScalarNode scalar)
                        {
                            parameters[((YamlScalarNode)key).Value ?? string.Empty] = scalar.Value ?? string.Empty;
                        }
                        else
                        {
                            Error(value, $"{what}: parameter '{key}' must be a plain value");
                        }
                    }
                }
                else
                {
                    Error(paramsNode, $"{what}: 'params' must be a mapping");
                }
            }

            var after = new List<string>();
            if (Child(map, "after") is { } afterNode)
            {
                switch (afterNode)
                {
                    case YamlScalarNode single when !string.IsNullOrEmpty(single.Value):
                        after.Add(single.Value);
                        break;
                    case YamlSequenceNode sequence:
                        foreach (var parent in sequence.Children)
                        {
                            if (parent is YamlScalarNode { Value: { Length: > 0 } name })
                            {
                                after.Add(name);
                            }
                            else
                            {
                                Error(parent, $"{what}: 'after' lists node ids");
                            }
                        }

                        break;
                    default:
                        Error(afterNode, $"{what}: 'after' lists node ids");
                        break;
                }
            }

            // 'frame' in 'after' is the run's frame, not a parent: the node gets it as an input too.
            var readsFrame = after.Contains(RedisKeys.FrameNodeId);
            if (after.Count(a => a == RedisKeys.FrameNodeId) > 1)
            {
                Error(Child(map, "after"), $"{what} lists '{RedisKeys.FrameNodeId}' twice in 'after'");
            }

            after.RemoveAll(a => a == RedisKeys.FrameNodeId);
            WhenExpression? when = null;
            if (Scalar(map, "when") is { } whenText)
            {
                try
                {
                    when = WhenExpression.Parse(whenText);
                }
                catch (FormatException e)
                {
                    Error(Child(map, "when"), $"{what}: bad 'when' expression \"{whenText}\": {e.Message}");
                }
            }

            nodes.Add(new NodeDefinition(
                id,
                processor ?? string.Empty,
                role ?? string.Empty,
                queue ?? string.Empty,
                parameters,
                ParseTimeout(map, defaultTimeout, what, Error),
                ParseAttempts(map, defaultAttempts, what, Error),
                after,
                when,
                (int)map.Start.Line,
                readsFrame));
        }

        CheckGraph(nodes, nodeLines, Error);
        if (errors.Count > 0)
        {
            throw new WorkflowValidationException(errors);
        }

        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(yaml)))[..16];
        return new WorkflowDefinition(project!, source, hash, nodes, scheduling) { Yaml = yaml };
    }

    private static void CheckGraph(List<NodeDefinition> nodes, Dictionary<string, YamlNode> nodeLines, Action<YamlNode?, string> error)
    {
        var byId = nodes.ToDictionary(n => n.Id, StringComparer.Ordinal);
        foreach (var node in nodes)
        {
            var at = nodeLines[node.Id];
            foreach (var parent in node.After)
            {
                if (parent == node.Id)
                {
                    error(at, $"node '{node.Id}' lists itself in 'after'");
                }
                else if (!byId.ContainsKey(parent))
                {
                    error(at, $"node '{node.Id}': unknown parent '{parent}' in 'after'");
                }
            }

            if (node.After.Distinct(StringComparer.Ordinal).Count() != node.After.Count)
            {
                error(at, $"node '{node.Id}' lists a parent twice in 'after'");
            }

            foreach (var referenced in node.When?.ReferencedNodes ?? [])
            {
                if (!node.After.Contains(referenced, StringComparer.Ordinal))
                {
                    error(at, $"node '{node.Id}': bad 'when' expression \"{node.When}\": '{referenced}' is not one of its parents ({(node.After.Count == 0 ? "it has none" : string.Join(", ", node.After))})");
                }
            }
        }

        foreach (var queue in nodes.Where(n => n.Queue.Length > 0 && n.Role.Length > 0).GroupBy(n => n.Queue, StringComparer.Ordinal))
        {
            var roles = queue.Select(n => n.Role).Distinct(StringComparer.Ordinal).ToList();
            if (roles.Count > 1)
            {
                error(nodeLines[queue.First().Id], $"queue '{queue.Key}' is used with roles {string.Join(" and ", roles)}; a queue runs on one role");
            }
        }

        if (!nodes.Any(n => n.After.Count == 0))
        {
            error(null, "no source node: every node has a parent");
        }

        var parents = nodes.SelectMany(n => n.After).ToHashSet(StringComparer.Ordinal);
        if (nodes.All(n => parents.Contains(n.Id)))
        {
            error(null, "no sink node: every node is some node's parent");
        }

        if (FindCycle(nodes, byId) is { } cycle)
        {
            error(nodeLines[cycle[0]], $"cycle: {string.Join(" -> ", cycle)} -> {cycle[0]}");
        }
    }

    /// <summary>Returns the nodes of one cycle in edge order (parent to child), or null.</summary>
    private static List<string>? FindCycle(List<NodeDefinition> nodes, Dictionary<string, NodeDefinition> byId)
    {
        var children = nodes.ToDictionary(n => n.Id, _ => new List<string>(), StringComparer.Ordinal);
        foreach (var node in nodes)
        {
            foreach (var parent in node.After.Where(p => byId.ContainsKey(p) && p != node.Id))
            {
                children[parent].Add(node.Id);
            }
        }

        var state = new Dictionary<string, int>(StringComparer.Ordinal); // 1 = on the path, 2 = done
        var path = new List<string>();
        foreach (var start in nodes.Select(n => n.Id))
        {
            if (Visit(start) is { } found)
            {
                return found;
            }
        }

        return null;

        List<string>? Visit(string id)
        {
            if (state.TryGetValue(id, out var s))
            {
                return s == 1 ? path[path.IndexOf(id)..] : null;
            }

            state[id] = 1;
            path.Add(id);
            foreach (var child in children[id])
            {
                if (Visit(child) is { } found)
                {
                    return found;
                }
            }

            path.RemoveAt(path.Count - 1);
            state[id] = 2;
            return null;
        }
    }

    private static TimeSpan ParseTimeout(YamlMappingNode map, TimeSpan fallback, string what, Action<YamlNode?, string> error)
    {
        var text = Scalar(map, "timeout");
        if (text is null)
        {
            return fallback;
        }

        if (TryParseDuration(text, out var timeout) && timeout > TimeSpan.Zero)
        {
            return timeout;
        }

        error(Child(map, "timeout"), $"{what}: timeout '{text}' is not a positive duration like 500ms, 30s or 2m");
        return fallback;
    }

    /// <summary><c>scheduling: { weight: 1..1000, priority: -100..100, max_share: (0, 1], rate_limit: frames/s }</c>.</summary>
    private static ProjectScheduling ParseScheduling(YamlNode? node, Action<YamlNode?, string> error)
    {
        if (node is null)
        {
            return ProjectScheduling.Default;
        }

        if (node is not YamlMappingNode map)
        {
            error(node, "'scheduling' must be a mapping (weight, priority, max_share, rate_limit)");
            return ProjectScheduling.Default;
        }

        CheckKeys(map, SchedulingKeys, "scheduling", error);
        int Whole(string key, int fallback, int min, int max)
        {
            var text = Scalar(map, key);
            if (text is null)
            {
                return fallback;
            }

            if (int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max)
            {
                return value;
            }

            error(Child(map, key), $"scheduling: {key} '{text}' must be a whole number from {min} to {max}");
            return fallback;
        }

        double Number(string key, double fallback, Func<double, bool> valid, string expected)
        {
            var text = Scalar(map, key);
            if (text is null)
            {
                return fallback;
            }

            if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && double.IsFinite(value) && valid(value))
            {
                return value;
            }

            error(Child(map, key), $"scheduling: {key} '{text}' must be {expected}");
            return fallback;
        }

        var weight = Whole("weight", 1, 1, 1000);
        var priority = Whole("priority", 0, -100, 100);
        var maxShare = Number("max_share", 1.0, v => v is > 0 and <= 1, "a share of the queue's slots above 0 and at most 1");
        var rateLimit = Number("rate_limit", 0, v => v > 0, "a number of frames per second above 0");
        return new ProjectScheduling(Dispatch.LaneShare.Of(weight, priority, maxShare), rateLimit);
    }

    private static int ParseAttempts(YamlMappingNode map, int fallback, string what, Action<YamlNode?, string> error)
    {
        var text = Scalar(map, "max_attempts");
        if (text is null)
        {
            return fallback;
        }

        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var attempts) && attempts is >= 1 and <= 100)
        {
            return attempts;
        }

        error(Child(map, "max_attempts"), $"{what}: max_attempts '{text}' must be a whole number from 1 to 100");
        return fallback;
    }

    public static bool TryParseDuration(string text, out TimeSpan duration)
    {
        text = text.Trim();
        var (digits, unit) = text.EndsWith("ms", StringComparison.Ordinal) ? (text[..^2], 1.0)
            : text.EndsWith('s') ? (text[..^1], 1000.0)
            : text.EndsWith('m') ? (text[..^1], 60_000.0)
            : (text, 1.0);
        if (double.TryParse(digits, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && double.IsFinite(value))
        {
            duration = TimeSpan.FromMilliseconds(value * unit);
            return true;
        }

        duration = default;
        return false;
    }

    private static void CheckKeys(YamlMappingNode map, HashSet<string> allowed, string what, Action<YamlNode?, string> error)
    {
        foreach (var key in map.Children.Keys)
        {
            var name = (key as YamlScalarNode)?.Value ?? string.Empty;
            if (!allowed.Contains(name))
            {
                error(key, $"{what}: unknown key '{name}' (allowed: {string.Join(", ", allowed)})");
            }
        }
    }

    private static YamlNode? Child(YamlMappingNode map, string key) =>
        map.Children.TryGetValue(new YamlScalarNode(key), out var value) ? value : null;

    private static string? Scalar(YamlMappingNode map, string key) => (Child(map, key) as YamlScalarNode)?.Value;

    private static bool IsName(string name) => name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_');
}
