using System.Net.Http;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Akka.Actor;
using Akka.Cluster.Tools.PublishSubscribe;
using Akka.Hosting;
using Akka.Remote.Hosting;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client;
using Grpc.Reflection.V1Alpha;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Tsp.Actors.Hosting;
using Tsp.Actors.Northbound;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Seed;
using Tsp.Seed.Grpc;
using Tsp.Tests.Shared;

namespace Tsp.Integration.Tests;

/// <summary>
/// The gateway as users meet it: a real Kestrel server (TLS, API tokens) in a TSP host, and the real
/// Grpc.Net.Client. Two projects: <c>A</c> (token "token-a" and "token-all") and <c>B</c> ("token-all").
/// </summary>
public sealed class GrpcGatewayFixture : IAsyncLifetime
{
    public const string TokenA = "token-a";
    public const string TokenAll = "token-all";
    public const string TokenControlA = "token-control-a";

    private X509Certificate2? _certificate;

    public IHost Host { get; private set; } = null!;

    public string ProjectA { get; } = TestServers.Unique("grpc-a");

    public string ProjectB { get; } = TestServers.Unique("grpc-b");

    /// <summary>Rate-limited to one frame per 10 s.</summary>
    public string ProjectLimited { get; } = TestServers.Unique("grpc-l");

    public TspOptions Options { get; private set; } = null!;

    public string Url { get; private set; } = "";

    public async Task InitializeAsync()
    {
        _certificate = GrpcTestClients.SelfSignedCertificate();
        var pfx = Path.Combine(Path.GetTempPath(), "tsp-tests", TestServers.Unique("cert") + ".pfx");
        Directory.CreateDirectory(Path.GetDirectoryName(pfx)!);
        await File.WriteAllBytesAsync(pfx, _certificate.Export(X509ContentType.Pfx, "secret"));
        Options = new TspOptions
        {
            Redis = TestServers.Redis,
            SqlitePath = TestServers.TempSqlitePath(),
            Workflows = [GrpcTestClients.Workflow(ProjectA), GrpcTestClients.Workflow(ProjectB), GrpcTestClients.Workflow(ProjectLimited, "{ rate_limit: 0.1 }")],
            MaxFrameBytes = 64 * 1024,
            SubscriberBuffer = 256,
        };
        var grpc = new GrpcOptions
        {
            Port = 0,
            CertificatePath = pfx,
            CertificatePassword = "secret",
            Tokens =
            [
                new ApiToken { Token = TokenA, Projects = [ProjectA] },
                new ApiToken { Token = TokenAll, Projects = ["*"] },
                new ApiToken { Token = TokenControlA, Name = "ops-a", Projects = [ProjectA], Access = ApiToken.ControlAccess },
            ],
        };
        Host = SeedHost.Build(Options, grpc, httpPort: 0, quiet: true);
        await Host.StartAsync();
        Url = SeedHost.GrpcUrl(Host)!;
    }

    public GrpcChannel Channel() => GrpcTestClients.Channel(Url, _certificate!);

    public async Task DisposeAsync()
    {
        await Host.StopAsync();
        Host.Dispose();
        _certificate?.Dispose();
    }
}

internal static class GrpcTestClients
{
    public static string Workflow(string project, string scheduling = "{}") => TestServers.WriteWorkflow($"""
        project: {project}
        scheduling: {scheduling}
        nodes:
          - id: pre
            processor: checksum
            role: cpu
            queue: cpu-short
          - id: post
            processor: passthrough
            role: cpu
            queue: cpu-short
            after: [pre]
        """);

    public static X509Certificate2 SelfSignedCertificate()
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=127.0.0.1", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(System.Net.IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        using var created = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        return X509CertificateLoader.LoadPkcs12(created.Export(X509ContentType.Pfx), null);
    }

    /// <summary>A client that trusts exactly this certificate; a small HTTP/2 receive window, so a
    /// subscriber that stops reading stops the server's writes soon.</summary>
    public static GrpcChannel Channel(string url, X509Certificate2? certificate = null)
    {
        var handler = new SocketsHttpHandler { InitialHttp2StreamWindowSize = 64 * 1024 };
        if (certificate is not null)
        {
            handler.SslOptions.RemoteCertificateValidationCallback = (_, presented, _, _) =>
                presented is not null && presented.GetCertHashString() == certificate.GetCertHashString();
        }

        return GrpcChannel.ForAddress(url, new GrpcChannelOptions { HttpHandler = handler, MaxReceiveMessageSize = 16 * 1024 * 1024 });
    }

    public static Metadata Bearer(string token) => new() { { "authorization", $"Bearer {token}" } };

    public static Frame Frame(string project, int i, int size = 1024)
    {
        var data = new byte[size];
        new Random(i).NextBytes(data);
        return new Frame { Project = project, SourceId = $"camera-{i % 3}", Data = ByteString.CopyFrom(data) };
    }

    /// <summary>Waits until the run has finished and returns its result; NOT_FOUND (a Kafka record not
    /// yet a run) counts as not finished.</summary>
    public static async Task<TpResult> ResultAsync(TspService.TspServiceClient client, string project, string runId, TimeSpan timeout)
    {
        TpResult? result = null;
        await Eventually.HoldsAsync(
            async () =>
            {
                var reply = await client.GetResultAsync(new GetResultRequest { Project = project, RunId = runId }).ResponseAsync.ContinueWith(
                    call => call.IsCompletedSuccessfully ? call.Result : call.Exception?.InnerException is RpcException { StatusCode: StatusCode.NotFound } ? new GetResultReply() : throw call.Exception!.InnerException!,
                    TaskScheduler.Default);
                Assert.Equal(RunPhase.Finished, reply.Phase);
                result = reply.Result;
            },
            timeout);
        return result!;
    }

    /// <summary>Reads until <paramref name="count"/> results arrived (or the timeout fails the test).</summary>
    public static async Task<List<TpResult>> ReadAsync(IAsyncStreamReader<TpResult> stream, int count, TimeSpan timeout)
    {
        using var deadline = new CancellationTokenSource(timeout);
        var results = new List<TpResult>();
        while (results.Count < count && await stream.MoveNext(deadline.Token))
        {
            results.Add(stream.Current);
        }

        return results;
    }
}

[Collection(ClusterCollection.Name)]
public sealed class GrpcTests(GrpcGatewayFixture gateway) : IClassFixture<GrpcGatewayFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private TspService.TspServiceClient Client(out GrpcChannel channel)
    {
        channel = gateway.Channel();
        return new TspService.TspServiceClient(channel);
    }

    private static Metadata All => GrpcTestClients.Bearer(GrpcGatewayFixture.TokenAll);

    private static async Task<List<string>> SubmitAsync(TspService.TspServiceClient client, string project, int count, int offset = 0)
    {
        var ids = new List<string>();
        for (var i = offset; i < offset + count; i++)
        {
            var reply = await client.SubmitAsync(new SubmitRequest { Frame = GrpcTestClients.Frame(project, i) }, All);
            Assert.Equal(StartOutcome.Accepted, reply.Outcome);
            ids.Add(reply.RunId);
        }

        return ids;
    }

    [Fact]
    public async Task A_submission_over_its_projects_rate_limit_is_refused_with_how_long_to_wait()
    {
        using var channel = gateway.Channel();
        var client = new TspService.TspServiceClient(channel);
        RpcException? refused = null;
        for (var i = 0; i < 3 && refused is null; i++)
        {
            try
            {
                await client.SubmitAsync(new SubmitRequest { Frame = GrpcTestClients.Frame(gateway.ProjectLimited, i) }, All);
            }
            catch (RpcException e)
            {
                refused = e;
            }
        }

        Assert.NotNull(refused);
        Assert.Equal(StatusCode.ResourceExhausted, refused.StatusCode);
        Assert.Matches($@"^project '{gateway.ProjectLimited}' accepts at most 0\.1 frames/s \(scheduling\.rate_limit\); retry in \d+ ms$", refused.Status.Detail);
        Assert.True(long.Parse(refused.Trailers.GetValue(TspGrpcService.RetryAfterTrailer)!, System.Globalization.CultureInfo.InvariantCulture) > 0);
    }

    [Fact]
    public async Task A_subscriber_that_reconnects_from_its_next_position_sees_every_result_once_in_order()
    {
        var client = Client(out var channel);
        using var _ = channel;
        var project = gateway.ProjectA;
        List<TpResult> first;
        string headerFrom;
        using (var live = client.Subscribe(new SubscribeRequest { Projects = { project }, From = "latest" }, All))
        {
            headerFrom = (await live.ResponseHeadersAsync).GetValue(TspGrpcService.FromHeader)!;
            var submitted = await SubmitAsync(client, project, 20);
            first = await GrpcTestClients.ReadAsync(live.ResponseStream, 12, Timeout);
            Assert.Equal(12, first.Count);
            Assert.All(first, r => Assert.Contains(r.RunId, submitted));
        }

        // Disconnected: more results are logged meanwhile.
        var later = await SubmitAsync(client, project, 20, offset: 20);
        var resumeFrom = first[^1].Position + 1;
        using var resumed = client.Subscribe(new SubscribeRequest { Projects = { project }, From = resumeFrom.ToString(System.Globalization.CultureInfo.InvariantCulture) }, All);
        var rest = await GrpcTestClients.ReadAsync(resumed.ResponseStream, 28, Timeout);

        var all = first.Concat(rest).ToList();
        var start = long.Parse(headerFrom.Split('=')[1], System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(Enumerable.Range(0, 40).Select(i => start + i), all.Select(r => r.Position));
        Assert.Equal(40, all.Select(r => r.RunId).Distinct().Count());
        Assert.Subset(all.Select(r => r.RunId).ToHashSet(), later.ToHashSet());
        Assert.All(all, r => Assert.Equal(RunStatus.Succeeded, r.Status));

        // From earliest replays the same log from its first position.
        using var replay = client.Subscribe(new SubscribeRequest { Projects = { project }, From = "earliest" }, All);
        var replayed = await GrpcTestClients.ReadAsync(replay.ResponseStream, (int)all[^1].Position, Timeout);
        Assert.Equal(all.Select(r => r.RunId), replayed.Where(r => r.Position >= start).Select(r => r.RunId));
    }

    [Fact]
    public async Task A_subscriber_that_stops_reading_is_cut_off_with_its_position_while_others_keep_receiving()
    {
        var client = Client(out var channel);
        using var _ = channel;
        var project = gateway.ProjectB;
        using var slow = client.Subscribe(new SubscribeRequest { Projects = { project } }, All);
        using var fast = client.Subscribe(new SubscribeRequest { Projects = { project } }, All);
        var start = long.Parse((await slow.ResponseHeadersAsync).GetValue(TspGrpcService.FromHeader)!.Split('=')[1], System.Globalization.CultureInfo.InvariantCulture);
        await fast.ResponseHeadersAsync;

        // Published the way runs publish, 2 KiB each: far more than the HTTP/2 windows and the
        // subscriber buffer (256) hold. The reading subscriber is never more than 100 behind.
        const int count = 1500;
        var system = gateway.Host.Services.GetRequiredService<ActorSystem>();
        var store = gateway.Host.Services.GetRequiredService<RedisStore>();
        var mediator = DistributedPubSub.Get(system).Mediator;
        var everyoneSoFar = new List<TpResult>();
        var fastReading = Task.Run(async () =>
        {
            using var deadline = new CancellationTokenSource(Timeout);
            while (everyoneSoFar.Count < count && await fast.ResponseStream.MoveNext(deadline.Token))
            {
                lock (everyoneSoFar)
                {
                    everyoneSoFar.Add(fast.ResponseStream.Current);
                }
            }

            return everyoneSoFar;
        });
        var padding = new string('x', 2048);
        using (var pace = new CancellationTokenSource(Timeout))
        {
            for (var i = 0; i < count; i++)
            {
                while (i - Volatile.Read(ref everyoneSoFar).Count > 100 && !fastReading.IsCompleted)
                {
                    await Task.Delay(1, pace.Token);
                }

                var result = new TpResult { Project = project, RunId = $"synthetic-{i}", Status = RunStatus.Succeeded };
                result.Nodes.Add(new NodeResult { NodeId = "pre", Labels = { ["padding"] = padding } });
                await ResultPublisher.PublishAsync(store, mediator, result);
            }
        }

        var everyone = await fastReading;
        Assert.Equal(Enumerable.Range(0, count).Select(i => start + i), everyone.Select(r => r.Position));

        var received = new List<TpResult>();
        var cutOff = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            using var deadline = new CancellationTokenSource(Timeout);
            while (await slow.ResponseStream.MoveNext(deadline.Token))
            {
                received.Add(slow.ResponseStream.Current);
            }
        });
        Assert.Equal(StatusCode.ResourceExhausted, cutOff.StatusCode);
        Assert.InRange(received.Count, 1, count - 1);
        Assert.Equal(Enumerable.Range(0, received.Count).Select(i => start + i), received.Select(r => r.Position));
        var resume = cutOff.Trailers.GetValue(TspGrpcService.ResumeTrailer);
        Assert.Equal($"{project}={received[^1].Position + 1}", resume);
        Assert.Contains(resume!, cutOff.Status.Detail, StringComparison.Ordinal);

        using var again = client.Subscribe(new SubscribeRequest { Projects = { project }, From = resume }, All);
        var rest = await GrpcTestClients.ReadAsync(again.ResponseStream, count - received.Count, Timeout);
        Assert.Equal(everyone.Select(r => r.RunId), received.Concat(rest).Select(r => r.RunId));
    }

    [Fact]
    public async Task Submit_is_idempotent_by_run_id_and_GetResult_follows_the_run_to_its_result()
    {
        var client = Client(out var channel);
        using var _ = channel;
        var runId = TestServers.Unique("run");
        var frame = GrpcTestClients.Frame(gateway.ProjectA, 7);
        var first = await client.SubmitAsync(new SubmitRequest { Frame = frame, RunId = runId }, All);
        Assert.Equal((runId, StartOutcome.Accepted), (first.RunId, first.Outcome));
        var second = await client.SubmitAsync(new SubmitRequest { Frame = frame, RunId = runId }, All);
        Assert.Contains(second.Outcome, new[] { StartOutcome.AlreadyRunning, StartOutcome.AlreadyCompleted });

        GetResultReply reply;
        using var deadline = new CancellationTokenSource(Timeout);
        do
        {
            reply = await client.GetResultAsync(new GetResultRequest { Project = gateway.ProjectA, RunId = runId }, All, cancellationToken: deadline.Token);
            Assert.NotEqual(RunPhase.Unspecified, reply.Phase);
        }
        while (reply.Phase == RunPhase.Running && await Task.Delay(50, deadline.Token).ContinueWith(_ => true, TaskScheduler.Default));

        Assert.Equal(RunPhase.Finished, reply.Phase);
        Assert.Equal(runId, reply.Result.RunId);
        Assert.True(reply.Result.Position > 0);
        Assert.Equal(["pre", "post"], reply.Result.Nodes.Select(n => n.NodeId));
        Assert.Equal(StartOutcome.AlreadyCompleted, (await client.SubmitAsync(new SubmitRequest { Frame = frame, RunId = runId }, All)).Outcome);
    }

    [Fact]
    public async Task Projects_and_workflows_are_listed_and_generic_clients_find_health_and_reflection()
    {
        var client = Client(out var channel);
        using var _ = channel;
        var projects = await client.ListProjectsAsync(new ListProjectsRequest(), All);
        Assert.Equal(new[] { gateway.ProjectA, gateway.ProjectB, gateway.ProjectLimited }.Order(StringComparer.Ordinal), projects.Projects.Select(p => p.Name));
        Assert.All(projects.Projects, p => Assert.Equal(2, p.Nodes));

        var workflow = await client.GetWorkflowAsync(new GetWorkflowRequest { Project = gateway.ProjectA }, All);
        Assert.Equal(["pre", "post"], workflow.Nodes.Select(n => n.Id));
        Assert.Equal(["pre"], workflow.Nodes[1].After);
        Assert.Equal("checksum", workflow.Nodes[0].Processor);
        Assert.Contains($"project: {gateway.ProjectA}", workflow.Yaml, StringComparison.Ordinal);
        Assert.NotEmpty(workflow.WorkflowHash);
        Assert.Equal(projects.Projects.Single(p => p.Name == gateway.ProjectA).WorkflowHash, workflow.WorkflowHash);
        Assert.NotEqual(projects.Projects.Single(p => p.Name == gateway.ProjectB).WorkflowHash, workflow.WorkflowHash);

        // Health and reflection need no token: load balancers and grpcurl use them.
        var health = await new Health.HealthClient(channel).CheckAsync(new HealthCheckRequest());
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, health.Status);
        using var reflection = new ServerReflection.ServerReflectionClient(channel).ServerReflectionInfo();
        await reflection.RequestStream.WriteAsync(new ServerReflectionRequest { ListServices = "" });
        await reflection.RequestStream.CompleteAsync();
        Assert.True(await reflection.ResponseStream.MoveNext());
        Assert.Contains("tsp.tp.v1.TspService", reflection.ResponseStream.Current.ListServicesResponse.Service.Select(s => s.Name));
    }

    [Fact]
    public async Task A_token_sees_only_its_projects_and_a_call_without_one_is_unauthenticated()
    {
        var client = Client(out var channel);
        using var _ = channel;
        var tokenA = GrpcTestClients.Bearer(GrpcGatewayFixture.TokenA);

        var missing = await Assert.ThrowsAsync<RpcException>(() => client.ListProjectsAsync(new ListProjectsRequest()).ResponseAsync);
        Assert.Equal(StatusCode.Unauthenticated, missing.StatusCode);
        Assert.Contains("authorization: Bearer", missing.Status.Detail, StringComparison.Ordinal);
        var unknown = await Assert.ThrowsAsync<RpcException>(() => client.ListProjectsAsync(new ListProjectsRequest(), GrpcTestClients.Bearer("guess")).ResponseAsync);
        Assert.Equal(StatusCode.Unauthenticated, unknown.StatusCode);

        Assert.Equal([gateway.ProjectA], (await client.ListProjectsAsync(new ListProjectsRequest(), tokenA)).Projects.Select(p => p.Name));
        Assert.Equal(gateway.ProjectA, (await client.GetWorkflowAsync(new GetWorkflowRequest { Project = gateway.ProjectA }, tokenA)).Project);

        var denied = await Assert.ThrowsAsync<RpcException>(() => client.GetWorkflowAsync(new GetWorkflowRequest { Project = gateway.ProjectB }, tokenA).ResponseAsync);
        Assert.Equal(StatusCode.PermissionDenied, denied.StatusCode);
        Assert.Contains(gateway.ProjectB, denied.Status.Detail, StringComparison.Ordinal);
        using var subscribe = client.Subscribe(new SubscribeRequest { Projects = { gateway.ProjectA, gateway.ProjectB } }, tokenA);
        var deniedStream = await Assert.ThrowsAsync<RpcException>(() => subscribe.ResponseStream.MoveNext());
        Assert.Equal(StatusCode.PermissionDenied, deniedStream.StatusCode);
        var deniedSubmit = await Assert.ThrowsAsync<RpcException>(() => client.SubmitAsync(new SubmitRequest { Frame = GrpcTestClients.Frame(gateway.ProjectB, 1) }, tokenA).ResponseAsync);
        Assert.Equal(StatusCode.PermissionDenied, deniedSubmit.StatusCode);
    }

    [Fact]
    public async Task An_external_akka_system_subscribed_through_ClusterClient_receives_the_results_with_positions()
    {
        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Services.AddAkka("external-subscriber", (akka, _) => akka
            .ConfigureLoggers(l => l.LogLevel = Akka.Event.LogLevel.WarningLevel)
            .WithRemoting("127.0.0.1", 0)
            .AddTspResultClient([$"127.0.0.1:{gateway.Options.Port}"]));
        using var external = builder.Build();
        await external.StartAsync();
        try
        {
            var system = external.Services.GetRequiredService<ActorSystem>();
            var clusterClient = await external.Services.GetRequiredService<IRequiredActor<TspClusterClient>>().GetAsync();
            var (_, results) = await RemoteResults.SubscribeAsync(system, clusterClient, gateway.ProjectA, "latest", Timeout);

            var client = Client(out var channel);
            using var _ = channel;
            var submitted = await SubmitAsync(client, gateway.ProjectA, 15);
            using var deadline = new CancellationTokenSource(Timeout);
            var received = new List<TpResult>();
            while (received.Count < 15)
            {
                received.Add(await results.ReadAsync(deadline.Token));
            }

            Assert.Equal(submitted.Order(StringComparer.Ordinal), received.Select(r => r.RunId).Order(StringComparer.Ordinal));
            Assert.Equal(Enumerable.Range(0, 15).Select(i => received[0].Position + i), received.Select(r => r.Position));

            // An unknown project ends the subscription with the reason.
            var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => RemoteResults.SubscribeAsync(system, clusterClient, "nope", "latest", Timeout));
            Assert.Contains("unknown project 'nope'", refused.Message, StringComparison.Ordinal);
        }
        finally
        {
            await external.StopAsync();
        }
    }

    [Fact]
    public async Task The_feed_delivers_live_results_in_position_order_filling_gaps_from_the_log_and_dropping_repeats()
    {
        var system = gateway.Host.Services.GetRequiredService<ActorSystem>();
        var store = gateway.Host.Services.GetRequiredService<RedisStore>();
        var mediator = DistributedPubSub.Get(system).Mediator;
        var project = TestServers.Unique("feed");
        await using var feed = await ResultFeed.OpenAsync(system, store, new Dictionary<string, long?> { [project] = null }, bufferSize: 16, Timeout);
        Assert.Equal(1, feed.Next[project]);

        // Five results are logged; only the fourth is published live, then the second again (a re-publish).
        var logged = new List<TpResult>();
        for (var i = 1; i <= 5; i++)
        {
            var result = new TpResult { Project = project, RunId = $"run-{i}" };
            await store.AppendResultAsync(result);
            logged.Add(result);
        }

        mediator.Tell(new Publish(ResultPublisher.TopicFor(project), logged[3]));
        mediator.Tell(new Publish(ResultPublisher.TopicFor(project), logged[1]));
        mediator.Tell(new Publish(ResultPublisher.TopicFor(project), logged[4]));

        using var deadline = new CancellationTokenSource(Timeout);
        var delivered = new List<TpResult>();
        await foreach (var result in feed.ReadAllAsync(deadline.Token))
        {
            delivered.Add(result);
            if (delivered.Count == 5)
            {
                break;
            }
        }

        Assert.Equal(["run-1", "run-2", "run-3", "run-4", "run-5"], delivered.Select(r => r.RunId));
        Assert.Equal([1L, 2, 3, 4, 5], delivered.Select(r => r.Position));
        Assert.Equal($"{project}=6", feed.ResumeFrom);
    }

    public static TheoryData<string, StatusCode, string> BadRequests => new()
    {
        { "subscribe-unknown-project", StatusCode.NotFound, "unknown project 'nope'" },
        { "subscribe-no-project", StatusCode.InvalidArgument, "at least one project" },
        { "subscribe-malformed-from", StatusCode.InvalidArgument, "position 'x12'" },
        { "subscribe-bare-position-two-projects", StatusCode.InvalidArgument, "exactly one project" },
        { "submit-unknown-project", StatusCode.NotFound, "unknown project 'nope'" },
        { "submit-oversized-frame", StatusCode.ResourceExhausted, "exceeds the maximum of 65536 bytes" },
        { "submit-empty-frame", StatusCode.InvalidArgument, "is empty" },
        { "submit-bad-run-id", StatusCode.InvalidArgument, "run id 'a b'" },
        { "submit-no-frame", StatusCode.InvalidArgument, "'frame' is missing" },
        { "result-unknown-run", StatusCode.NotFound, "run 'never-submitted' is not known" },
        { "result-no-run-id", StatusCode.InvalidArgument, "'run_id' is missing" },
        { "workflow-unknown-project", StatusCode.NotFound, "unknown project 'nope'" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task A_bad_request_gets_its_status_code_and_a_message_naming_the_problem(string kind, StatusCode expected, string message)
    {
        var client = Client(out var channel);
        using var _ = channel;
        var a = gateway.ProjectA;
        Task call = kind switch
        {
            "subscribe-unknown-project" => FirstResult(client.Subscribe(new SubscribeRequest { Projects = { "nope" } }, All)),
            "subscribe-no-project" => FirstResult(client.Subscribe(new SubscribeRequest(), All)),
            "subscribe-malformed-from" => FirstResult(client.Subscribe(new SubscribeRequest { Projects = { a }, From = "x12" }, All)),
            "subscribe-bare-position-two-projects" => FirstResult(client.Subscribe(new SubscribeRequest { Projects = { a, gateway.ProjectB }, From = "3" }, All)),
            "submit-unknown-project" => client.SubmitAsync(new SubmitRequest { Frame = GrpcTestClients.Frame("nope", 1) }, All).ResponseAsync,
            "submit-oversized-frame" => client.SubmitAsync(new SubmitRequest { Frame = GrpcTestClients.Frame(a, 1, size: 64 * 1024 + 1) }, All).ResponseAsync,
            "submit-empty-frame" => client.SubmitAsync(new SubmitRequest { Frame = new Frame { Project = a } }, All).ResponseAsync,
            "submit-bad-run-id" => client.SubmitAsync(new SubmitRequest { Frame = GrpcTestClients.Frame(a, 1), RunId = "a b" }, All).ResponseAsync,
            "submit-no-frame" => client.SubmitAsync(new SubmitRequest(), All).ResponseAsync,
            "result-unknown-run" => client.GetResultAsync(new GetResultRequest { Project = a, RunId = "never-submitted" }, All).ResponseAsync,
            "result-no-run-id" => client.GetResultAsync(new GetResultRequest { Project = a }, All).ResponseAsync,
            "workflow-unknown-project" => client.GetWorkflowAsync(new GetWorkflowRequest { Project = "nope" }, All).ResponseAsync,
            _ => throw new ArgumentOutOfRangeException(nameof(kind)),
        };

        var error = await Assert.ThrowsAsync<RpcException>(() => call);
        Assert.Equal(expected, error.StatusCode);
        Assert.Contains(message, error.Status.Detail, StringComparison.Ordinal);

        // The gateway keeps serving.
        Assert.NotEmpty((await client.ListProjectsAsync(new ListProjectsRequest(), All)).Projects);

        static async Task FirstResult(AsyncServerStreamingCall<TpResult> call)
        {
            using (call)
            {
                await call.ResponseStream.MoveNext();
            }
        }
    }

    [Fact]
    public async Task Random_submissions_are_accepted_or_refused_with_a_client_status_and_a_message_never_an_internal_error()
    {
        var client = Client(out var channel);
        using var _ = channel;
        var random = new Random(4242);
        const string alphabet = "abcXYZ019-_./:{} \t\n\0é😀*?%";
        string RandomText(int max) => new([.. Enumerable.Range(0, random.Next(max)).Select(_ => alphabet[random.Next(alphabet.Length)])]);
        StatusCode[] allowed = [StatusCode.InvalidArgument, StatusCode.NotFound, StatusCode.ResourceExhausted];
        var accepted = 0;
        for (var i = 0; i < 150; i++)
        {
            var project = random.Next(3) switch { 0 => gateway.ProjectA, 1 => RandomText(12), _ => gateway.ProjectA + RandomText(3) };
            var data = new byte[random.Next(4) == 0 ? 64 * 1024 + random.Next(1, 100) : random.Next(200)];
            random.NextBytes(data);
            var runId = random.Next(3) == 0 ? RandomText(220) : string.Empty;
            try
            {
                var reply = await client.SubmitAsync(new SubmitRequest { Frame = new Frame { Project = project, Data = ByteString.CopyFrom(data) }, RunId = runId }, All);
                Assert.Equal(StartOutcome.Accepted, reply.Outcome);
                accepted++;
            }
            catch (RpcException e)
            {
                Assert.True(allowed.Contains(e.StatusCode), $"submission {i} (project '{project}', {data.Length} bytes, run id '{runId}') ended {e.StatusCode}: {e.Status.Detail}");
                Assert.False(string.IsNullOrWhiteSpace(e.Status.Detail), $"submission {i}: {e.StatusCode} without a message");
            }
        }

        Assert.InRange(accepted, 1, 149);
        Assert.NotEmpty((await client.ListProjectsAsync(new ListProjectsRequest(), All)).Projects);
    }
}
