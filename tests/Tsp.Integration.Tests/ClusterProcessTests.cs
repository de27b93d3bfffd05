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

    [Fact]
    public async Task A_worker_killed_mid_stream_loses_no_frame_and_the_subscriber_sees_no_run_twice()
    {
        var (results, victim, _) = await StreamWithAWorkerStoppedMidwayAsync("kill", victim =>
        {
            // kill -9: no goodbye to the cluster.
            victim.Process.Kill();
            return Task.CompletedTask;
        });

        Assert.True(victim.Process.HasExited);
        Assert.All(results, r => Assert.Equal(RunStatus.Succeeded, r.Status));
    }

    [Fact]
    public async Task A_worker_stopped_with_SIGTERM_finishes_its_tasks_before_it_leaves_and_none_is_retried()
    {
        var (results, victim, seedPort) = await StreamWithAWorkerStoppedMidwayAsync("term", async victim =>
        {
            using var signal = Process.Start("kill", ["-TERM", victim.Process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            await signal.WaitForExitAsync();
        });

        Assert.True(victim.Process.WaitForExit(60_000), "the worker did not exit within 60 s of SIGTERM");
        Assert.Equal(0, victim.Process.ExitCode);
        Assert.All(results, r => Assert.All(r.Nodes, n => Assert.Equal(1, n.Attempts)));

        // The orchestrator's queues took no task back from a routee: none was re-run elsewhere.
        var status = _processes.Start("Tsp.Seed.dll", "status", "--seed", $"127.0.0.1:{seedPort}");
        Assert.True(status.Process.WaitForExit(60_000), "status did not finish");
        status.Process.WaitForExit();
        var text = string.Join('\n', status.Lines);
        output.WriteLine(text);
        Assert.Matches(@"cpu-term \(cpu\) .* retried=0 requeued=0 failed=0", text);
        Assert.Matches(@"gpu-term \(gpu\) .* retried=0 requeued=0 failed=0", text);
        Assert.Contains(victim.Lines, l => l.Contains("node routees drained", StringComparison.Ordinal));
        Assert.DoesNotContain(victim.Lines, l => l.Contains("did not drain", StringComparison.Ordinal));
    }

    /// <summary>Seed + two workers; 2,000 frames through Kafka while a gRPC subscriber reads from the
    /// start; halfway, once the first worker has done work, <paramref name="stop"/> is applied to it.
    /// Asserts every frame's result arrived exactly once and both workers executed tasks.</summary>
    private async Task<(List<TpResult> Results, ChildProcess Victim, int SeedPort)> StreamWithAWorkerStoppedMidwayAsync(string name, Func<ChildProcess, Task> stop)
    {
        var project = TestServers.Unique(name);
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            defaults: { timeout: 10s }
            nodes:
              - { id: pre, processor: passthrough, role: cpu, queue: cpu-{{name}} }
              - { id: model, processor: sleep, role: gpu, queue: gpu-{{name}}, after: [pre], params: { ms: 5 } }
              - { id: post, processor: checksum, role: cpu, queue: cpu-{{name}}, after: [model] }
            """);
        var (seedPort, grpcPort) = (TspHostingExtensions.FreePort(), TspHostingExtensions.FreePort());
        string Port(int port) => port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var seed = _processes.Start("Tsp.Seed.dll", "run", "--grpc-port", Port(grpcPort), "--port", Port(seedPort), "--redis", TestServers.Redis, "--kafka", _kafka.BootstrapServers, "--journal", TestServers.TempSqlitePath(), "--workflow", workflow);
        await seed.WaitForLineAsync(l => l.StartsWith("grpc: ", StringComparison.Ordinal), TimeSpan.FromSeconds(90));
        var workerPorts = new[] { TspHostingExtensions.FreePort(), TspHostingExtensions.FreePort() };
        var workers = workerPorts.Select(p => _processes.Start("Tsp.GpuNode.dll", "--seed", $"127.0.0.1:{seedPort}", "--port", Port(p), "--roles", "gpu,cpu", "--redis", TestServers.Redis)).ToList();

        using var channel = GrpcTestClients.Channel($"http://127.0.0.1:{grpcPort}");
        using var subscription = new TspService.TspServiceClient(channel).Subscribe(new SubscribeRequest { Projects = { project }, From = "earliest" });
        var received = new List<TpResult>();
        const int frames = 2000;
        var reading = Task.Run(async () =>
        {
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(180));
            while (received.Select(r => r.RunId).Distinct().Count() < frames && await subscription.ResponseStream.MoveNext(deadline.Token))
            {
                lock (received)
                {
                    received.Add(subscription.ResponseStream.Current);
                }
            }
        });

        using var producer = new FrameProducer(_kafka.BootstrapServers);
        var produced = new List<string>();
        var victim = $"tsp@127.0.0.1:{workerPorts[0]}/";
        for (var i = 0; i < frames; i++)
        {
            produced.Add(await producer.ProduceAsync(project, Encoding.UTF8.GetBytes($"frame {i}")));
            if (i == frames / 2)
            {
                // Mid-stream, once the victim has done work.
                var patience = Stopwatch.StartNew();
                while (patience.Elapsed < TimeSpan.FromSeconds(60))
                {
                    lock (received)
                    {
                        if (received.Any(r => r.Nodes.Any(n => n.Worker.StartsWith(victim, StringComparison.Ordinal))))
                        {
                            break;
                        }
                    }

                    await Task.Delay(20);
                }

                await stop(workers[0]);
            }
        }

        await reading;
        List<TpResult> results;
        lock (received)
        {
            results = [.. received];
        }

        Assert.Equal(produced.Order(StringComparer.Ordinal), results.Select(r => r.RunId).Order(StringComparer.Ordinal));
        Assert.Equal(results.Count, results.Select(r => r.Position).Distinct().Count());
        Assert.Contains(results, r => r.Nodes.Any(n => n.Worker.StartsWith(victim, StringComparison.Ordinal)));
        Assert.Contains(results, r => r.Nodes.Any(n => n.Worker.StartsWith($"tsp@127.0.0.1:{workerPorts[1]}/", StringComparison.Ordinal)));
        return (results, workers[0], seedPort);
    }

    [Fact]
    public async Task A_worker_started_mid_stream_gets_routees_and_takes_work_while_every_result_arrives()
    {
        var project = TestServers.Unique("scale");
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            nodes:
              - { id: pre, processor: passthrough, role: cpu, queue: cpu-s }
              - { id: model, processor: sleep, role: gpu, queue: gpu-s, after: [pre], params: { ms: 10 } }
            """);
        string Port(int port) => port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var seedPort = TspHostingExtensions.FreePort();
        var seed = _processes.Start("Tsp.Seed.dll", "run", "--grpc-port", "0", "--port", Port(seedPort), "--redis", TestServers.Redis, "--kafka", _kafka.BootstrapServers, "--journal", TestServers.TempSqlitePath(), "--workflow", workflow);
        await seed.WaitForLineAsync(l => l.StartsWith("cluster: ", StringComparison.Ordinal), TimeSpan.FromSeconds(90));
        var (first, second) = (TspHostingExtensions.FreePort(), TspHostingExtensions.FreePort());
        _processes.Start("Tsp.GpuNode.dll", "--seed", $"127.0.0.1:{seedPort}", "--port", Port(first), "--roles", "gpu,cpu", "--redis", TestServers.Redis);

        const int frames = 2000;
        using var producer = new FrameProducer(_kafka.BootstrapServers);
        var produced = new List<string>();
        await using var store = await RedisStore.ConnectAsync(TestServers.Redis);
        for (var i = 0; i < frames; i++)
        {
            produced.Add(await producer.ProduceAsync(project, Encoding.UTF8.GetBytes($"frame {i}")));
            if (i == frames / 4)
            {
                // Scale out once the first worker is busy.
                while ((await store.LatestPositionAsync(project)) == 0)
                {
                    Assert.False(seed.Process.HasExited);
                    await Task.Delay(50);
                }

                _processes.Start("Tsp.GpuNode.dll", "--seed", $"127.0.0.1:{seedPort}", "--port", Port(second), "--roles", "gpu,cpu", "--redis", TestServers.Redis);
            }
        }

        var deadline = Stopwatch.StartNew();
        IReadOnlyList<PositionedResult> logged = [];
        while (deadline.Elapsed < TimeSpan.FromSeconds(150) && logged.Count < frames)
        {
            Assert.All(_processes.Started, p => Assert.False(p.Process.HasExited, $"a process exited early with {(p.Process.HasExited ? p.Process.ExitCode : 0)}"));
            await Task.Delay(200);
            logged = await store.ReadResultsAsync(project, 0, frames + 10);
        }

        Assert.Equal(produced.Order(StringComparer.Ordinal), logged.Select(r => r.Result.RunId).Order(StringComparer.Ordinal));
        var workers = logged.SelectMany(r => r.Result.Nodes).Select(n => n.Worker.Split('/')[0]).ToHashSet();
        Assert.Contains($"tsp@127.0.0.1:{first}", workers);
        Assert.Contains($"tsp@127.0.0.1:{second}", workers);
    }
}

