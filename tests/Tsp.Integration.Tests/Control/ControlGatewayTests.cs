using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Tests.Shared;

namespace Tsp.Integration.Tests.Control;

/// <summary>The TspControl service through the real gateway (TLS, tokens): who may control what, how
/// bad input is answered, and a cancel that races the run's last node.</summary>
public sealed class ControlGatewayTests(GrpcGatewayFixture gateway) : IClassFixture<GrpcGatewayFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private static Metadata Control => GrpcTestClients.Bearer(GrpcGatewayFixture.TokenControlA);

    private static async Task<RpcException> RefusedAsync<T>(AsyncUnaryCall<T> call) => await Assert.ThrowsAsync<RpcException>(() => call.ResponseAsync);

    [Fact]
    public async Task Every_control_call_needs_a_token_that_may_control_the_project()
    {
        using var channel = gateway.Channel();
        var client = new TspControl.TspControlClient(channel);
        var project = gateway.ProjectA;
        Func<Metadata?, Task>[] calls =
        [
            h => client.ListRunsAsync(new ListRunsRequest { Project = project }, h).ResponseAsync,
            h => client.GetRunAsync(new GetRunRequest { Project = project, RunId = "r" }, h).ResponseAsync,
            h => client.CancelRunsAsync(new CancelRunsRequest { Project = project, All = true }, h).ResponseAsync,
            h => client.ListDeadLettersAsync(new ListDeadLettersRequest { Project = project }, h).ResponseAsync,
            h => client.RedriveDeadLettersAsync(new RedriveRequest { Project = project, Select = "all" }, h).ResponseAsync,
            h => client.PauseProjectAsync(new ProjectControlRequest { Project = project }, h).ResponseAsync,
            h => client.ResumeProjectAsync(new ProjectControlRequest { Project = project }, h).ResponseAsync,
            h => client.GetProjectControlAsync(new ProjectControlRequest { Project = project }, h).ResponseAsync,
        ];

        foreach (var call in calls)
        {
            var anonymous = await Assert.ThrowsAsync<RpcException>(() => call(null));
            Assert.Equal(StatusCode.Unauthenticated, anonymous.StatusCode);
            // Read access to every project is not control of any.
            var readOnly = await Assert.ThrowsAsync<RpcException>(() => call(GrpcTestClients.Bearer(GrpcGatewayFixture.TokenAll)));
            Assert.Equal(StatusCode.PermissionDenied, readOnly.StatusCode);
            Assert.Contains("read-only", readOnly.Status.Detail, StringComparison.Ordinal);
            Assert.Contains($"'{project}'", readOnly.Status.Detail, StringComparison.Ordinal);
        }

        // A control token of project A controls nothing of B, and does not learn whether B exists.
        var other = await RefusedAsync(client.PauseProjectAsync(new ProjectControlRequest { Project = gateway.ProjectB }, Control));
        Assert.Equal(StatusCode.PermissionDenied, other.StatusCode);
        Assert.Contains($"may not access project '{gateway.ProjectB}'", other.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Models_serve_every_project_so_changing_one_needs_a_control_token_for_all_projects()
    {
        using var channel = gateway.Channel();
        var client = new TspControl.TspControlClient(channel);

        // Reading the index needs only a token.
        await client.ListModelsAsync(new ListModelsRequest(), GrpcTestClients.Bearer(GrpcGatewayFixture.TokenA));
        foreach (var token in new[] { GrpcGatewayFixture.TokenControlA, GrpcGatewayFixture.TokenAll })
        {
            var refused = await Assert.ThrowsAsync<RpcException>(() => client.LoadModelAsync(new ModelControlRequest { Model = "any" }, GrpcTestClients.Bearer(token)).ResponseAsync);
            Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
            Assert.Contains("loading model 'any' affects every project", refused.Status.Detail, StringComparison.Ordinal);
        }

        var missing = await Assert.ThrowsAsync<RpcException>(() => client.UnloadModelAsync(new ModelControlRequest(), Control).ResponseAsync);
        Assert.Equal((StatusCode.InvalidArgument, "'model' is missing"), (missing.StatusCode, missing.Status.Detail));
        var negative = await Assert.ThrowsAsync<RpcException>(() => client.LoadModelAsync(new ModelControlRequest { Model = "m", Version = -2 }, Control).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, negative.StatusCode);
    }

    [Fact]
    public async Task Bad_input_is_refused_with_its_status_and_what_was_wrong()
    {
        using var channel = gateway.Channel();
        var client = new TspControl.TspControlClient(channel);
        var project = gateway.ProjectA;

        async Task Expect<T>(AsyncUnaryCall<T> call, StatusCode code, string names)
        {
            var refused = await RefusedAsync(call);
            Assert.Equal(code, refused.StatusCode);
            Assert.Contains(names, refused.Status.Detail, StringComparison.Ordinal);
        }

        await Expect(client.ListRunsAsync(new ListRunsRequest(), Control), StatusCode.InvalidArgument, "'project' is missing");
        await Expect(client.ListRunsAsync(new ListRunsRequest { Project = project, Limit = -1 }, Control), StatusCode.InvalidArgument, "'limit'");
        await Expect(client.GetRunAsync(new GetRunRequest { Project = project }, Control), StatusCode.InvalidArgument, "'run_id' is missing");
        await Expect(client.GetRunAsync(new GetRunRequest { Project = project, RunId = "never-submitted" }, Control), StatusCode.NotFound, "run 'never-submitted'");
        await Expect(client.CancelRunsAsync(new CancelRunsRequest { Project = project }, Control), StatusCode.InvalidArgument, "exactly one of 'run_id', 'all' or 'source_id'");
        await Expect(client.CancelRunsAsync(new CancelRunsRequest { Project = project, All = true, SourceId = "cam" }, Control), StatusCode.InvalidArgument, "exactly one");
        await Expect(client.RedriveDeadLettersAsync(new RedriveRequest { Project = project }, Control), StatusCode.InvalidArgument, "'select' is missing");
        await Expect(client.RedriveDeadLettersAsync(new RedriveRequest { Project = project, Select = "3-1" }, Control), StatusCode.InvalidArgument, "'3-1' is not a dead-letter selection");
        await Expect(client.RedriveDeadLettersAsync(new RedriveRequest { Project = project, Select = "999999" }, Control), StatusCode.NotFound, "no dead letter with id 999999");

        await Expect(client.DeployWorkflowAsync(new DeployWorkflowRequest(), Control), StatusCode.InvalidArgument, "'yaml' is missing");
        await Expect(client.DeployWorkflowAsync(new DeployWorkflowRequest { Yaml = "project: [", Source = "broken.yaml" }, Control), StatusCode.InvalidArgument, "broken.yaml:2: not valid YAML");
        // A valid workflow of a project the token may not control is refused before anything is deployed.
        await Expect(client.DeployWorkflowAsync(new DeployWorkflowRequest { Yaml = File.ReadAllText(GrpcTestClients.Workflow(gateway.ProjectB)) }, Control), StatusCode.PermissionDenied, $"'{gateway.ProjectB}'");
        await Expect(client.RemoveProjectAsync(new ProjectControlRequest { Project = "never-deployed" }, GrpcTestClients.Bearer(GrpcGatewayFixture.TokenAll)), StatusCode.PermissionDenied, "read-only");

        var unknown = await client.CancelRunsAsync(new CancelRunsRequest { Project = project, RunId = "ghost" }, Control);
        Assert.Equal(CancelOutcome.NotFound, Assert.Single(unknown.Runs).Outcome);
    }

    [Fact]
    public async Task Pause_is_recorded_with_who_and_why_and_asking_twice_changes_nothing()
    {
        using var channel = gateway.Channel();
        var client = new TspControl.TspControlClient(channel);
        var request = new ProjectControlRequest { Project = gateway.ProjectA, Reason = "camera maintenance" };

        var paused = await client.PauseProjectAsync(request, Control);
        var again = await client.PauseProjectAsync(new ProjectControlRequest { Project = gateway.ProjectA, Reason = "twice" }, Control);
        var asked = await client.GetProjectControlAsync(request, Control);

        Assert.Equal((true, "ops-a", "camera maintenance"), (paused.Paused, paused.ChangedBy, paused.Reason));
        Assert.Equal(paused, again);
        Assert.Equal(paused, asked);
        var resumed = await client.ResumeProjectAsync(request, Control);
        Assert.False(resumed.Paused);
        Assert.False((await client.GetProjectControlAsync(request, Control)).Paused);
    }

    [Fact]
    public async Task A_cancel_racing_a_runs_last_node_leaves_one_result_that_agrees_with_the_answer()
    {
        using var channel = gateway.Channel();
        var runs = new TspService.TspServiceClient(channel);
        var control = new TspControl.TspControlClient(channel);
        var project = gateway.ProjectA;
        var store = gateway.Host.Services.GetRequiredService<RedisStore>();

        var answers = await Task.WhenAll(Enumerable.Range(0, 40).Select(async i =>
        {
            var submitted = await runs.SubmitAsync(new SubmitRequest { Frame = GrpcTestClients.Frame(project, i) }, Control);
            if (i % 4 != 0)
            {
                // Give some runs a head start, so their last node and the cancel cross.
                await Task.Yield();
            }

            return Assert.Single((await control.CancelRunsAsync(new CancelRunsRequest { Project = project, RunId = submitted.RunId }, Control)).Runs);
        }));

        foreach (var answer in answers)
        {
            TpResult? result = null;
            await Eventually.HoldsAsync(async () => Assert.NotNull(result = await store.GetResultAsync(project, answer.RunId)), Timeout);
            var expected = answer.Outcome switch
            {
                CancelOutcome.Cancelled => RunStatus.Cancelled,
                CancelOutcome.AlreadyFinished => RunStatus.Succeeded,
                var other => throw new Xunit.Sdk.XunitException($"run {answer.RunId}: unexpected cancel outcome {other} ({answer.Detail})"),
            };
            Assert.Equal(expected, result!.Status);
            var summary = await control.GetRunAsync(new GetRunRequest { Project = project, RunId = answer.RunId }, Control);
            Assert.Equal((RunStage.Finished, expected), (summary.Stage, summary.Status));
        }

        var logged = (await store.ReadResultsAsync(project, 0, 100_000)).Select(r => r.Result.RunId).Where(id => answers.Any(a => a.RunId == id)).ToList();
        Assert.Equal(answers.Length, logged.Count);
        Assert.Equal(answers.Length, logged.Distinct(StringComparer.Ordinal).Count());
    }
}
