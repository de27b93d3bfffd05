using Tsp.Actors.Hosting;
using Tsp.Actors.Protocol;
using Tsp.Tests.Shared;
using Xunit.Abstractions;

namespace Tsp.Integration.Tests;

/// <summary>A whole member on a Redis Cluster of three masters, its endpoints given as an operator
/// gives them: frames, node outputs, the results log, dead letters with their frames, redrives.</summary>
[Collection(ClusterCollection.Name)]
public sealed class RedisClusterTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);
    private readonly ChildProcesses _processes = new(output);

    public void Dispose() => _processes.Dispose();

    [Fact]
    public async Task Runs_results_dead_letters_and_a_redrive_work_on_a_redis_cluster()
    {
        var project = TestServers.Unique("rcluster");
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            nodes:
              - { id: sum, processor: checksum, role: cpu, queue: cpu-rcluster }
              - { id: copy, processor: passthrough, role: cpu, queue: cpu-rcluster, after: [sum] }
              - { id: check, processor: flaky, role: cpu, queue: cpu-rcluster, after: [sum, copy], max_attempts: 1, params: { permanent: "true" }, when: "sum.score < 0.25" }
            """);
        var grpcPort = TestPorts.Free();
        var member = _processes.Start("Tsp.Seed.dll", "run", "--port", ChildProcesses.Port(TestPorts.Free()), "--grpc-port", ChildProcesses.Port(grpcPort),
            "--roles", "seed,orchestrator,cpu", "--redis", TestServers.RedisCluster, "--journal", TestServers.TempSqlitePath(), "--workflow", workflow);
        await member.WaitForLineAsync(l => l.StartsWith("grpc: ", StringComparison.Ordinal), Timeout);
        using var channel = GrpcTestClients.Channel($"http://127.0.0.1:{grpcPort}");
        var client = new TspService.TspServiceClient(channel);
        var control = new TspControl.TspControlClient(channel);

        var runs = await Task.WhenAll(Enumerable.Range(0, 40).Select(async i => (await client.SubmitAsync(new SubmitRequest { Frame = GrpcTestClients.Frame(project, i) })).RunId));
        var results = new List<TpResult>();
        foreach (var run in runs)
        {
            results.Add(await ResultAsync(client, project, run));
        }

        // Every run's keys went where its own id hashes, the log's to its project's slot: all of them
        // finished, in consecutive positions, the failed ones (a quarter, by checksum) as dead letters.
        Assert.Equal(Enumerable.Range(1, 40).Select(i => (long)i), results.Select(r => r.Position).Order());
        var failed = results.Where(r => r.Status == RunStatus.Failed).ToList();
        Assert.NotEmpty(failed);
        Assert.All(results.Except(failed), r => Assert.Equal(RunStatus.Succeeded, r.Status));
        var deadLetters = (await control.ListDeadLettersAsync(new ListDeadLettersRequest { Project = project })).DeadLetters;
        Assert.Equal(failed.Select(r => r.RunId).Order(), deadLetters.Select(d => d.Reference).Order());

        // A redrive reads the dead run's frame copy from its run's slot and runs the same frame again.
        var redriven = await control.RedriveDeadLettersAsync(new RedriveRequest { Project = project, Select = "all" });
        Assert.Equal(failed.Count, redriven.Redriven.Count);
        foreach (var outcome in redriven.Redriven)
        {
            Assert.Equal(StartOutcome.Accepted, outcome.Outcome);
            var again = await ResultAsync(client, project, outcome.RunId);
            var original = failed.Single(r => r.RunId == again.RedriveOf);
            Assert.Equal(original.Nodes.Single(n => n.NodeId == "sum").Metrics, again.Nodes.Single(n => n.NodeId == "sum").Metrics);
        }
    }

    private static Task<TpResult> ResultAsync(TspService.TspServiceClient client, string project, string run) =>
        GrpcTestClients.ResultAsync(client, project, run, Timeout);
}
