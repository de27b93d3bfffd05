using System.Diagnostics;
using System.Text;
using Tsp.Actors.Hosting;
using Tsp.Actors.Ingest;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Tests.Shared;
using Xunit.Abstractions;

namespace Tsp.Integration.Tests;

/// <summary>The cluster topology with real processes on loopback: a seed/orchestrator and a worker.</summary>
[Collection(ClusterCollection.Name)]
public sealed class ClusterProcessTests(ITestOutputHelper output) : IDisposable
{
    private readonly ChildProcesses _processes = new(output);
    private readonly EmbeddedKafka _kafka = EmbeddedKafka.Start();

    public void Dispose()
    {
        _processes.Dispose();
        _kafka.Dispose();
    }

    [Fact]
    public async Task Node_work_runs_on_a_separate_worker_process_and_every_frame_gets_its_result()
    {
        var project = TestServers.Unique("proc");
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            nodes:
              - { id: pre, processor: passthrough, role: cpu, queue: cpu-p }
              - { id: model, processor: sleep, role: gpu, queue: gpu-p, after: [pre], params: { ms: 5 } }
              - { id: post, processor: checksum, role: cpu, queue: cpu-p, after: [model] }
            """);
        var seedPort = TspHostingExtensions.FreePort();
        var workerPort = TspHostingExtensions.FreePort();
        _processes.Start("Tsp.Seed.dll", "run", "--grpc-port", "0", "--port", seedPort.ToString(System.Globalization.CultureInfo.InvariantCulture), "--redis", TestServers.Redis, "--kafka", _kafka.BootstrapServers, "--journal", TestServers.TempSqlitePath(), "--workflow", workflow);
        _processes.Start("Tsp.GpuNode.dll", "--seed", $"127.0.0.1:{seedPort}", "--port", workerPort.ToString(System.Globalization.CultureInfo.InvariantCulture), "--roles", "gpu,cpu", "--redis", TestServers.Redis);

        using var producer = new FrameProducer(_kafka.BootstrapServers);
        var expected = new List<string>();
        for (var i = 0; i < 50; i++)
        {
            expected.Add(await producer.ProduceAsync(project, Encoding.UTF8.GetBytes($"frame {i}")));
        }

        await using var store = await RedisStore.ConnectAsync(TestServers.Redis);
        var deadline = Stopwatch.StartNew();
        IReadOnlyList<PositionedResult> logged = [];
        while (deadline.Elapsed < TimeSpan.FromSeconds(120) && logged.Count < expected.Count)
        {
            Assert.All(_processes.Started, p => Assert.False(p.Process.HasExited, $"a process exited early with {(p.Process.HasExited ? p.Process.ExitCode : 0)}"));
            await Task.Delay(200);
            logged = await store.ReadResultsAsync(project, 0, 1000);
        }

        Assert.Equal(expected.Order(), logged.Select(r => r.Result.RunId).Order());
        Assert.All(logged, r => Assert.Equal(RunStatus.Succeeded, r.Result.Status));
        // The seed has roles seed and orchestrator only: every node ran on the worker's member.
        Assert.All(logged.SelectMany(r => r.Result.Nodes), n => Assert.StartsWith($"tsp@127.0.0.1:{workerPort}/", n.Worker, StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_status_command_shows_members_roles_queues_and_projects()
    {
        var project = TestServers.Unique("status");
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            nodes:
              - { id: pre, processor: passthrough, role: cpu, queue: cpu-status }
            """);
        var seedPort = TspHostingExtensions.FreePort();
        var workerPort = TspHostingExtensions.FreePort();
        var seed = _processes.Start("Tsp.Seed.dll", "run", "--grpc-port", "0", "--port", seedPort.ToString(System.Globalization.CultureInfo.InvariantCulture), "--redis", TestServers.Redis, "--kafka", _kafka.BootstrapServers, "--journal", TestServers.TempSqlitePath(), "--workflow", workflow);
        await seed.WaitForLineAsync(l => l.StartsWith("cluster: ", StringComparison.Ordinal), TimeSpan.FromSeconds(90));
        _processes.Start("Tsp.GpuNode.dll", "--seed", $"127.0.0.1:{seedPort}", "--port", workerPort.ToString(System.Globalization.CultureInfo.InvariantCulture), "--roles", "cpu", "--redis", TestServers.Redis);

        // Until the worker is up and its routees are counted.
        var deadline = Stopwatch.StartNew();
        string text;
        do
        {
            var status = _processes.Start("Tsp.Seed.dll", "status", "--seed", $"127.0.0.1:{seedPort}");
            Assert.True(status.Process.WaitForExit(60_000), "status did not finish");
            status.Process.WaitForExit();
            Assert.Equal(0, status.Process.ExitCode);
            text = string.Join('\n', status.Lines);
        }
        while ((!text.Contains("routees=", StringComparison.Ordinal) || text.Contains("routees=0", StringComparison.Ordinal)) && deadline.Elapsed < TimeSpan.FromSeconds(60));

        output.WriteLine(text);
        Assert.Matches($@"akka.tcp://tsp@127.0.0.1:{seedPort}  Up  reachable  roles=orchestrator,seed", text);
        Assert.Matches($@"akka.tcp://tsp@127.0.0.1:{workerPort}  Up  reachable  roles=cpu", text);
        Assert.Matches(@"cpu-status \(cpu\)  routees=[1-9]\d* credits=\d+/\d+ waiting=0 in_flight=0", text);
        Assert.Contains($"  {project}  kafka_in_flight_runs=0", text, StringComparison.Ordinal);

        var unreachable = _processes.Start("Tsp.Seed.dll", "status", "--seed", "127.0.0.1:1");
        Assert.True(unreachable.Process.WaitForExit(60_000));
        Assert.Equal(4, unreachable.Process.ExitCode);
    }
}
