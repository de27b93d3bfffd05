using System.Text.RegularExpressions;
using Tsp.Actors.Hosting;
using Tsp.Actors.Protocol;
using Tsp.Integration.Tests.Operations;
using Tsp.ServiceDefaults.Embedded;
using Tsp.Tests.Shared;
using Xunit.Abstractions;

namespace Tsp.Integration.Tests;

/// <summary>Capacity belongs to the worker: two orchestrators each deploy their routees on one worker,
/// and together they never run more of a queue's tasks there at once than the worker's slots; a
/// project's frames get their turn on those slots whichever orchestrators hold its runs.</summary>
[Collection(ClusterCollection.Name)]
public sealed class WorkerCapacityTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);
    private readonly ChildProcesses _processes = new(output);
    private readonly EmbeddedKafka _kafka = EmbeddedKafka.Start();

    public void Dispose()
    {
        _processes.Dispose();
        _kafka.Dispose();
    }

    [Fact]
    public async Task Two_orchestrators_share_a_workers_slots_instead_of_each_filling_them()
    {
        var project = TestServers.Unique("cap");
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            nodes:
              - { id: hold, processor: sleep, role: gpu, queue: gpu-cap, params: { ms: 2000 } }
            """);
        var (firstGrpc, secondGrpc) = (TestPorts.Free(), TestPorts.Free());
        var cluster = await _processes.StartOrchestratorPairAsync(workflow, _kafka.BootstrapServers, "gpu-cap", (firstGrpc, secondGrpc));
        // A gpu worker's queue holds 1 routee × 8 slots per orchestrator's pool: with two, 4 each.
        foreach (var port in new[] { cluster.FirstPort, cluster.SecondPort })
        {
            await _processes.StatusAsync(port, text => Regex.IsMatch(text, @"gpu-cap \(gpu\)  routees=1 credits=\d+/4 "));
        }
        var metrics = (await cluster.Worker.WaitForLineAsync(l => l.StartsWith("metrics: ", StringComparison.Ordinal), Timeout))["metrics: ".Length..];

        // 12 runs of 2 s on each orchestrator, all submitted before the first wave ends: three waves of
        // 4 on each side, so both orchestrators' routees are busy on the worker at the same time.
        var submitted = await Task.WhenAll(new[] { firstGrpc, secondGrpc }.Select(async port =>
        {
            using var channel = GrpcTestClients.Channel($"http://127.0.0.1:{port}");
            var client = new TspService.TspServiceClient(channel);
            var runs = await Task.WhenAll(Enumerable.Range(0, 12).Select(async i => (await client.SubmitAsync(new SubmitRequest { Frame = GrpcTestClients.Frame(project, i) })).RunId));
            foreach (var run in runs)
            {
                await GrpcTestClients.ResultAsync(client, project, run, Timeout);
            }

            return runs.Length;
        }));

        Assert.Equal(24, submitted.Sum());
        using var http = new HttpClient();
        var scraped = PrometheusText.Parse(await http.GetStringAsync(metrics));
        var slots = scraped.Value("tsp_worker_slots", ("queue", "gpu-cap"));
        var peak = scraped.Value("tsp_worker_tasks_peak", ("queue", "gpu-cap"));
        output.WriteLine($"worker slots {slots}, peak tasks at once {peak}");
        Assert.Equal(8, slots);
        Assert.InRange(peak, 5, 8);
    }

    [Fact]
    public async Task A_trickling_project_finishes_ahead_of_a_flood_that_two_orchestrators_share()
    {
        var (flood, trickle) = (TestServers.Unique("flood"), TestServers.Unique("trickle"));
        string Workflow(string project) => TestServers.WriteWorkflow($$"""
            project: {{project}}
            nodes:
              - { id: hold, processor: sleep, role: gpu, queue: gpu-fair, params: { ms: 2000 } }
            """);
        var (firstGrpc, secondGrpc) = (TestPorts.Free(), TestPorts.Free());
        var cluster = await _processes.StartOrchestratorPairAsync([Workflow(flood), Workflow(trickle)], _kafka.BootstrapServers, "gpu-fair", (firstGrpc, secondGrpc));
        using var firstChannel = GrpcTestClients.Channel($"http://127.0.0.1:{firstGrpc}");
        using var secondChannel = GrpcTestClients.Channel($"http://127.0.0.1:{secondGrpc}");
        var (first, second) = (new TspService.TspServiceClient(firstChannel), new TspService.TspServiceClient(secondChannel));

        // 64 two-second runs on 8 slots: eight waves, held by the run hosts of both orchestrators. Waves
        // of 2 s, not 1: on a busy machine submitting the flood alone took several seconds, and every
        // wave run meanwhile is one the trickle cannot overtake.
        var flooded = await Task.WhenAll(Enumerable.Range(0, 64).Select(async i =>
            (await (i % 2 == 0 ? first : second).SubmitAsync(new SubmitRequest { Frame = GrpcTestClients.Frame(flood, i) })).RunId));
        var trickleSubmittedAt = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var trickled = await Task.WhenAll(Enumerable.Range(0, 4).Select(async i =>
            (await second.SubmitAsync(new SubmitRequest { Frame = GrpcTestClients.Frame(trickle, i) })).RunId));

        Task<TpResult> ResultAsync(string project, string run) => GrpcTestClients.ResultAsync(first, project, run, Timeout);

        var trickleResults = new List<TpResult>();
        foreach (var run in trickled)
        {
            trickleResults.Add(await ResultAsync(trickle, run));
        }

        var floodResults = new List<TpResult>();
        foreach (var run in flooded)
        {
            floodResults.Add(await ResultAsync(flood, run));
        }

        // Order, not time: FIFO queues would finish the trickle after the whole flood.
        var trickleDone = trickleResults.Max(r => r.CompletedAtUnixMs);
        var floodAfter = floodResults.Count(r => r.CompletedAtUnixMs > trickleDone);
        var floodBefore = floodResults.Count(r => r.CompletedAtUnixMs < trickleSubmittedAt);
        output.WriteLine($"flood runs finished before the trickle was submitted: {floodBefore}; after its last run: {floodAfter} of {floodResults.Count}");
        Assert.All(trickleResults.Concat(floodResults), r => Assert.Equal(RunStatus.Succeeded, r.Status));
        Assert.True(floodAfter >= 24, $"only {floodAfter} of the flood's 64 runs were left when the trickle's 4 finished ({floodBefore} had finished before the trickle was submitted)");
    }
}
