using Akka.Actor;
using Tsp.Actors.Ingest;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Actors.Workflows;

namespace Tsp.Actors.Control;

/// <summary>Why a control action was refused; the gateway turns it into its status code.</summary>
public enum ControlRefusalKind
{
    InvalidArgument,
    NotFound,
    Unavailable,
}

public sealed class ControlRefusedException(ControlRefusalKind kind, string message) : Exception(message)
{
    public ControlRefusalKind Kind { get; } = kind;
}

/// <summary>
/// What an operator does to runs, dead letters and projects, for the gRPC gateway (TspControl) and
/// anything else that controls a cluster. Runs are asked of their run hosts (by run id, or all hosts
/// of the region for a project's runs), a project's pause of its control entity
/// (<see cref="ProjectControl"/>); dead letters are read from Redis and redriven through the
/// <see cref="RunSubmitter"/> like any submission.
/// </summary>
/// <param name="deployments">The workflow-deployments entity's region.</param>
/// <param name="follower">This orchestrator's <see cref="DeploymentFollower"/> (null when it has none).</param>
public sealed class RunControl(
    WorkflowCatalog catalog,
    RedisStore store,
    RunSubmitter submitter,
    IActorRef runs,
    IActorRef projects,
    IActorRef deployments,
    IActorRef modelRules,
    ActorSystem system,
    Nodes.NodeProcessorRegistry processors,
    Func<IActorRef?> follower,
    int runHosts,
    TimeSpan askTimeout)
{
    /// <summary>The most runs one list returns.</summary>
    public const int MaxListedRuns = 1000;

    /// <summary>The project's unfinished runs, oldest accepted first, from every run host that answers
    /// in time (the others are named).</summary>
    public async Task<ListRunsReply> ListRunsAsync(string project, string sourceId, int limit)
    {
        var max = limit is > 0 and <= MaxListedRuns ? limit : MaxListedRuns;
        var answers = await AskAllHostsAsync<HostRuns>(host => new ListHostRuns { HostId = host, Project = project, SourceId = sourceId, Limit = max });
        var reply = new ListRunsReply();
        var all = answers.Where(a => a.Answer is not null).SelectMany(a => a.Answer!.Runs).OrderBy(r => r.AcceptedAtUnixMs).ThenBy(r => r.RunId, StringComparer.Ordinal).ToList();
        reply.Runs.Add(all.Take(max));
        await PlaceAsync(reply.Runs);
        reply.Truncated = all.Count > max || answers.Any(a => a.Answer?.Truncated == true);
        reply.UnansweredHosts.Add(answers.Where(a => a.Answer is null).Select(a => a.Host));
        return reply;
    }

    /// <summary>One run: from its host while unfinished, from the results log once finished — also
    /// while its host, finishing it, has not yet heard that the log holds its result.</summary>
    /// <exception cref="ControlRefusedException">NotFound: neither knows it in this project.</exception>
    public async Task<RunSummary> GetRunAsync(string project, string runId)
    {
        var summary = await AskRunAsync<RunSummary>(new GetRunSummary { RunId = runId });
        if (summary.Stage != RunStage.Unspecified)
        {
            if (summary.Project != project)
            {
                throw NotARunOf(project, runId);
            }

            if (summary.Stage == RunStage.Finishing && await store.GetResultAsync(project, runId) is { } logged)
            {
                return RunSummaries.Finished(logged);
            }

            await PlaceAsync([summary]);
            return summary;
        }

        return await store.GetResultAsync(project, runId) is { } result
            ? RunSummaries.Finished(result)
            : throw NotARunOf(project, runId);
    }

    /// <summary>Names the worker of each dispatched node that one holds: each orchestrator's queue knows
    /// where the tasks of its runs are (one ask per queue and orchestrator, bounded; a node whose queue
    /// does not answer keeps only its queue).</summary>
    private async Task PlaceAsync(IEnumerable<RunSummary> runs)
    {
        var dispatched = runs.SelectMany(r => r.Nodes.Where(n => n.Stage == NodeStage.Dispatched).Select(n => (Run: r, Node: n)))
            .GroupBy(x => (x.Run.Orchestrator, x.Node.Queue)).ToList();
        var bound = TimeSpan.FromSeconds(Math.Min(3, askTimeout.TotalSeconds));
        await Task.WhenAll(dispatched.Select(async group =>
        {
            var ask = new GetTaskPlacements();
            ask.TaskIds.Add(group.Select(x => Dispatch.NodeTasks.TaskId(x.Run.RunId, x.Node.NodeId)));
            try
            {
                var queue = system.ActorSelection(ActorPath.Parse(group.Key.Orchestrator + "/user/queue-" + group.Key.Queue));
                var placements = await queue.Ask<TaskPlacements>(ask, bound);
                foreach (var (run, node) in group)
                {
                    node.Worker = placements.Workers.GetValueOrDefault(Dispatch.NodeTasks.TaskId(run.RunId, node.NodeId)) ?? "";
                }
            }
            catch (Exception e) when (e is AskTimeoutException or ActorNotFoundException or TaskCanceledException or UriFormatException)
            {
                // Its queue did not answer: the node shows its queue only.
            }
        }));
    }

    /// <summary>Cancels one run, every unfinished run of the project, or those of one source.</summary>
    /// <param name="who">Who asks (kept in the cancelled runs' results).</param>
    public async Task<CancelRunsReply> CancelAsync(CancelRunsRequest request, string who)
    {
        var chosen = (request.RunId.Length > 0 ? 1 : 0) + (request.All ? 1 : 0) + (request.SourceId.Length > 0 ? 1 : 0);
        if (chosen != 1)
        {
            throw new ControlRefusedException(ControlRefusalKind.InvalidArgument, "name exactly one of 'run_id', 'all' or 'source_id'");
        }

        var reason = request.Reason.Length > 0 ? $"cancelled by {who}: {request.Reason}" : $"cancelled by {who}";
        var reply = new CancelRunsReply();
        if (request.RunId.Length > 0)
        {
            var answer = await AskRunAsync<CancelRunReply>(new CancelRun { RunId = request.RunId, Project = request.Project, Reason = reason });
            reply.Runs.Add(await ExplainNotFoundAsync(request.Project, answer));
            return reply;
        }

        var answers = await AskAllHostsAsync<CancelRunsReply>(host => new CancelHostRuns { HostId = host, Project = request.Project, SourceId = request.SourceId, Reason = reason });
        reply.Runs.Add(answers.Where(a => a.Answer is not null).SelectMany(a => a.Answer!.Runs).OrderBy(r => r.RunId, StringComparer.Ordinal));
        reply.UnansweredHosts.Add(answers.Where(a => a.Answer is null).Select(a => a.Host));
        return reply;
    }

    /// <summary>The project's dead letters, newest first.</summary>
    public Task<IReadOnlyList<DeadLetter>> ListDeadLettersAsync(string project, int limit) =>
        store.ReadDeadLettersAsync(project, limit is > 0 ? limit : 100);

    /// <summary>Runs the frames of the selected dead runs again, each as the run
    /// <see cref="Redrives.RunIdFor"/>: a dead letter redriven twice starts one run. A dead letter
    /// without a frame (a Kafka record that never became a run, or a frame past its TTL) is answered
    /// with why, not redriven.</summary>
    /// <exception cref="ControlRefusedException">NotFound: no dead letter of the project is selected.</exception>
    public async Task<RedriveReply> RedriveAsync(string project, DeadLetterSelection selection)
    {
        var selected = (await store.ReadDeadLettersAsync(project, store.Options.DeadLetterRetention))
            .Where(d => selection.Contains(d.Id)).OrderBy(d => d.Id).ToList();
        if (selected.Count == 0)
        {
            throw new ControlRefusedException(ControlRefusalKind.NotFound, $"project '{project}' has no dead letter {Describe(selection)}");
        }

        var reply = new RedriveReply();
        foreach (var dead in selected)
        {
            reply.Redriven.Add(await RedriveAsync(dead));
        }

        return reply;
    }

    private async Task<RedriveOutcome> RedriveAsync(DeadLetter dead)
    {
        var outcome = new RedriveOutcome { DeadLetterId = dead.Id };
        if (dead.Origin != "run" || dead.FrameKey.Length == 0)
        {
            outcome.Detail = $"dead letter {dead.Id} ({dead.Origin} {dead.Reference}) never became a run: there is no frame to run again";
            return outcome;
        }

        if (await store.GetBlobAsync(dead.FrameKey) is not { } frame)
        {
            outcome.Detail = $"dead letter {dead.Id}: the frame of run {dead.Reference} is no longer kept (Storage:DeadFrameTtl {store.Options.DeadFrameTtl})";
            return outcome;
        }

        var runId = Redrives.RunIdFor(dead.Reference, dead.Id);
        await store.NoteRedrivenAsync(dead.Project, runId, dead);
        var accepted = await submitter.SubmitAsync(new Frame { Project = dead.Project, SourceId = dead.SourceId, Data = Google.Protobuf.ByteString.CopyFrom(frame) }, runId);
        outcome.RunId = accepted.RunId;
        outcome.Outcome = accepted.Outcome;
        outcome.Detail = accepted.Error;
        return outcome;
    }

    /// <summary>Pauses or resumes the project's ingest, durably.</summary>
    public Task<ProjectControlState> SetPausedAsync(string project, bool paused, string who, string reason) =>
        projects.Ask<ProjectControlState>(new ChangeProjectControl { Project = project, Paused = paused, ChangedBy = who, Reason = reason }, askTimeout);

    public Task<ProjectControlState> GetProjectControlAsync(string project) =>
        projects.Ask<ProjectControlState>(new GetProjectControlState { Project = project }, askTimeout);

    public bool IsDeployed(string project) => catalog.TryGet(project, out _);

    /// <summary>Validates a workflow as every orchestrator will (its processors and contracts).</summary>
    /// <exception cref="WorkflowValidationException">Each error with the source and line.</exception>
    public WorkflowDefinition Validate(string yaml, string source)
    {
        var workflow = WorkflowLoader.Parse(yaml, source, processors.Names);
        WorkflowContracts.Check(workflow, processors);
        return workflow;
    }

    /// <summary>Deploys a validated workflow as its project's new version, durably and on every
    /// orchestrator; answers once this orchestrator takes new runs on it.</summary>
    public async Task<DeployWorkflowReply> DeployAsync(WorkflowDefinition workflow, string yaml, string who)
    {
        var previous = catalog.TryGet(workflow.Project, out var before) ? before.Hash : "";
        var version = new WorkflowVersion
        {
            Hash = workflow.Hash,
            Yaml = yaml,
            Source = workflow.Source,
            DeployedAtUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
            DeployedBy = who,
        };
        var state = await deployments.Ask<Deployments>(new DeployVersion { Project = workflow.Project, Version = version }, askTimeout);
        await ApplyHereAsync(state);
        return new DeployWorkflowReply
        {
            Project = workflow.Project,
            WorkflowHash = workflow.Hash,
            PreviousHash = previous,
            Nodes = workflow.Nodes.Count,
            Unchanged = previous == workflow.Hash,
        };
    }

    /// <summary>Removes a project: no new runs anywhere, durably; its runs in flight finish.</summary>
    public async Task<DeployWorkflowReply> RemoveAsync(string project, string who)
    {
        var previous = catalog.TryGet(project, out var before) ? before.Hash : "";
        var state = await deployments.Ask<Deployments>(new RemoveDeployedProject { Project = project, RemovedBy = who }, askTimeout);
        await ApplyHereAsync(state);
        return new DeployWorkflowReply { Project = project, PreviousHash = previous };
    }

    /// <summary>Every model version on every member that serves models, with its state, and the rules.</summary>
    public async Task<ModelIndex> ListModelsAsync(string model)
    {
        var index = new ModelIndex();
        var answers = await AskModelMembersAsync<MemberModelIndex>(new GetModelIndex());
        index.Versions.Add(answers.Where(a => a.Answer is not null).SelectMany(a => a.Answer!.Versions)
            .Where(v => model.Length == 0 || v.Model == model)
            .OrderBy(v => v.Model, StringComparer.Ordinal).ThenBy(v => v.Version).ThenBy(v => v.Member, StringComparer.Ordinal));
        index.Unanswered.Add(answers.Where(a => a.Answer is null).Select(a => a.Member));
        var rules = await modelRules.Ask<ModelRules>(new GetModelRules(), askTimeout);
        index.Rules.Add(rules.Models.Where(r => model.Length == 0 || r.Model == model));
        return index;
    }

    /// <summary>Loads (optionally pinning a version) or unloads a model on every member, durably.</summary>
    /// <exception cref="ControlRefusedException">NotFound: no member's repository has the model or version.</exception>
    public async Task<ModelRule> ChangeModelAsync(string model, int version, bool unload, string who)
    {
        var index = await ListModelsAsync(model);
        var versions = index.Versions.Where(v => v.Version > 0).Select(v => v.Version).Distinct().Order().ToList();
        if (index.Versions.Count == 0)
        {
            throw new ControlRefusedException(ControlRefusalKind.NotFound, $"model '{model}' is in no repository of a member that serves models{(index.Unanswered.Count > 0 ? $" (members that did not answer: {string.Join(", ", index.Unanswered)})" : "")}");
        }

        if (version > 0 && !versions.Contains(version))
        {
            throw new ControlRefusedException(ControlRefusalKind.NotFound, $"model '{model}' has no version {version} (versions: {(versions.Count > 0 ? string.Join(", ", versions) : "none")})");
        }

        if (unload && version > 0 && !index.Versions.Any(v => v.Version == version && v.State == ModelVersionState.Ready))
        {
            throw new ControlRefusedException(ControlRefusalKind.NotFound, $"version {version} of model '{model}' is not loaded on any member; nothing to unload");
        }

        var current = index.Rules.FirstOrDefault();
        var rule = new ModelRule
        {
            Model = model,
            Unloaded = unload,
            // Unloading keeps the pin, so loading again serves the same version.
            PinnedVersion = unload ? current?.PinnedVersion ?? 0 : version,
            ChangedBy = who,
        };
        return await modelRules.Ask<ModelRule>(new ChangeModelRule { Rule = rule }, askTimeout);
    }

    /// <summary>Per model version, summed over every member that answers.</summary>
    public async Task<ModelStatsReply> ModelStatsAsync(string model)
    {
        var answers = await AskModelMembersAsync<MemberStats>(new GetMemberStats());
        var reply = new ModelStatsReply();
        var answered = answers.Where(a => a.Answer is not null).Select(a => a.Answer!).ToList();
        var served = answered.SelectMany(a => a.Served).Where(s => model.Length == 0 || s.Model == model).ToList();
        // A version served but not yet asked anything is listed too, with its batching.
        var idle = served.Select(s => new ModelStats { Model = s.Model, Version = s.Version.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        reply.Models.Add(answered.SelectMany(a => a.Models).Concat(idle)
            .Where(m => model.Length == 0 || m.Model == model)
            .GroupBy(m => (m.Model, m.Version))
            .OrderBy(g => g.Key.Model, StringComparer.Ordinal).ThenBy(g => g.Key.Version, StringComparer.Ordinal)
            .Select(g => new ModelStats
            {
                Model = g.Key.Model,
                Version = g.Key.Version,
                Inferences = g.Sum(m => m.Inferences),
                Batches = g.Sum(m => m.Batches),
                Rows = g.Sum(m => m.Rows),
                Failures = g.Sum(m => m.Failures),
                QueueSeconds = g.Sum(m => m.QueueSeconds),
                ComputeSeconds = g.Sum(m => m.ComputeSeconds),
                Served =
                {
                    served.Where(s => s.Model == g.Key.Model && s.Version.ToString(System.Globalization.CultureInfo.InvariantCulture) == g.Key.Version)
                        .OrderBy(s => s.Member, StringComparer.Ordinal),
                },
            }));
        reply.Unanswered.Add(answers.Where(a => a.Answer is null).Select(a => a.Member));
        return reply;
    }

    /// <summary>Asks every Up member with a node role (its /user/tsp-member-stats), a few seconds each.</summary>
    private async Task<(string Member, T? Answer)[]> AskModelMembersAsync<T>(object message)
        where T : class
    {
        var cluster = Akka.Cluster.Cluster.Get(system);
        var bound = TimeSpan.FromSeconds(Math.Min(5, askTimeout.TotalSeconds));
        var members = cluster.State.Members.Where(m => m.Status == Akka.Cluster.MemberStatus.Up && (m.HasRole(NodeRoles.Gpu) || m.HasRole(NodeRoles.Cpu)));
        return await Task.WhenAll(members.Select(async m =>
        {
            try
            {
                return (m.Address.ToString(), await system.ActorSelection(new RootActorPath(m.Address) / "user" / "tsp-member-stats").Ask<T>(message, bound));
            }
            catch (Exception e) when (e is AskTimeoutException or ActorNotFoundException or TaskCanceledException)
            {
                return (m.Address.ToString(), (T?)null);
            }
        }));
    }

    private async Task ApplyHereAsync(Deployments state)
    {
        if (follower() is { } here)
        {
            await here.Ask<Akka.Done>(new DeploymentFollower.ApplyDeployments(state), askTimeout);
        }
    }

    /// <summary>A run the host does not hold may have finished long ago: the results log says so.</summary>
    private async Task<CancelRunReply> ExplainNotFoundAsync(string project, CancelRunReply answer)
    {
        if (answer.Outcome != CancelOutcome.NotFound || await store.GetResultAsync(project, answer.RunId) is not { } result)
        {
            return answer;
        }

        answer.Outcome = CancelOutcome.AlreadyFinished;
        answer.Detail = $"run '{answer.RunId}' has finished ({result.Status.ToString().ToLowerInvariant()}, position {result.Position}); its result stands";
        return answer;
    }

    private async Task<T> AskRunAsync<T>(IRunMessage message)
    {
        try
        {
            return await runs.Ask<T>(message, askTimeout);
        }
        catch (AskTimeoutException)
        {
            throw new ControlRefusedException(ControlRefusalKind.Unavailable, $"the host of run '{message.RunId}' did not answer within {askTimeout.TotalSeconds:0.#} s");
        }
    }

    private async Task<(string Host, T? Answer)[]> AskAllHostsAsync<T>(Func<string, object> message)
        where T : class
    {
        var asks = RunMessageExtractor.AllHosts(runHosts).Select(async host =>
        {
            try
            {
                return (host, await runs.Ask<T>(message(host), askTimeout));
            }
            catch (AskTimeoutException)
            {
                return (host, (T?)null);
            }
        });
        return await Task.WhenAll(asks);
    }

    private static ControlRefusedException NotARunOf(string project, string runId) =>
        new(ControlRefusalKind.NotFound, $"run '{runId}' is not known in project '{project}' (never submitted, another project's, or its result expired)");

    private static string Describe(DeadLetterSelection selection) =>
        selection == DeadLetterSelection.All ? "at all" : selection.From == selection.To ? $"with id {selection.From}" : $"with an id in {selection.From}-{selection.To}";
}
