using System.Diagnostics;
using System.Net.Http;
using System.Text;
using Tsp.Actors.Hosting;
using Tsp.Actors.Ingest;
using Tsp.Actors.Storage;
using Tsp.ServiceDefaults.Embedded;
using Tsp.Tests.Shared;
using Xunit.Abstractions;

namespace Tsp.Integration.Tests.Operations;

/// <summary>
/// The test plays KEDA: it reads a queue's depth from the orchestrator's /metrics, starts a worker
/// when tasks wait and none runs (scale from zero), and stops it with SIGTERM once the queue has been
/// idle a while (scale to zero; the worker drains first). Twice over, with nothing lost.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class AutoscalingTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(180);
    private readonly ChildProcesses _processes = new(output);
    private readonly EmbeddedKafka _kafka = EmbeddedKafka.Start();

    public void Dispose()
    {
        _processes.Dispose();
        _kafka.Dispose();
    }

    [Fact]
    public async Task A_worker_started_on_queue_depth_and_stopped_when_idle_runs_every_frame_once_from_zero_and_back()
    {
        var project = TestServers.Unique("scale");
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            nodes:
              - { id: model, processor: sleep, role: gpu, queue: gpu-scale, params: { ms: 100 } }
            """);
        var (seedPort, httpPort) = (TestPorts.Free(), TestPorts.Free());
        var seed = _processes.Start("Tsp.Seed.dll", "run", "--roles", "seed,orchestrator", "--grpc-port", "-1", "--http-port", ChildProcesses.Port(httpPort),
            "--port", ChildProcesses.Port(seedPort), "--redis", TestServers.Redis, "--kafka", _kafka.BootstrapServers, "--journal", TestServers.TempSqlitePath(), "--workflow", workflow);
        await seed.WaitForLineAsync(l => l.StartsWith("metrics: ", StringComparison.Ordinal), Patience);
        using var scaler = new QueueAutoscaler(
            $"http://127.0.0.1:{httpPort}/metrics",
            "gpu-scale",
            () => _processes.Start("Tsp.GpuNode.dll", "--seed", $"127.0.0.1:{seedPort}", "--port", ChildProcesses.Port(TestPorts.Free()), "--roles", "gpu", "--redis", TestServers.Redis),
            output);
        await using var store = await RedisStore.ConnectAsync(TestServers.Redis);
        using var producer = new FrameProducer(_kafka.BootstrapServers);
        var produced = new List<string>();

        foreach (var frames in new[] { 30, 20 })
        {
            for (var i = 0; i < frames; i++)
            {
                produced.Add(await producer.ProduceAsync(project, Encoding.UTF8.GetBytes($"frame {produced.Count}")));
            }

            await scaler.RunUntilAsync(async () => scaler.Running is null && (await store.ReadResultsAsync(project, 0, produced.Count + 10)).Count >= produced.Count, Patience);
        }

        Assert.Equal(2, scaler.Started);
        Assert.Equal([0, 0], scaler.ExitCodes);
        var results = await store.ReadResultsAsync(project, 0, produced.Count + 10);
        Assert.Equal(produced.Order(StringComparer.Ordinal), results.Select(r => r.Result.RunId).Order(StringComparer.Ordinal));
        Assert.All(results, r => Assert.Equal(Tsp.Actors.Protocol.RunStatus.Succeeded, r.Result.Status));
    }

    /// <summary>One worker at most: started when the queue has waiting tasks and none runs, stopped
    /// (SIGTERM, drained) once the queue has had nothing waiting or in flight for <see cref="IdleFor"/>.</summary>
    private sealed class QueueAutoscaler(string metricsUrl, string queue, Func<ChildProcess> startWorker, ITestOutputHelper output) : IDisposable
    {
        private static readonly TimeSpan IdleFor = TimeSpan.FromSeconds(3);
        private readonly HttpClient _http = new();
        private Stopwatch? _idle;

        public ChildProcess? Running { get; private set; }

        public int Started { get; private set; }

        public List<int> ExitCodes { get; } = [];

        public async Task RunUntilAsync(Func<Task<bool>> done, TimeSpan within)
        {
            var waited = Stopwatch.StartNew();
            while (!await done())
            {
                Assert.True(waited.Elapsed < within, $"not done within {within.TotalSeconds:0} s: worker {(Running is null ? "stopped" : "running")}, started {Started} time(s)");
                await StepAsync();
                await Task.Delay(250);
            }
        }

        private async Task StepAsync()
        {
            var metrics = PrometheusText.Parse(await _http.GetStringAsync(metricsUrl));
            var depth = metrics.Find("tsp_queue_depth", ("queue", queue)).Sum(s => s.Value);
            var inFlight = metrics.Find("tsp_queue_in_flight", ("queue", queue)).Sum(s => s.Value);
            if (Running is null)
            {
                if (depth > 0)
                {
                    output.WriteLine($"autoscaler: {depth} task(s) waiting on {queue} and no worker: starting one");
                    Running = startWorker();
                    Started++;
                }

                return;
            }

            if (depth > 0 || inFlight > 0)
            {
                _idle = null;
                return;
            }

            _idle ??= Stopwatch.StartNew();
            if (_idle.Elapsed >= IdleFor)
            {
                output.WriteLine($"autoscaler: {queue} idle for {IdleFor.TotalSeconds:0} s: stopping the worker");
                Running.Signal("TERM");
                Assert.True(Running.Process.WaitForExit(60_000), "the worker did not exit within 60 s of SIGTERM");
                ExitCodes.Add(Running.Process.ExitCode);
                Running = null;
                _idle = null;
            }
        }

        public void Dispose() => _http.Dispose();
    }
}
