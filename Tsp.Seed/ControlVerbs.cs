using System.Globalization;
using System.Text;
using Grpc.Core;
using Grpc.Net.Client;
using Tsp.Actors.Protocol;
using Tsp.ServiceDefaults;

namespace Tsp.Seed;

/// <summary>The operator's verbs over the gateway's TspControl service: <c>inspect</c>, <c>cancel</c>,
/// <c>deadletters</c>, <c>pause</c>, <c>resume</c>. Each prints one line per thing it acted on (a run
/// line starts with its run id); a refused call prints <c>error: CODE: why</c> and exits with
/// <see cref="ExitCodes.RemoteError"/>.</summary>
internal static class ControlVerbs
{
    public static Task<int> InspectAsync(Uri url, string? token, string project, string? runId, string? source, int limit) =>
        CallAsync(url, token, async (client, headers) =>
        {
            if (runId is not null)
            {
                var run = await client.GetRunAsync(new GetRunRequest { Project = project, RunId = runId }, headers);
                Console.WriteLine(DescribeRun(run));
                foreach (var node in run.Nodes)
                {
                    Console.WriteLine($"  {DescribeNode(node)}");
                }

                return ExitCodes.Ok;
            }

            var reply = await client.ListRunsAsync(new ListRunsRequest { Project = project, SourceId = source ?? "", Limit = limit }, headers);
            foreach (var run in reply.Runs)
            {
                Console.WriteLine($"{DescribeRun(run)} nodes: {string.Join(' ', run.Nodes.Select(DescribeNode))}");
            }

            await Console.Error.WriteLineAsync($"{reply.Runs.Count} unfinished run(s){(reply.Truncated ? " shown; more match" : "")}{(reply.UnansweredHosts.Count > 0 ? $"; run hosts that did not answer: {string.Join(',', reply.UnansweredHosts)}" : "")}");
            return ExitCodes.Ok;
        });

    public static Task<int> CancelAsync(Uri url, string? token, string project, string? runId, bool all, string? source, string? reason) =>
        CallAsync(url, token, async (client, headers) =>
        {
            var reply = await client.CancelRunsAsync(new CancelRunsRequest { Project = project, RunId = runId ?? "", All = all, SourceId = source ?? "", Reason = reason ?? "" }, headers);
            foreach (var run in reply.Runs)
            {
                Console.WriteLine($"{run.RunId} {Name(run.Outcome)}{(run.Detail.Length > 0 ? $": {run.Detail}" : "")}");
            }

            if (reply.UnansweredHosts.Count > 0)
            {
                await Console.Error.WriteLineAsync($"run hosts that did not answer (their runs are not cancelled): {string.Join(',', reply.UnansweredHosts)}");
                return ExitCodes.Failed;
            }

            await Console.Error.WriteLineAsync($"{reply.Runs.Count(r => r.Outcome == CancelOutcome.Cancelled)} run(s) cancelled");
            // One run named: it is an error that it could not be cancelled (the line says why).
            return runId is not null && reply.Runs.All(r => r.Outcome != CancelOutcome.Cancelled) ? ExitCodes.Failed : ExitCodes.Ok;
        });

    public static Task<int> DeadLettersAsync(Uri url, string? token, string project, string? redrive, int limit) =>
        CallAsync(url, token, async (client, headers) =>
        {
            if (redrive is not null)
            {
                var reply = await client.RedriveDeadLettersAsync(new RedriveRequest { Project = project, Select = redrive }, headers);
                foreach (var redriven in reply.Redriven)
                {
                    Console.WriteLine(redriven.RunId.Length > 0
                        ? $"{redriven.DeadLetterId} redriven as {redriven.RunId} ({Name(redriven.Outcome)})"
                        : $"{redriven.DeadLetterId} not redriven: {redriven.Detail}");
                }

                return reply.Redriven.Any(r => r.RunId.Length > 0) ? ExitCodes.Ok : ExitCodes.Failed;
            }

            var list = await client.ListDeadLettersAsync(new ListDeadLettersRequest { Project = project, Limit = limit }, headers);
            foreach (var dead in list.DeadLetters)
            {
                var at = DateTimeOffset.FromUnixTimeMilliseconds(dead.AtUnixMs).ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture);
                Console.WriteLine($"{dead.Id} {at} {dead.Origin} {dead.Reference}{(dead.NodeId.Length > 0 ? $" node={dead.NodeId}" : "")}{(dead.SourceId.Length > 0 ? $" source={dead.SourceId}" : "")}{(dead.FrameKey.Length > 0 ? " redrivable" : "")}: {dead.Reason}");
            }

            return ExitCodes.Ok;
        });

    public static Task<int> PauseAsync(Uri url, string? token, string project, bool paused, string? reason) =>
        CallAsync(url, token, async (client, headers) =>
        {
            var request = new ProjectControlRequest { Project = project, Reason = reason ?? "" };
            var state = paused ? await client.PauseProjectAsync(request, headers) : await client.ResumeProjectAsync(request, headers);
            var since = DateTimeOffset.FromUnixTimeMilliseconds(state.ChangedAtUnixMs).ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture);
            Console.WriteLine($"{state.Project} {(state.Paused ? "paused" : "consuming")} since {since} by {state.ChangedBy}{(state.Reason.Length > 0 ? $": {state.Reason}" : "")}");
            return ExitCodes.Ok;
        });

    public static Task<int> DeployAsync(Uri url, string? token, string file) =>
        CallAsync(url, token, async (client, headers) =>
        {
            string yaml;
            try
            {
                yaml = await File.ReadAllTextAsync(file);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                await Console.Error.WriteLineAsync($"error: cannot read the workflow file '{file}': {e.Message}");
                return ExitCodes.Usage;
            }

            var reply = await client.DeployWorkflowAsync(new DeployWorkflowRequest { Yaml = yaml, Source = file }, headers);
            Console.WriteLine(reply.Unchanged
                ? $"{reply.Project} version {reply.WorkflowHash} is deployed already"
                : $"{reply.Project} deployed version {reply.WorkflowHash} ({reply.Nodes} nodes){(reply.PreviousHash.Length > 0 ? $", replacing {reply.PreviousHash}; its runs in flight finish on it" : ", a new project")}");
            return ExitCodes.Ok;
        });

    public static Task<int> RemoveAsync(Uri url, string? token, string project) =>
        CallAsync(url, token, async (client, headers) =>
        {
            var reply = await client.RemoveProjectAsync(new ProjectControlRequest { Project = project }, headers);
            Console.WriteLine($"{reply.Project} removed (was version {reply.PreviousHash}): no new runs; its runs in flight finish");
            return ExitCodes.Ok;
        });

    /// <param name="load">NAME or NAME:VERSION to load (a version pins it).</param>
    /// <param name="unload">NAME or NAME:VERSION to unload.</param>
    public static Task<int> ModelsAsync(Uri url, string? token, string? load, string? unload, bool stats) =>
        CallAsync(url, token, async (client, headers) =>
        {
            if (stats)
            {
                var reply = await client.GetModelStatsAsync(new ListModelsRequest(), headers);
                Console.WriteLine($"{"model:version",-32} {"inferences",11} {"batches",9} {"rows/batch",10} {"failures",9} {"queue ms",9} {"compute ms",10}");
                foreach (var m in reply.Models)
                {
                    var perBatch = m.Batches > 0 ? (double)m.Rows / m.Batches : 0;
                    var queue = m.Inferences > 0 ? m.QueueSeconds * 1000 / m.Inferences : 0;
                    var compute = m.Batches > 0 ? m.ComputeSeconds * 1000 / m.Batches : 0;
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{$"{m.Model}:{m.Version}",-32} {m.Inferences,11} {m.Batches,9} {perBatch,10:0.0} {m.Failures,9} {queue,9:0.00} {compute,10:0.00}"));
                }

                foreach (var m in reply.Models)
                {
                    foreach (var s in m.Served)
                    {
                        var costs = string.Join(' ', s.BatchCosts.Select(c => string.Create(CultureInfo.InvariantCulture, $"{c.Rows}={c.MsPerRow:0.000}({c.Samples})")));
                        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                            $"batching {m.Model}:{m.Version} on {s.Member} ({s.Provider}): batch_limit={s.BatchLimit} delay_ms={s.BatchDelayMs:0.#} {(s.AdaptiveBatching ? "adaptive" : "fixed")}{(costs.Length > 0 ? $"; ms/row by batch size (batches): {costs}" : "")}"));
                    }
                }

                await Unanswered(reply.Unanswered);
                return ExitCodes.Ok;
            }

            if ((load ?? unload) is { } target)
            {
                var colon = target.LastIndexOf(':');
                var name = colon < 0 ? target : target[..colon];
                var version = 0;
                if (colon >= 0 && !int.TryParse(target[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out version))
                {
                    await Console.Error.WriteLineAsync($"error: '{target}' is not NAME or NAME:VERSION (a whole number)");
                    return ExitCodes.Usage;
                }

                var request = new ModelControlRequest { Model = name, Version = version };
                var rule = load is not null ? await client.LoadModelAsync(request, headers) : await client.UnloadModelAsync(request, headers);
                Console.WriteLine($"{rule.Model} {(rule.Unloaded ? "unloaded" : rule.PinnedVersion > 0 ? $"pinned to version {rule.PinnedVersion}" : "loaded (repository policy)")} by {rule.ChangedBy}");
            }

            var index = await client.ListModelsAsync(new ListModelsRequest(), headers);
            foreach (var v in index.Versions)
            {
                Console.WriteLine($"{v.Model}:{v.Version} {Name(v.State)}{(v.Provider.Length > 0 ? $" {v.Provider}" : "")} on {v.Member}{(v.Reason.Length > 0 ? $": {v.Reason}" : "")}");
            }

            foreach (var rule in index.Rules)
            {
                Console.WriteLine($"rule {rule.Model}: {(rule.Unloaded ? "unloaded" : rule.PinnedVersion > 0 ? $"version {rule.PinnedVersion} pinned" : "repository policy")} (by {rule.ChangedBy})");
            }

            await Unanswered(index.Unanswered);
            return ExitCodes.Ok;
        });

    private static async Task Unanswered(Google.Protobuf.Collections.RepeatedField<string> members)
    {
        if (members.Count > 0)
        {
            await Console.Error.WriteLineAsync($"members that did not answer: {string.Join(", ", members)}");
        }
    }

    public static string DescribeRun(RunSummary run)
    {
        var line = new StringBuilder(run.RunId).Append(' ').Append(Name(run.Stage));
        if (run.Stage == RunStage.Finished)
        {
            line.Append(' ').Append(Name(run.Status));
        }

        line.Append(" accepted=").Append(DateTimeOffset.FromUnixTimeMilliseconds(run.AcceptedAtUnixMs).ToString("HH:mm:ss.fff", CultureInfo.InvariantCulture));
        if (run.SourceId.Length > 0)
        {
            line.Append(" source=").Append(run.SourceId);
        }

        if (run.HostId.Length > 0)
        {
            line.Append(" host=").Append(run.HostId).Append('@').Append(run.Orchestrator);
        }

        return line.ToString();
    }

    public static string DescribeNode(NodeProgress node) => node.Stage switch
    {
        // Running on a worker (celery's "active"), or waiting in its queue for a slot ("reserved").
        NodeStage.Dispatched when node.Worker.Length > 0 => $"{node.NodeId}=running({node.Queue}, {node.Worker}, {Math.Max(0, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - node.AtUnixMs)} ms)",
        NodeStage.Dispatched => $"{node.NodeId}=queued({node.Queue}, {Math.Max(0, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - node.AtUnixMs)} ms)",
        NodeStage.Completed => $"{node.NodeId}=completed({node.Worker}, {node.DurationUs / 1000.0:0.#} ms{(node.Attempts > 1 ? $", {node.Attempts} attempts" : "")})",
        NodeStage.Failed => $"{node.NodeId}=failed({node.Error})",
        _ => $"{node.NodeId}={Name(node.Stage)}",
    };

    /// <summary>An enum value as its proto name without the prefix, lower case: RUN_STAGE_QUEUED → queued.</summary>
    private static string Name<T>(T value)
        where T : struct, Enum
    {
        var original = typeof(T).GetField(value.ToString())?.GetCustomAttributes(typeof(Google.Protobuf.Reflection.OriginalNameAttribute), false)
            .OfType<Google.Protobuf.Reflection.OriginalNameAttribute>().FirstOrDefault()?.Name ?? value.ToString();
        var prefix = string.Concat(typeof(T).Name.Select((c, i) => i > 0 && char.IsUpper(c) ? $"_{c}" : c.ToString())).ToUpperInvariant() + "_";
        return (original.StartsWith(prefix, StringComparison.Ordinal) ? original[prefix.Length..] : original).ToLowerInvariant();
    }

    private static async Task<int> CallAsync(Uri url, string? token, Func<TspControl.TspControlClient, Metadata?, Task<int>> call)
    {
        using var channel = GrpcChannel.ForAddress(url);
        var headers = token is not null ? new Metadata { { "authorization", $"Bearer {token}" } } : null;
        try
        {
            return await call(new TspControl.TspControlClient(channel), headers);
        }
        catch (RpcException e)
        {
            await Console.Error.WriteLineAsync($"error: {e.StatusCode}: {e.Status.Detail}");
            return ExitCodes.RemoteError;
        }
    }
}
