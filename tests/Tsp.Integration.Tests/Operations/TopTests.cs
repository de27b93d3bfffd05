using System.Text.RegularExpressions;
using Google.Protobuf;
using Tsp.Actors.Hosting;
using Tsp.Actors.Protocol;
using Tsp.Tests.Shared;
using Xunit.Abstractions;

namespace Tsp.Integration.Tests.Operations;

/// <summary>The <c>top</c> console against a seed and a worker in their own processes: what the worker
/// ran is shown (asked of the worker itself), with the queues, the members and the newest failure.</summary>
[Collection(ClusterCollection.Name)]
public sealed class TopTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(90);
    private readonly ChildProcesses _processes = new(output);

    public void Dispose() => _processes.Dispose();

    [Fact]
    public async Task Top_shows_members_queues_each_nodes_work_on_the_worker_and_the_newest_failure()
    {
        var project = TestServers.Unique("top");
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            nodes:
              - { id: sum, processor: checksum, role: gpu, queue: gpu-top }
              - { id: gate, processor: flaky, role: gpu, queue: gpu-top, after: [sum], params: { permanent: "true" } }
            """);
        var (seedPort, grpcPort) = (TestPorts.Free(), TestPorts.Free());
        var seed = _processes.Start("Tsp.Seed.dll", "run", "--roles", "seed,orchestrator", "--grpc-port", ChildProcesses.Port(grpcPort), "--port", ChildProcesses.Port(seedPort), "--redis", TestServers.Redis, "--journal", TestServers.TempSqlitePath(), "--workflow", workflow);
        await seed.WaitForLineAsync(l => l.StartsWith("grpc: ", StringComparison.Ordinal), Patience);
        var workerPort = TestPorts.Free();
        _processes.Start("Tsp.GpuNode.dll", "--seed", $"127.0.0.1:{seedPort}", "--port", ChildProcesses.Port(workerPort), "--roles", "gpu", "--redis", TestServers.Redis);
        await _processes.StatusAsync(seedPort, text => Regex.IsMatch(text, @"gpu-top \(gpu\)  routees=[1-9]"));

        using var channel = GrpcTestClients.Channel($"http://127.0.0.1:{grpcPort}");
        var client = new TspService.TspServiceClient(channel);
        const int frames = 6;
        for (var i = 0; i < frames; i++)
        {
            await client.SubmitAsync(new SubmitRequest { Frame = new Frame { Project = project, Data = ByteString.CopyFrom((byte)i, 1, 2) } });
        }

        await using var store = await Tsp.Actors.Storage.RedisStore.ConnectAsync(TestServers.Redis);
        Assert.Equal(frames, (await TestServers.WaitForResultsAsync(store, project, frames, Patience)).Count);

        var top = _processes.Start("Tsp.Seed.dll", "top", "--seed", $"127.0.0.1:{seedPort}", "--iterations", "2", "--interval", "1");
        Assert.True(top.Process.WaitForExit(90_000), "top did not finish its two frames");
        top.Process.WaitForExit();
        Assert.Equal(0, top.Process.ExitCode);
        var text = string.Join('\n', top.Lines);
        Assert.Matches($@"127\.0\.0\.1:{workerPort}\s+Up\s+reachable\s+gpu", text);
        Assert.Matches($@"gpu-top\s+gpu\s+1\s+8/8\s+0\s+0 ", text);
        Assert.Matches($@"{Regex.Escape(project)}/sum\s+gpu-top\s+\S+\s+\S+\s+[0-9.]+\s+{frames}\s+0", text);
        Assert.Matches($@"{Regex.Escape(project)}\s+{frames}\s", text);
        Assert.Matches($@"{Regex.Escape(project)} run \S+ node gate: .*flaky: permanent failure", text);
    }
}
