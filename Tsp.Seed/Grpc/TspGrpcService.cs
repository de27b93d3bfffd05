using Akka.Actor;
using Status = Grpc.Core.Status;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Tsp.Actors.Hosting;
using Tsp.Actors.Ingest;
using Tsp.Actors.Northbound;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Actors.Workflows;

namespace Tsp.Seed.Grpc;

/// <summary>The TSP gRPC service (contract: protos/tp.proto, <c>TspService</c>).</summary>
internal sealed class TspGrpcService(
    TspOptions options,
    WorkflowCatalog catalog,
    RedisStore store,
    RunSubmitter submitter,
    RateLimits rateLimits,
    ActorSystem system,
    ILogger<TspGrpcService> log) : TspService.TspServiceBase
{
    public const string ResumeTrailer = "tsp-resume-from";
    public const string FromHeader = "tsp-from";
    public const string RetryAfterTrailer = "retry-after-ms";

    public override async Task Subscribe(SubscribeRequest request, IServerStreamWriter<TpResult> responseStream, ServerCallContext context)
    {
        if (request.Projects.Count == 0)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "name at least one project in 'projects'"));
        }

        var projects = request.Projects.Distinct(StringComparer.Ordinal).ToList();
        foreach (var project in projects)
        {
            Known(project, context);
        }

        IReadOnlyDictionary<string, long?> starts;
        try
        {
            starts = FeedStart.Parse(request.From, projects);
        }
        catch (FormatException e)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, e.Message));
        }

        await using var feed = await ResultFeed.OpenAsync(system, store, starts, options.SubscriberBuffer, options.AskTimeout);
        await context.WriteResponseHeadersAsync(new Metadata { { FromHeader, feed.ResumeFrom } });
        try
        {
            await foreach (var result in feed.ReadAllAsync(context.CancellationToken))
            {
                await responseStream.WriteAsync(result);
            }
        }
        catch (SubscriberOverflowException e)
        {
            log.LogWarning("subscriber {Peer} to {Projects} cut off: {Reason}", context.Peer, string.Join(",", projects), e.Message);
            throw new RpcException(new Status(StatusCode.ResourceExhausted, e.Message), new Metadata { { ResumeTrailer, e.ResumeFrom } });
        }
        catch (ResultsLogResetException e)
        {
            log.LogWarning("subscriber {Peer} to {Projects} ended: {Reason}", context.Peer, string.Join(",", projects), e.Message);
            throw new RpcException(new Status(StatusCode.DataLoss, e.Message), new Metadata { { ResumeTrailer, e.ResumeFrom } });
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
            // The subscriber went away.
        }
    }

    public override async Task<SubmitReply> Submit(SubmitRequest request, ServerCallContext context)
    {
        var frame = request.Frame ?? throw new RpcException(new Status(StatusCode.InvalidArgument, "'frame' is missing"));
        var workflow = Known(frame.Project, context);
        if (!rateLimits.TryAcquire(frame.Project, 1, out var wait))
        {
            throw new RpcException(
                new Status(StatusCode.ResourceExhausted, string.Create(System.Globalization.CultureInfo.InvariantCulture, $"project '{frame.Project}' accepts at most {workflow.Scheduling.RateLimit:0.###} frames/s (scheduling.rate_limit); retry in {wait.TotalMilliseconds:0} ms")),
                new Metadata { { RetryAfterTrailer, wait.TotalMilliseconds.ToString("0", System.Globalization.CultureInfo.InvariantCulture) } });
        }

        if (frame.Data.Length > submitter.MaxFrameBytes)
        {
            throw new RpcException(new Status(StatusCode.ResourceExhausted,
                $"frame of {frame.Data.Length} bytes exceeds the maximum of {submitter.MaxFrameBytes} bytes (Tsp:MaxFrameBytes)"));
        }

        RunAccepted accepted;
        try
        {
            accepted = await submitter.SubmitAsync(frame, request.RunId is { Length: > 0 } id ? id : null, context.CancellationToken);
        }
        catch (AskTimeoutException)
        {
            throw new RpcException(new Status(StatusCode.Unavailable, $"the run was not confirmed durable within {options.AskTimeout.TotalSeconds:0.#} s; submit again with the same run_id"));
        }

        return accepted.Outcome == StartOutcome.Rejected
            ? throw new RpcException(new Status(StatusCode.InvalidArgument, accepted.Error))
            : new SubmitReply { RunId = accepted.RunId, Outcome = accepted.Outcome };
    }

    public override async Task<GetResultReply> GetResult(GetResultRequest request, ServerCallContext context)
    {
        Known(request.Project, context);
        if (string.IsNullOrWhiteSpace(request.RunId))
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "'run_id' is missing"));
        }

        if (await store.GetResultAsync(request.Project, request.RunId) is { } result)
        {
            return new GetResultReply { Phase = RunPhase.Finished, Result = result };
        }

        return await submitter.IsKnownAsync(request.RunId, context.CancellationToken)
            ? new GetResultReply { Phase = RunPhase.Running }
            : throw new RpcException(new Status(StatusCode.NotFound,
                $"run '{request.RunId}' is not known in project '{request.Project}' (never submitted, or its data expired)"));
    }

    public override async Task<ListProjectsReply> ListProjects(ListProjectsRequest request, ServerCallContext context)
    {
        var reply = new ListProjectsReply();
        foreach (var project in catalog.Projects.Where(p => ProjectAccess.Allows(context, p)))
        {
            catalog.TryGet(project, out var workflow);
            reply.Projects.Add(new ProjectInfo
            {
                Name = project,
                WorkflowHash = workflow.Hash,
                Nodes = workflow.Nodes.Count,
                LatestPosition = await store.LatestPositionAsync(project),
            });
        }

        return reply;
    }

    public override Task<GetWorkflowReply> GetWorkflow(GetWorkflowRequest request, ServerCallContext context)
    {
        var workflow = Known(request.Project, context);
        var reply = new GetWorkflowReply { Project = workflow.Project, WorkflowHash = workflow.Hash, Yaml = workflow.Yaml };
        foreach (var node in workflow.Nodes)
        {
            var described = new WorkflowNode { Id = node.Id, Processor = node.Processor, Role = node.Role, Queue = node.Queue, When = node.When?.Text ?? "" };
            described.After.AddRange(node.After);
            foreach (var (name, value) in node.Parameters)
            {
                described.Parameters[name] = value;
            }

            reply.Nodes.Add(described);
        }

        return Task.FromResult(reply);
    }

    /// <exception cref="RpcException">INVALID_ARGUMENT, NOT_FOUND or PERMISSION_DENIED, naming the project.</exception>
    private WorkflowDefinition Known(string project, ServerCallContext context)
    {
        if (string.IsNullOrWhiteSpace(project))
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "'project' is missing"));
        }

        // Permission first: a token must not learn which projects exist beyond its own.
        ProjectAccess.Demand(context, project);
        if (catalog.TryGet(project, out var workflow))
        {
            return workflow;
        }

        var visible = string.Join(", ", catalog.Projects.Where(p => ProjectAccess.Allows(context, p)));
        throw new RpcException(new Status(StatusCode.NotFound, $"unknown project '{project}' (deployed: {(visible.Length > 0 ? visible : "none")})"));
    }
}
