using Grpc.Core;
using Microsoft.Extensions.Logging;
using Tsp.Actors.Control;
using Tsp.Actors.Protocol;
using Status = Grpc.Core.Status;

namespace Tsp.Seed.Grpc;

/// <summary>The control service (contract: protos/tp.proto, <c>TspControl</c>): every call needs a
/// token that may control the project (<see cref="ProjectAccess.DemandControl"/>); the work is
/// <see cref="RunControl"/>'s.</summary>
internal sealed class TspControlService(RunControl control, ILogger<TspControlService> log) : TspControl.TspControlBase
{
    public override Task<ListRunsReply> ListRuns(ListRunsRequest request, ServerCallContext context) =>
        RunAsync(request.Project, context, () =>
        {
            if (request.Limit < 0)
            {
                throw new ControlRefusedException(ControlRefusalKind.InvalidArgument, $"'limit' must be 0 (the default, {RunControl.MaxListedRuns}) or more, not {request.Limit}");
            }

            return control.ListRunsAsync(request.Project, request.SourceId, request.Limit);
        });

    public override Task<RunSummary> GetRun(GetRunRequest request, ServerCallContext context) =>
        RunAsync(request.Project, context, () => control.GetRunAsync(request.Project, Required(request.RunId, "run_id")));

    public override Task<CancelRunsReply> CancelRuns(CancelRunsRequest request, ServerCallContext context) =>
        RunAsync(request.Project, context, async () =>
        {
            var who = ProjectAccess.Caller(context);
            var reply = await control.CancelAsync(request, who);
            log.LogInformation("{Who} cancelled {Count} run(s) of {Project} ({Selection})", who, reply.Runs.Count(r => r.Outcome == CancelOutcome.Cancelled), request.Project,
                request.RunId.Length > 0 ? $"run {request.RunId}" : request.All ? "all" : $"source {request.SourceId}");
            return reply;
        });

    public override Task<ListDeadLettersReply> ListDeadLetters(ListDeadLettersRequest request, ServerCallContext context) =>
        RunAsync(request.Project, context, async () =>
        {
            var reply = new ListDeadLettersReply();
            reply.DeadLetters.Add(await control.ListDeadLettersAsync(request.Project, request.Limit));
            return reply;
        });

    public override Task<RedriveReply> RedriveDeadLetters(RedriveRequest request, ServerCallContext context) =>
        RunAsync(request.Project, context, () =>
        {
            DeadLetterSelection selection;
            try
            {
                selection = DeadLetterSelection.Parse(Required(request.Select, "select"));
            }
            catch (FormatException e)
            {
                throw new ControlRefusedException(ControlRefusalKind.InvalidArgument, $"'select': {e.Message}");
            }

            return control.RedriveAsync(request.Project, selection);
        });

    public override Task<ProjectControlState> PauseProject(ProjectControlRequest request, ServerCallContext context) =>
        RunAsync(request.Project, context, () => control.SetPausedAsync(request.Project, paused: true, ProjectAccess.Caller(context), request.Reason));

    public override Task<ProjectControlState> ResumeProject(ProjectControlRequest request, ServerCallContext context) =>
        RunAsync(request.Project, context, () => control.SetPausedAsync(request.Project, paused: false, ProjectAccess.Caller(context), request.Reason));

    public override Task<ProjectControlState> GetProjectControl(ProjectControlRequest request, ServerCallContext context) =>
        RunAsync(request.Project, context, () => control.GetProjectControlAsync(request.Project));

    public override async Task<DeployWorkflowReply> DeployWorkflow(DeployWorkflowRequest request, ServerCallContext context)
    {
        var source = string.IsNullOrWhiteSpace(request.Source) ? "deployed workflow" : request.Source;
        if (string.IsNullOrWhiteSpace(request.Yaml))
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "'yaml' is missing: send the workflow file's text"));
        }

        Tsp.Actors.Workflows.WorkflowDefinition workflow;
        try
        {
            workflow = control.Validate(request.Yaml, source);
        }
        catch (Tsp.Actors.Workflows.WorkflowValidationException e)
        {
            // The deployed version stays; the caller gets every error with its line.
            throw new RpcException(new Status(StatusCode.InvalidArgument, e.Message));
        }

        ProjectAccess.DemandControl(context, workflow.Project);
        var who = ProjectAccess.Caller(context);
        var reply = await Guarded(workflow.Project, () => control.DeployAsync(workflow, request.Yaml, who));
        log.LogInformation("{Who} deployed workflow version {Hash} of {Project} (was {Previous})", who, reply.WorkflowHash, reply.Project, reply.PreviousHash.Length > 0 ? reply.PreviousHash : "not deployed");
        return reply;
    }

    public override Task<DeployWorkflowReply> RemoveProject(ProjectControlRequest request, ServerCallContext context) =>
        RunAsync(request.Project, context, async () =>
        {
            var who = ProjectAccess.Caller(context);
            var reply = await control.RemoveAsync(request.Project, who);
            log.LogInformation("{Who} removed project {Project}", who, request.Project);
            return reply;
        });

    public override Task<ModelIndex> ListModels(ListModelsRequest request, ServerCallContext context) =>
        Guarded("", () => control.ListModelsAsync(request.Model));

    public override Task<ModelStatsReply> GetModelStats(ListModelsRequest request, ServerCallContext context) =>
        Guarded("", () => control.ModelStatsAsync(request.Model));

    public override Task<ModelRule> LoadModel(ModelControlRequest request, ServerCallContext context) => ChangeModel(request, unload: false, context);

    public override Task<ModelRule> UnloadModel(ModelControlRequest request, ServerCallContext context) => ChangeModel(request, unload: true, context);

    private async Task<ModelRule> ChangeModel(ModelControlRequest request, bool unload, ServerCallContext context)
    {
        var model = request.Model;
        if (string.IsNullOrWhiteSpace(model))
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "'model' is missing"));
        }

        if (request.Version < 0)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"'version' must be 0 (the repository's policy) or a version number, not {request.Version}"));
        }

        ProjectAccess.DemandClusterControl(context, $"{(unload ? "unloading" : "loading")} model '{model}'");
        var who = ProjectAccess.Caller(context);
        var rule = await Guarded("", () => control.ChangeModelAsync(model, request.Version, unload, who));
        log.LogInformation("{Who} {Action} model {Model}{Version}", who, unload ? "unloaded" : "loaded", model, request.Version > 0 ? $" version {request.Version}" : "");
        return rule;
    }

    /// <summary>Checks the project and the token, runs the action, and turns its refusals into status codes.</summary>
    private async Task<T> RunAsync<T>(string project, ServerCallContext context, Func<Task<T>> action)
    {
        if (string.IsNullOrWhiteSpace(project))
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "'project' is missing"));
        }

        // Permission first: a token must not learn which projects exist beyond its own.
        ProjectAccess.DemandControl(context, project);
        if (!control.IsDeployed(project))
        {
            throw new RpcException(new Status(StatusCode.NotFound, $"unknown project '{project}'"));
        }

        return await Guarded(project, action);
    }

    /// <summary>Runs an action, turning its refusals into status codes.</summary>
    private static async Task<T> Guarded<T>(string project, Func<Task<T>> action)
    {
        try
        {
            return await action();
        }
        catch (ControlRefusedException e)
        {
            throw new RpcException(new Status(e.Kind switch
            {
                ControlRefusalKind.InvalidArgument => StatusCode.InvalidArgument,
                ControlRefusalKind.NotFound => StatusCode.NotFound,
                _ => StatusCode.Unavailable,
            }, e.Message));
        }
        catch (Akka.Actor.AskTimeoutException)
        {
            throw new RpcException(new Status(StatusCode.Unavailable, $"the cluster did not answer in time (project '{project}'); try again"));
        }
    }

    private static string Required(string value, string field) =>
        string.IsNullOrWhiteSpace(value) ? throw new ControlRefusedException(ControlRefusalKind.InvalidArgument, $"'{field}' is missing") : value;
}
