using System.Net;
using System.Net.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Tsp.Actors.Hosting;
using Tsp.Actors.Ingest;
using Tsp.Actors.Nodes.Onnx;
using Tsp.Actors.Northbound;
using Tsp.Actors.Storage;
using Tsp.Seed;
using Tsp.Seed.Grpc;
using Tsp.ServiceDefaults.Embedded;
using Tsp.ServiceDefaults.Operations;
using Tsp.ServiceDefaults.Samples;
using Tsp.Tests.Shared;

namespace Tsp.Integration.Tests.Operations;

/// <summary>
/// One orchestrator with every role, after frames came through Kafka: six images that pass through
/// a real ONNX model and a node that fails its first attempt, one corrupt image (a failed run) and one
/// empty record (dead-lettered by ingest), with one result subscription open.
/// </summary>
public sealed class MeteredRunFixture : IAsyncLifetime
{
    public const int GoodFrames = 6;

    private readonly string _models = Directory.CreateTempSubdirectory("tsp-models-").FullName;
    private ResultFeed? _feed;

    public EmbeddedKafka Kafka { get; } = EmbeddedKafka.Start();

    public string Project { get; } = TestServers.Unique("ops");

    public IHost Host { get; private set; } = null!;

    public string HttpUrl { get; private set; } = "";

    public HttpClient Http { get; } = new();

    public async Task InitializeAsync()
    {
        WriteDoublerModel(_models);
        var options = new TspOptions
        {
            Redis = TestServers.Redis,
            SqlitePath = TestServers.TempSqlitePath(),
            Workflows =
            [
                TestServers.WriteWorkflow($$"""
                    project: {{Project}}
                    nodes:
                      - { id: pre, processor: image.normalize, role: cpu, queue: ops-cpu, params: { width: 16, height: 16, channels: 1 } }
                      - { id: model, processor: onnx, role: gpu, queue: ops-gpu, after: [pre], params: { model: doubler } }
                      - { id: check, processor: flaky, role: cpu, queue: ops-cpu, after: [model], params: { fail_attempts: 1 } }
                    """),
            ],
            Kafka = new KafkaOptions { Bootstrap = Kafka.BootstrapServers },
            Onnx = new OnnxOptions { Repository = _models, ExecutionProvider = "cpu" },
        };
        Host = SeedHost.Build(options, new GrpcOptions { Port = -1 }, httpPort: 0, quiet: true);
        await Host.StartAsync();
        HttpUrl = SeedHost.HttpUrl(Host)!;
        var store = Host.Services.GetRequiredService<RedisStore>();
        _feed = await ResultFeed.OpenAsync(Host.System(), store, new Dictionary<string, long?> { [Project] = 1 }, 256, TimeSpan.FromSeconds(30));

        using var producer = new FrameProducer(Kafka.BootstrapServers);
        for (var i = 0; i < GoodFrames; i++)
        {
            await producer.ProduceAsync(Project, SurfaceImages.Generate(i, defective: false).Png);
        }

        await producer.ProduceAsync(Project, "not an image"u8.ToArray());
        await producer.ProduceRawAsync(KafkaTopics.Frames(Project), []);
        var results = await TestServers.WaitForResultsAsync(store, Project, GoodFrames + 1, TimeSpan.FromSeconds(120));
        Assert.Equal(GoodFrames + 1, results.Count);
    }

    public async Task<PrometheusText> ScrapeAsync()
    {
        using var response = await Http.GetAsync($"{HttpUrl}{OperationsHttp.MetricsPath}");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return PrometheusText.Parse(await response.Content.ReadAsStringAsync());
    }

    public async Task DisposeAsync()
    {
        if (_feed is not null)
        {
            await _feed.DisposeAsync();
        }

        await Host.StopAsync();
        Host.Dispose();
        Kafka.Dispose();
        Http.Dispose();
        Directory.Delete(_models, recursive: true);
    }

    /// <summary>y = 2x on [N,1,16,16]: what image.normalize makes of a grayscale 16×16 image.</summary>
    internal static void WriteDoublerModel(string root, string name = "doubler", int version = 1)
    {
        var folder = Path.Combine(root, name, version.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(root, name, ModelRepository.ConfigFile), """
            inputs: [{ name: x, shape: [-1, 1, 16, 16] }]
            outputs: [{ name: y, shape: [-1, 1, 16, 16] }]
            batching: { max_batch_size: 4, max_queue_delay_ms: 5 }
            """);
        File.WriteAllBytes(Path.Combine(folder, ModelRepository.ModelFile), new OnnxGraph(name)
            .Input("x", -1, 1, 16, 16)
            .Output("y", -1, 1, 16, 16)
            .Constant("two", [1], [2f])
            .Node("Mul", ["x", "two"], ["y"])
            .ToModel());
    }
}

[Collection(ClusterCollection.Name)]
public sealed class MetricsTests(MeteredRunFixture fixture) : IClassFixture<MeteredRunFixture>
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);
    private readonly string _project = fixture.Project;

    [Fact]
    public async Task Every_metric_family_has_the_run_counted_by_project_queue_node_and_model()
    {
        var p = ("project", _project);
        await Eventually.HoldsAsync(
            async () =>
            {
                var metrics = await fixture.ScrapeAsync();
                const int good = MeteredRunFixture.GoodFrames;

                Assert.Equal(good + 1, metrics.Value("tsp_runs_started_total", p));
                Assert.Equal(good, metrics.Value("tsp_runs_completed_total", p, ("status", "succeeded")));
                Assert.Equal(1, metrics.Value("tsp_runs_completed_total", p, ("status", "failed")));
                Assert.Equal(good + 1, metrics.Value("tsp_run_duration_seconds_count", p));
                Assert.Equal(good + 1, metrics.Value("tsp_run_duration_seconds_bucket", p, ("le", "+Inf")));

                Assert.Equal(good, metrics.Value("tsp_node_duration_seconds_count", p, ("node", "model"), ("queue", "ops-gpu"), ("status", "ok")));
                Assert.Equal(1, metrics.Value("tsp_node_duration_seconds_count", p, ("node", "pre"), ("status", "failed")));
                Assert.Equal(good, metrics.Value("tsp_node_duration_seconds_count", p, ("node", "check"), ("status", "failed")));
                Assert.Equal(good, metrics.Value("tsp_node_duration_seconds_count", p, ("node", "check"), ("status", "ok")));
                Assert.Equal(good, metrics.Value("tsp_node_retries_total", p, ("node", "check"), ("queue", "ops-cpu"), ("reason", "failed")));
                Assert.Equal(1, metrics.Value("tsp_dead_letters_total", p, ("origin", "run")));
                Assert.Equal(1, metrics.Value("tsp_dead_letters_total", p, ("origin", "kafka")));

                var model = new[] { ("model", "doubler"), ("version", "1") };
                Assert.Equal(good, metrics.Value("tsp_model_inferences_total", model));
                var batches = metrics.Value("tsp_model_batches_total", model);
                Assert.InRange(batches, 1, good);
                Assert.Equal(batches, metrics.Value("tsp_model_batch_size_count", model));
                Assert.Equal(good, metrics.Value("tsp_model_batch_size_sum", model));
                Assert.Equal(batches, metrics.Value("tsp_model_compute_seconds_count", model));
                Assert.Equal(good, metrics.Value("tsp_model_queue_seconds_count", model));
                Assert.Equal(1, metrics.Value("tsp_models_loaded", ("model", "doubler"), ("version", "1"), ("provider", "CPU")));

                foreach (var (queue, role) in new[] { ("ops-cpu", "cpu"), ("ops-gpu", "gpu") })
                {
                    var labels = new[] { ("queue", queue), ("role", role) };
                    Assert.Equal(0, metrics.Value("tsp_queue_depth", labels));
                    Assert.Equal(0, metrics.Value("tsp_queue_in_flight", labels));
                    Assert.True(metrics.Value("tsp_queue_routees", labels) >= 1, $"{queue} has routees");
                    Assert.True(metrics.Value("tsp_queue_free_credits", labels) >= 1, $"{queue} has free credits");
                }

                var lag = metrics.Find("tsp_kafka_lag", p, ("topic", KafkaTopics.Frames(_project)));
                Assert.NotEmpty(lag);
                Assert.All(lag, partition => Assert.Equal(0, partition.Value));
                Assert.Equal(1, metrics.Value("tsp_subscribers", p));
                Assert.True(metrics.Value("tsp_subscriber_lag", p) >= 0);
                Assert.True(metrics.Find("tsp_journal_write_seconds_count").Sum(s => s.Value) > 0, "journal writes are timed");
                Assert.Equal(0, metrics.Value("tsp_runs_active", ("state", "started")));
                Assert.NotEmpty(metrics.Find("dotnet_gc_heap_total_allocated_bytes_total"));
            },
            Patience);
    }

    [Fact]
    public async Task A_real_Prometheus_scrapes_the_endpoint_and_answers_a_query_by_project()
    {
        using var prometheus = await PrometheusServer.StartAsync(new Uri(fixture.HttpUrl).Authority);
        await Eventually.HoldsAsync(
            async () =>
            {
                var completed = await prometheus.QueryAsync($"sum by (status) (tsp_runs_completed_total{{project=\"{_project}\"}})");
                Assert.Equal(MeteredRunFixture.GoodFrames, Assert.Single(completed, s => s.Labels["status"] == "succeeded").Value);
                Assert.Equal(1, Assert.Single(completed, s => s.Labels["status"] == "failed").Value);
                var up = await prometheus.QueryAsync("up{job=\"tsp\"}");
                Assert.Equal(1, Assert.Single(up).Value);
            },
            TimeSpan.FromSeconds(90));
    }

    [Fact]
    public async Task Every_series_the_Grafana_dashboard_queries_is_exported()
    {
        using var dashboard = System.Text.Json.JsonDocument.Parse(await File.ReadAllTextAsync(RepositoryFiles.PathOf("deploy", "grafana", "tsp-dashboard.json")));
        var queried = dashboard.RootElement.GetProperty("panels").EnumerateArray()
            .Where(panel => panel.TryGetProperty("targets", out _))
            .SelectMany(panel => panel.GetProperty("targets").EnumerateArray().Select(t => (Panel: panel.GetProperty("title").GetString(), Expr: t.GetProperty("expr").GetString()!)))
            .SelectMany(t => System.Text.RegularExpressions.Regex.Matches(t.Expr, "tsp_[a-z_]+").Select(m => (t.Panel, Series: m.Value)))
            .ToList();
        Assert.True(queried.Count > 20, $"only {queried.Count} series queried");
        await Eventually.HoldsAsync(
            async () =>
            {
                var exported = (await fixture.ScrapeAsync()).Samples.Select(s => s.Name).ToHashSet();
                Assert.All(queried, q => Assert.True(exported.Contains(q.Series), $"panel '{q.Panel}' queries {q.Series}, which no process exports"));
            },
            Patience);
    }

    [Fact]
    public async Task Live_and_ready_answer_200_and_name_each_check()
    {
        using var live = await fixture.Http.GetAsync($"{fixture.HttpUrl}{OperationsHttp.LivePath}");
        Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        using var ready = await fixture.Http.GetAsync($"{fixture.HttpUrl}{OperationsHttp.ReadyPath}");
        var body = await ready.Content.ReadAsStringAsync();
        Assert.True(ready.StatusCode == HttpStatusCode.OK, body);
        foreach (var check in new[] { "\"member\"", "\"redis\"", "\"journal\"", "doubler v1 on CPU" })
        {
            Assert.Contains(check, body, StringComparison.Ordinal);
        }
    }
}
