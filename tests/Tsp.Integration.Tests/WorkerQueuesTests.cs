using System.Text.RegularExpressions;
using Tsp.Actors.Hosting;
using Tsp.Actors.Protocol;
using Tsp.Integration.Tests.Operations;
using Tsp.Tests.Shared;
using Xunit.Abstractions;

namespace Tsp.Integration.Tests;

/// <summary>Workers name the queues they serve (<c>--queues</c>): each queue of one role scales on its
/// own machines, as Celery's <c>-Q</c> lets it.</summary>
[Collection(ClusterCollection.Name)]
public sealed class WorkerQueuesTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);
    private readonly ChildProcesses _processes = new(output);

    public void Dispose() => _processes.Dispose();

    [Fact]
    public async Task Each_queue_runs_only_on_the_workers_that_serve_it_and_scaling_one_leaves_the_other_as_it_was()
    {
        var project = TestServers.Unique("queues");
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            nodes:
              - { id: detect, processor: sleep, role: gpu, queue: gpu-detect, params: { ms: 200 } }
              - { id: read, processor: sleep, role: gpu, queue: gpu-read, params: { ms: 200 }, after: [detect] }
            """);
        var (seedPort, grpcPort) = (TestPorts.Free(), TestPorts.Free());
        var orchestrator = _processes.Start("Tsp.Seed.dll", "run", "--port", ChildProcesses.Port(seedPort), "--grpc-port", ChildProcesses.Port(grpcPort), "--redis", TestServers.Redis, "--workflow", workflow);
        await orchestrator.WaitForLineAsync(l => l.StartsWith("grpc: ", StringComparison.Ordinal), Timeout);
        var (detectPort, readPort) = (TestPorts.Free(), TestPorts.Free());
        var detectWorker = StartWorker(seedPort, detectPort, "gpu-detect=2");
        var readWorker = StartWorker(seedPort, readPort, "gpu-read=1");
        await detectWorker.WaitForLineAsync(l => l == "serves: gpu-detect=2", Timeout);
        await _processes.StatusAsync(seedPort, text => Regex.IsMatch(text, @"gpu-detect \(gpu\)  routees=1 credits=\d+/2 ") && Regex.IsMatch(text, @"gpu-read \(gpu\)  routees=1 credits=\d+/1 "));

        var first = await RunAsync(project, grpcPort, count: 8);
        Assert.All(first, r => Assert.Equal(RunStatus.Succeeded, r.Status));
        Assert.All(first, r => Assert.StartsWith($"tsp@127.0.0.1:{detectPort}/", WorkerOf(r, "detect"), StringComparison.Ordinal));
        Assert.All(first, r => Assert.StartsWith($"tsp@127.0.0.1:{readPort}/", WorkerOf(r, "read"), StringComparison.Ordinal));

        // A second detect worker: the detect queue has twice its slots, the read queue what it had.
        var secondDetectPort = TestPorts.Free();
        StartWorker(seedPort, secondDetectPort, "gpu-detect=2");
        await _processes.StatusAsync(seedPort, text => Regex.IsMatch(text, @"gpu-detect \(gpu\)  routees=2 credits=\d+/4 ") && Regex.IsMatch(text, @"gpu-read \(gpu\)  routees=1 credits=\d+/1 "));

        var second = await RunAsync(project, grpcPort, count: 16);
        var detectedOn = second.Select(r => WorkerOf(r, "detect")[..WorkerOf(r, "detect").IndexOf('/', StringComparison.Ordinal)]).ToHashSet();
        output.WriteLine($"detect ran on {string.Join(", ", detectedOn)}");
        Assert.Equal(new[] { $"tsp@127.0.0.1:{detectPort}", $"tsp@127.0.0.1:{secondDetectPort}" }.Order(), detectedOn.Order());
        Assert.All(second, r => Assert.StartsWith($"tsp@127.0.0.1:{readPort}/", WorkerOf(r, "read"), StringComparison.Ordinal));

        // The worker's own figures: no slot of a queue it does not serve, never more tasks than its slots.
        using var http = new HttpClient();
        var metrics = (await readWorker.WaitForLineAsync(l => l.StartsWith("metrics: ", StringComparison.Ordinal), Timeout))["metrics: ".Length..];
        var scraped = PrometheusText.Parse(await http.GetStringAsync(metrics));
        Assert.Equal(1, scraped.Value("tsp_worker_slots", ("queue", "gpu-read")));
        Assert.Equal(1, scraped.Value("tsp_worker_tasks_peak", ("queue", "gpu-read")));
        Assert.Equal(0, scraped.Value("tsp_worker_slots", ("queue", "gpu-detect")));
        Assert.Equal(0, scraped.Value("tsp_worker_tasks_peak", ("queue", "gpu-detect")));
    }

    private ChildProcess StartWorker(int seedPort, int port, string queues) =>
        _processes.Start("Tsp.GpuNode.dll", "--seed", $"127.0.0.1:{seedPort}", "--port", ChildProcesses.Port(port), "--roles", "gpu", "--redis", TestServers.Redis, "--queues", queues);

    private static string WorkerOf(TpResult result, string node) => result.Nodes.Single(n => n.NodeId == node).Worker;

    /// <summary>Submits <paramref name="count"/> frames at once and waits for every result.</summary>
    private static async Task<List<TpResult>> RunAsync(string project, int grpcPort, int count)
    {
        using var channel = GrpcTestClients.Channel($"http://127.0.0.1:{grpcPort}");
        var client = new TspService.TspServiceClient(channel);
        var runs = await Task.WhenAll(Enumerable.Range(0, count).Select(async i => (await client.SubmitAsync(new SubmitRequest { Frame = GrpcTestClients.Frame(project, i) })).RunId));
        var results = new List<TpResult>();
        foreach (var run in runs)
        {
            results.Add(await GrpcTestClients.ResultAsync(client, project, run, Timeout));
        }

        return results;
    }
}
