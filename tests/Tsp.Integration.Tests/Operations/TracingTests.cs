using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using Google.Protobuf;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Tsp.Actors.Hosting;
using Tsp.Actors.Ingest;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Actors.Telemetry;
using Tsp.Tests.Shared;
using Xunit.Abstractions;

namespace Tsp.Integration.Tests.Operations;

/// <summary>One trace per run: its spans on every process share the trace id derived from the run id,
/// node spans nest under the run span through the context the node task carries.</summary>
[Collection(ClusterCollection.Name)]
public sealed class TracingTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(90);
    private static readonly string[] Nodes = ["pre", "post"];
    private readonly ChildProcesses _processes = new(output);

    public void Dispose() => _processes.Dispose();

    [Fact]
    public async Task A_run_is_one_trace_of_ingest_run_nodes_with_their_Redis_calls_and_delivery()
    {
        var project = TestServers.Unique("trace");
        var runId = TestServers.Unique("run");
        var traceId = TspTracing.RunTraceId(runId);
        var spans = new ConcurrentQueue<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == TspTracing.SourceName,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = span =>
            {
                if (span.TraceId == traceId)
                {
                    spans.Enqueue(span);
                }
            },
        };
        ActivitySource.AddActivityListener(listener);
        using var host = await TestServers.StartHostAsync(new TspOptions
        {
            Redis = TestServers.Redis,
            SqlitePath = TestServers.TempSqlitePath(),
            Workflows = [GrpcTestClients.Workflow(project)],
        });
        var store = host.Services.GetRequiredService<RedisStore>();

        var accepted = await host.Services.GetRequiredService<RunSubmitter>().SubmitAsync(new Frame { Project = project, Data = ByteString.CopyFromUtf8("frame") }, runId);
        Assert.Equal(StartOutcome.Accepted, accepted.Outcome);
        Assert.Single(await TestServers.WaitForResultsAsync(store, project, 1, Patience));

        await Eventually.HoldsAsync(
            () =>
            {
                var byName = spans.ToLookup(s => s.DisplayName);
                var run = Assert.Single(byName["tsp.run"]);
                Assert.Single(byName["tsp.ingest"]);
                var publish = Assert.Single(byName["tsp.publish"]);
                Assert.Equal(run.SpanId, publish.ParentSpanId);
                // A node writes its own output, or (short, small: deferred) its host writes it when it publishes.
                var writtenAtPublish = byName["tsp.redis write outputs"].Where(w => w.ParentSpanId == publish.SpanId).Sum(w => (int)w.GetTagItem("tsp.outputs")!);
                var writtenByNodes = 0;
                foreach (var node in Nodes)
                {
                    var span = Assert.Single(byName[$"tsp.node {node}"]);
                    Assert.Equal(run.SpanId, span.ParentSpanId);
                    Assert.Equal(ActivityKind.Consumer, span.Kind);
                    Assert.Equal(runId, span.GetTagItem("tsp.run_id"));
                    Assert.Equal(project, span.GetTagItem("tsp.project"));
                    Assert.Contains(byName["tsp.redis read inputs"], r => r.ParentSpanId == span.SpanId);
                    writtenByNodes += byName["tsp.redis write output"].Count(r => r.ParentSpanId == span.SpanId);
                }

                Assert.Equal(Nodes.Length, writtenByNodes + writtenAtPublish);

                Assert.Equal(ActivityStatusCode.Unset, run.Status);
                return Task.CompletedTask;
            },
            Patience);
    }

    [Fact]
    public async Task Processes_export_their_spans_of_a_run_to_an_OTLP_collector_under_the_same_trace()
    {
        await using var collector = await OtlpCollector.StartAsync();
        var project = TestServers.Unique("otlp");
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            nodes:
              - { id: model, processor: checksum, role: gpu, queue: gpu-otlp }
            """);
        Dictionary<string, string> Otlp(string service) => new()
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.Url,
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf",
            ["OTEL_SERVICE_NAME"] = service,
            // The batch exporter's schedule: spans leave within a second.
            ["OTEL_BSP_SCHEDULE_DELAY"] = "500",
        };
        var (seedPort, grpcPort) = (TestPorts.Free(), TestPorts.Free());
        var seed = _processes.Start(Otlp("tsp-test-orchestrator"), "Tsp.Seed.dll", "run", "--roles", "seed,orchestrator", "--grpc-port", ChildProcesses.Port(grpcPort), "--port", ChildProcesses.Port(seedPort), "--redis", TestServers.Redis, "--journal", TestServers.TempSqlitePath(), "--workflow", workflow);
        await seed.WaitForLineAsync(l => l.StartsWith("grpc: ", StringComparison.Ordinal), Patience);
        _processes.Start(Otlp("tsp-test-worker"), "Tsp.GpuNode.dll", "--seed", $"127.0.0.1:{seedPort}", "--port", ChildProcesses.Port(TestPorts.Free()), "--roles", "gpu", "--redis", TestServers.Redis);
        await _processes.StatusAsync(seedPort, text => Regex.IsMatch(text, @"gpu-otlp \(gpu\)  routees=[1-9]"));

        using var channel = GrpcTestClients.Channel($"http://127.0.0.1:{grpcPort}");
        var runId = TestServers.Unique("run");
        var reply = await new TspService.TspServiceClient(channel).SubmitAsync(new SubmitRequest { Frame = new Frame { Project = project, Data = ByteString.CopyFromUtf8("frame") }, RunId = runId });
        Assert.Equal(StartOutcome.Accepted, reply.Outcome);

        var traceId = new byte[16];
        TspTracing.RunTraceId(runId).CopyTo(traceId);
        await Eventually.HoldsAsync(
            () =>
            {
                var exports = collector.Received.Where(body => body.AsSpan().IndexOf(traceId) >= 0).ToList();
                foreach (var (service, span) in new[] { ("tsp-test-orchestrator", "tsp.run"), ("tsp-test-orchestrator", "tsp.ingest"), ("tsp-test-worker", "tsp.node model") })
                {
                    Assert.True(
                        exports.Any(body => Contains(body, service) && Contains(body, span)),
                        $"no export from {service} holds span '{span}' of trace {TspTracing.RunTraceId(runId)} ({collector.Received.Count} exports received)");
                }

                return Task.CompletedTask;
            },
            Patience);
    }

    private static bool Contains(byte[] body, string text) => body.AsSpan().IndexOf(Encoding.UTF8.GetBytes(text)) >= 0;

    /// <summary>An OTLP/HTTP endpoint that keeps every export request's protobuf body as it came: span
    /// names, service names and trace ids are in it as plain bytes.</summary>
    private sealed class OtlpCollector : IAsyncDisposable
    {
        private readonly WebApplication _app;

        private OtlpCollector(WebApplication app, string url)
        {
            _app = app;
            Url = url;
        }

        public ConcurrentBag<byte[]> Received { get; } = [];

        public string Url { get; }

        public static async Task<OtlpCollector> StartAsync()
        {
            var port = TestPorts.Free();
            var builder = WebApplication.CreateSlimBuilder();
            builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
            var app = builder.Build();
            var collector = new OtlpCollector(app, $"http://127.0.0.1:{port}");
            app.MapPost("/v1/traces", async (HttpContext context) =>
            {
                using var body = new MemoryStream();
                await context.Request.Body.CopyToAsync(body);
                collector.Received.Add(body.ToArray());
                context.Response.ContentType = "application/x-protobuf";
            });
            await app.StartAsync();
            return collector;
        }

        public async ValueTask DisposeAsync() => await _app.DisposeAsync();
    }
}
