using System.Net;
using System.Net.Http;
using Grpc.Health.V1;
using Grpc.Net.Client;
using Microsoft.Extensions.Hosting;
using Tsp.Actors.Hosting;
using Tsp.Seed;
using Tsp.Seed.Grpc;
using Tsp.ServiceDefaults.Operations;
using Tsp.Tests.Shared;

namespace Tsp.Integration.Tests.Operations;

/// <summary>Readiness follows the dependencies: Redis taken away and brought back, as a load balancer
/// or Kubernetes sees it over HTTP and over the gRPC health service.</summary>
[Collection(ClusterCollection.Name)]
public sealed class ReadinessTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Ready_goes_false_naming_Redis_while_it_is_away_and_true_once_it_is_back()
    {
        using var redis = await RedisServerProcess.StartAsync(appendOnly: false);
        var options = new TspOptions
        {
            Redis = redis.Endpoint,
            SqlitePath = TestServers.TempSqlitePath(),
            Workflows = [GrpcTestClients.Workflow(TestServers.Unique("ready"))],
        };
        using var host = SeedHost.Build(options, new GrpcOptions { Port = 0 }, httpPort: 0, quiet: true);
        await host.StartAsync();
        using var http = new HttpClient();
        var ready = $"{SeedHost.HttpUrl(host)}{OperationsHttp.ReadyPath}";
        using var channel = GrpcChannel.ForAddress(SeedHost.GrpcUrl(host)!);
        var health = new Health.HealthClient(channel);

        async Task AssertReadiness(HttpStatusCode expected, HealthCheckResponse.Types.ServingStatus serving, string mentions)
        {
            using var response = await http.GetAsync(ready);
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == expected, $"{(int)response.StatusCode}: {body}");
            Assert.Contains(mentions, body, StringComparison.Ordinal);
            Assert.Equal(serving, (await health.CheckAsync(new HealthCheckRequest())).Status);
            Assert.Equal(serving, (await health.CheckAsync(new HealthCheckRequest { Service = Tsp.Actors.Protocol.TspService.Descriptor.FullName })).Status);
        }

        await Eventually.HoldsAsync(() => AssertReadiness(HttpStatusCode.OK, HealthCheckResponse.Types.ServingStatus.Serving, $"{redis.Endpoint} answered"), Patience);

        await redis.StopAsync();
        await Eventually.HoldsAsync(() => AssertReadiness(HttpStatusCode.ServiceUnavailable, HealthCheckResponse.Types.ServingStatus.NotServing, $"{redis.Endpoint} does not answer"), Patience);
        using (var live = await http.GetAsync($"{SeedHost.HttpUrl(host)}{OperationsHttp.LivePath}"))
        {
            Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        }

        await redis.StartAsync();
        await Eventually.HoldsAsync(() => AssertReadiness(HttpStatusCode.OK, HealthCheckResponse.Types.ServingStatus.Serving, $"{redis.Endpoint} answered"), Patience);
        await host.StopAsync();
    }

    [Fact]
    public async Task A_worker_is_not_ready_while_a_model_its_workflow_names_is_missing_and_ready_once_it_is_there()
    {
        var models = Directory.CreateTempSubdirectory("tsp-models-").FullName;
        var options = new TspOptions
        {
            Redis = TestServers.Redis,
            SqlitePath = TestServers.TempSqlitePath(),
            Onnx = new Tsp.Actors.Nodes.Onnx.OnnxOptions { Repository = models, ExecutionProvider = "cpu" },
            Workflows =
            [
                TestServers.WriteWorkflow($$"""
                    project: {{TestServers.Unique("ready")}}
                    nodes:
                      - { id: pre, processor: image.normalize, role: cpu, queue: ready-cpu, params: { width: 16, height: 16, channels: 1, mean: "0", std: "1" } }
                      - { id: model, processor: onnx, role: gpu, queue: ready-gpu, after: [pre], params: { model: late-model } }
                    """),
            ],
        };
        using var host = SeedHost.Build(options, new GrpcOptions { Port = -1 }, httpPort: 0, quiet: true);
        await host.StartAsync();
        using var http = new HttpClient();
        var ready = $"{SeedHost.HttpUrl(host)}{OperationsHttp.ReadyPath}";

        async Task AssertReadiness(HttpStatusCode expected, string mentions)
        {
            using var response = await http.GetAsync(ready);
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == expected, $"{(int)response.StatusCode}: {body}");
            Assert.Contains(mentions, body, StringComparison.Ordinal);
        }

        await Eventually.HoldsAsync(() => AssertReadiness(HttpStatusCode.ServiceUnavailable, "model 'late-model'"), Patience);
        MeteredRunFixture.WriteDoublerModel(models, "late-model");
        await Eventually.HoldsAsync(() => AssertReadiness(HttpStatusCode.OK, "late-model v1 on CPU"), Patience);
        await host.StopAsync();
        Directory.Delete(models, recursive: true);
    }
}
