using System.Text.RegularExpressions;
using Tsp.Actors.Hosting;
using Tsp.Actors.Protocol;
using Tsp.Integration.Tests.Operations;
using Tsp.ServiceDefaults.Embedded;
using Tsp.Tests.Shared;
using Xunit.Abstractions;

namespace Tsp.Integration.Tests;

/// <summary>Capacity belongs to the worker: two orchestrators each deploy their routees on one worker,
/// and together they never run more of a queue's tasks there at once than the worker's slots.</summary>
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
        var (firstGrpc, secondGrpc) = (TspHostingExtensions.FreePort(), TspHostingExtensions.FreePort());
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
                await Eventually.HoldsAsync(
                    async () => Assert.Equal(RunPhase.Finished, (await client.GetResultAsync(new GetResultRequest { Project = project, RunId = run })).Phase),
                    Timeout);
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
}
