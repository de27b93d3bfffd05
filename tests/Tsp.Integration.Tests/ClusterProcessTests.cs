using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Akka.Hosting;
using Akka.Remote.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Tsp.Actors.Hosting;
using Tsp.Actors.Ingest;
using Tsp.Actors.Northbound;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.ServiceDefaults.Embedded;
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
        var seedPort = TestPorts.Free();
        var workerPort = TestPorts.Free();
        _processes.Start("Tsp.Seed.dll", "run", "--grpc-port", "0", "--port", Port(seedPort), "--redis", TestServers.Redis, "--kafka", _kafka.BootstrapServers, "--journal", TestServers.TempSqlitePath(), "--workflow", workflow);
        _processes.Start("Tsp.GpuNode.dll", "--seed", $"127.0.0.1:{seedPort}", "--port", Port(workerPort), "--roles", "gpu,cpu", "--redis", TestServers.Redis);

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
        var seedPort = TestPorts.Free();
        var workerPort = TestPorts.Free();
        var seed = _processes.Start("Tsp.Seed.dll", "run", "--grpc-port", "0", "--port", Port(seedPort), "--redis", TestServers.Redis, "--kafka", _kafka.BootstrapServers, "--journal", TestServers.TempSqlitePath(), "--workflow", workflow);
        await seed.WaitForLineAsync(l => l.StartsWith("cluster: ", StringComparison.Ordinal), TimeSpan.FromSeconds(90));
        _processes.Start("Tsp.GpuNode.dll", "--seed", $"127.0.0.1:{seedPort}", "--port", Port(workerPort), "--roles", "cpu", "--redis", TestServers.Redis);

        // Until the worker is up and its routees are counted.
        var text = await _processes.StatusAsync(seedPort, t => t.Contains("routees=", StringComparison.Ordinal) && !t.Contains("routees=0", StringComparison.Ordinal));
        output.WriteLine(text);
        Assert.Matches($@"akka.tcp://tsp@127.0.0.1:{seedPort}  Up  reachable  roles=orchestrator,seed", text);
        Assert.Matches($@"akka.tcp://tsp@127.0.0.1:{workerPort}  Up  reachable  roles=cpu", text);
        Assert.Matches(@"cpu-status \(cpu\)  routees=[1-9]\d* credits=\d+/\d+ waiting=0 in_flight=0", text);
        Assert.Contains($"  {project}  kafka_in_flight_runs=0", text, StringComparison.Ordinal);
        // Equal split brain settings on both members: no warning about them.
        Assert.DoesNotContain(seed.Lines, l => l.Contains("resolves splits with", StringComparison.Ordinal));

        var unreachable = _processes.Start("Tsp.Seed.dll", "status", "--seed", "127.0.0.1:1");
        Assert.True(unreachable.Process.WaitForExit(60_000));
        Assert.Equal(4, unreachable.Process.ExitCode);
    }

    [Fact]
    public async Task A_worker_killed_mid_stream_loses_no_frame_and_the_subscriber_sees_no_run_twice()
    {
        var (results, victim, seedPort) = await StreamWithAWorkerStoppedMidwayAsync("kill", victim =>
        {
            // kill -9: no goodbye to the cluster.
            victim.Process.Kill();
            return Task.CompletedTask;
        });

        Assert.True(victim.Process.HasExited);
        Assert.All(results, r => Assert.Equal(RunStatus.Succeeded, r.Status));

        // The tasks the victim held were taken back and run elsewhere.
        var text = await _processes.StatusAsync(seedPort, _ => true);
        output.WriteLine(text);
        var requeued = System.Text.RegularExpressions.Regex.Matches(text, @"requeued=(\d+)").Sum(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(requeued > 0, "no task of the killed worker was re-queued");
    }

    [Fact]
    public async Task A_worker_stopped_with_SIGTERM_finishes_its_tasks_before_it_leaves_and_none_is_retried()
    {
        var (results, victim, seedPort) = await StreamWithAWorkerStoppedMidwayAsync("term", victim =>
        {
            victim.Signal("TERM");
            return Task.CompletedTask;
        });

        Assert.True(victim.Process.WaitForExit(60_000), "the worker did not exit within 60 s of SIGTERM");
        Assert.Equal(0, victim.Process.ExitCode);
        Assert.All(results, r => Assert.All(r.Nodes, n => Assert.Equal(1, n.Attempts)));

        // The orchestrator's queues took no task back from a routee: none was re-run elsewhere.
        var text = await _processes.StatusAsync(seedPort, _ => true);
        output.WriteLine(text);
        Assert.Matches(@"cpu-term \(cpu\) .* retried=0 requeued=0 failed=0", text);
        Assert.Matches(@"gpu-term \(gpu\) .* retried=0 requeued=0 failed=0", text);
        // It held tasks at the signal, and finished them instead of handing them back.
        var drained = Assert.Single(victim.Lines, l => l.Contains("node routees drained", StringComparison.Ordinal));
        var finished = int.Parse(System.Text.RegularExpressions.Regex.Match(drained, @"drained: (\d+) task").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(finished > 0, $"the worker held no task when it was stopped: {drained}");
        Assert.DoesNotContain(victim.Lines, l => l.Contains("did not drain", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_worker_frozen_past_the_heartbeat_pause_has_its_tasks_run_elsewhere_at_once_and_no_result_twice_when_it_returns()
    {
        var project = TestServers.Unique("pause");
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            nodes:
              - { id: model, processor: sleep, role: gpu, queue: gpu-pause, timeout: 60s, params: { ms: 8000 } }
            """);
        // Nobody is downed within this test: only unreachability can move the frozen worker's tasks.
        var slowDowning = new Dictionary<string, string> { ["Tsp__Cluster__StableAfter"] = "00:03:00" };
        var (seedPort, grpcPort, victimPort) = (TestPorts.Free(), TestPorts.Free(), TestPorts.Free());
        var seed = _processes.Start(slowDowning, "Tsp.Seed.dll", "run", "--grpc-port", Port(grpcPort), "--port", Port(seedPort), "--redis", TestServers.Redis, "--kafka", _kafka.BootstrapServers, "--journal", TestServers.TempSqlitePath(), "--workflow", workflow);
        await seed.WaitForLineAsync(l => l.StartsWith("grpc: ", StringComparison.Ordinal), TimeSpan.FromSeconds(90));
        string[] Worker(int port) => ["--seed", $"127.0.0.1:{seedPort}", "--port", Port(port), "--roles", "gpu", "--redis", TestServers.Redis];
        var victim = _processes.Start(slowDowning, "Tsp.GpuNode.dll", Worker(victimPort));
        _processes.Start(slowDowning, "Tsp.GpuNode.dll", Worker(TestPorts.Free()));
        await _processes.StatusAsync(seedPort, text => Regex.IsMatch(text, @"gpu-pause \(gpu\)  routees=2 "));

        await using var reader = new ResubscribingReader(project, $"http://127.0.0.1:{grpcPort}");
        using var producer = new FrameProducer(_kafka.BootstrapServers);
        const int frames = 16;
        var produced = new List<string>();
        for (var i = 0; i < frames; i++)
        {
            produced.Add(await producer.ProduceAsync(project, Encoding.UTF8.GetBytes($"frame {i}")));
        }

        await _processes.StatusAsync(seedPort, text => text.Contains($"gpu-pause (gpu)  routees=2 credits=0/16 waiting=0 in_flight={frames} ", StringComparison.Ordinal));
        victim.Signal("STOP");

        // Every result arrives while the victim is frozen, and it is still a member: its tasks moved
        // when it became unreachable, not when it was downed.
        var results = await reader.WaitForRunsAsync(frames, TimeSpan.FromSeconds(120));
        var whileFrozen = await _processes.StatusAsync(seedPort, _ => true);
        output.WriteLine(whileFrozen);
        Assert.Contains($"127.0.0.1:{victimPort}  Up  UNREACHABLE", whileFrozen, StringComparison.Ordinal);
        Assert.Matches(@"gpu-pause \(gpu\) .* requeued=[1-9]", whileFrozen);

        // Back from its pause, it answers the tasks it held; those answers are dropped.
        victim.Signal("CONT");
        var after = await _processes.StatusAsync(seedPort, text =>
            text.Contains($"127.0.0.1:{victimPort}  Up  reachable", StringComparison.Ordinal) && text.Contains("gpu-pause (gpu)  routees=2 credits=16/16 ", StringComparison.Ordinal));
        output.WriteLine(after);
        await using var store = await RedisStore.ConnectAsync(TestServers.Redis);
        var logged = await store.ReadResultsAsync(project, 0, 1000);
        Assert.Equal(produced.Order(StringComparer.Ordinal), logged.Select(r => r.Result.RunId).Order(StringComparer.Ordinal));
        Assert.Equal(produced.Order(StringComparer.Ordinal), results.Select(r => r.RunId).Order(StringComparer.Ordinal));
        Assert.All(logged, r => Assert.Equal(RunStatus.Succeeded, r.Result.Status));
    }

    [Fact]
    public async Task A_worker_whose_drain_outlasts_DrainTimeout_leaves_anyway_and_its_tasks_finish_elsewhere()
    {
        var project = TestServers.Unique("late");
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            nodes:
              - { id: model, processor: sleep, role: gpu, queue: gpu-late, timeout: 60s, params: { ms: 8000 } }
            """);
        var (seedPort, grpcPort) = (TestPorts.Free(), TestPorts.Free());
        var seed = _processes.Start("Tsp.Seed.dll", "run", "--grpc-port", Port(grpcPort), "--port", Port(seedPort), "--redis", TestServers.Redis, "--kafka", _kafka.BootstrapServers, "--journal", TestServers.TempSqlitePath(), "--workflow", workflow);
        await seed.WaitForLineAsync(l => l.StartsWith("grpc: ", StringComparison.Ordinal), TimeSpan.FromSeconds(90));
        string[] Worker() => ["--seed", $"127.0.0.1:{seedPort}", "--port", Port(TestPorts.Free()), "--roles", "gpu", "--redis", TestServers.Redis];
        var victim = _processes.Start(new Dictionary<string, string> { ["Tsp__DrainTimeout"] = "00:00:01" }, "Tsp.GpuNode.dll", Worker());
        _processes.Start("Tsp.GpuNode.dll", Worker());
        await _processes.StatusAsync(seedPort, text => Regex.IsMatch(text, @"gpu-late \(gpu\)  routees=2 "));

        using var channel = GrpcTestClients.Channel($"http://127.0.0.1:{grpcPort}");
        using var subscription = new TspService.TspServiceClient(channel).Subscribe(new SubscribeRequest { Projects = { project }, From = "earliest" });
        const int frames = 16;
        var reading = ReadUntilAsync(subscription, frames, TimeSpan.FromSeconds(180));
        using var producer = new FrameProducer(_kafka.BootstrapServers);
        var produced = new List<string>();
        for (var i = 0; i < frames; i++)
        {
            produced.Add(await producer.ProduceAsync(project, Encoding.UTF8.GetBytes($"frame {i}")));
        }

        // Every slot of both workers (8 each) holds an 8 s task when the victim is told to stop.
        await _processes.StatusAsync(seedPort, text => Regex.IsMatch(text, $@"gpu-late \(gpu\)  routees=2 credits=0/16 waiting=0 in_flight={frames} "));
        victim.Signal("TERM");

        Assert.True(victim.Process.WaitForExit(60_000), "the worker did not exit within 60 s of SIGTERM");
        Assert.Equal(0, victim.Process.ExitCode);
        Assert.Contains(victim.Lines, l => l.Contains("did not drain within 1 s", StringComparison.Ordinal));

        var results = await reading;
        Assert.Equal(produced.Order(StringComparer.Ordinal), results.Select(r => r.RunId).Order(StringComparer.Ordinal));
        Assert.All(results, r => Assert.Equal(RunStatus.Succeeded, r.Status));
        var text = await _processes.StatusAsync(seedPort, _ => true);
        output.WriteLine(text);
        var requeued = int.Parse(Regex.Match(text, @"gpu-late \(gpu\) .* requeued=(\d+)").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(requeued > 0, "no task the victim held past its drain timeout was re-queued");
    }

    /// <summary>Seed + two workers; 2,000 frames through Kafka while a gRPC subscriber reads from the
    /// start; while both workers are saturated and a backlog remains, <paramref name="stop"/> is applied to the first.
    /// Asserts every frame's result arrived exactly once and both workers executed tasks.</summary>
    private async Task<(List<TpResult> Results, ChildProcess Victim, int SeedPort)> StreamWithAWorkerStoppedMidwayAsync(string name, Func<ChildProcess, Task> stop)
    {
        var project = TestServers.Unique(name);
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            defaults: { timeout: 10s }
            nodes:
              - { id: pre, processor: passthrough, role: cpu, queue: cpu-{{name}} }
              - { id: model, processor: sleep, role: gpu, queue: gpu-{{name}}, after: [pre], params: { ms: 100 } }
              - { id: post, processor: checksum, role: cpu, queue: cpu-{{name}}, after: [model] }
            """);
        var (seedPort, grpcPort) = (TestPorts.Free(), TestPorts.Free());
        var seed = _processes.Start("Tsp.Seed.dll", "run", "--grpc-port", Port(grpcPort), "--port", Port(seedPort), "--redis", TestServers.Redis, "--kafka", _kafka.BootstrapServers, "--journal", TestServers.TempSqlitePath(), "--workflow", workflow);
        await seed.WaitForLineAsync(l => l.StartsWith("grpc: ", StringComparison.Ordinal), TimeSpan.FromSeconds(90));
        var workerPorts = new[] { TestPorts.Free(), TestPorts.Free() };
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
        }

        // Mid-stream, read from the results log itself (a subscriber may lag, a status call takes seconds on
        // a busy machine): once some runs are done and at least 600 are not, ingest holds its maximum of
        // runs in flight (256), model tasks wait for a slot, every slot of both workers is busy and the
        // victim holds tasks; at 100 ms a task the backlog lasts seconds past this check.
        await using (var store = await RedisStore.ConnectAsync(TestServers.Redis))
        {
            var done = await store.LatestPositionAsync(project);
            var patience = Stopwatch.StartNew();
            while (done < 50)
            {
                Assert.True(patience.Elapsed < TimeSpan.FromSeconds(120), $"only {done} runs were done within 120 s");
                Assert.True(frames - done >= 600, $"{done} of {frames} runs were done before the stream could be caught mid-way");
                await Task.Delay(10);
                done = await store.LatestPositionAsync(project);
            }

            Assert.True(frames - done >= 600, $"{done} of {frames} runs were done before the stream could be caught mid-way");
        }

        await stop(workers[0]);

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
    public async Task An_orchestrator_killed_mid_stream_has_its_runs_finished_by_the_other_and_its_subscriber_resumes_there_without_gap_or_repeat()
    {
        var project = TestServers.Unique("orch");
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            defaults: { timeout: 10s }
            nodes:
              - { id: pre, processor: passthrough, role: cpu, queue: cpu-orch }
              - { id: model, processor: sleep, role: gpu, queue: gpu-orch, after: [pre], params: { ms: 5 } }
              - { id: post, processor: checksum, role: cpu, queue: cpu-orch, after: [model] }
            """);
        // Both orchestrators share one journal; a fresh database per test (remember-entities rows stay).
        var (grpcPort, victimGrpcPort) = (TestPorts.Free(), TestPorts.Free());
        var cluster = await _processes.StartOrchestratorPairAsync(workflow, _kafka.BootstrapServers, "gpu-orch", (grpcPort, victimGrpcPort));
        var (victim, firstPort, secondPort) = (cluster.Second, cluster.FirstPort, cluster.SecondPort);

        // The subscriber reads through the orchestrator that will die, and resubscribes to the other.
        await using var reader = new ResubscribingReader(project, $"http://127.0.0.1:{victimGrpcPort}", $"http://127.0.0.1:{grpcPort}");
        const int frames = 2000;
        var reading = reader.WaitForRunsAsync(frames, TimeSpan.FromSeconds(240));
        using var producer = new FrameProducer(_kafka.BootstrapServers);
        var produced = new List<string>();
        for (var i = 0; i < frames; i++)
        {
            produced.Add(await producer.ProduceAsync(project, Encoding.UTF8.GetBytes($"frame {i}")));
            if (i == frames / 2)
            {
                // Mid-stream, once the victim's run hosts have dispatched tasks and its ingest consumed records.
                var before = await _processes.StatusAsync(secondPort, text =>
                    Regex.IsMatch(text, @"cpu-orch \(cpu\) .* dispatched=[1-9]") && Regex.IsMatch(text, @"kafka_consumed=[1-9]"));
                output.WriteLine(before);
                victim.Process.Kill();
            }
        }

        List<TpResult> results;
        try
        {
            results = await reading;
        }
        catch (Exception)
        {
            output.WriteLine("results stopped short; the survivor says:\n" + await _processes.StatusAsync(firstPort, _ => true));
            throw;
        }

        if (results.Select(r => r.RunId).Distinct().Count() < frames)
        {
            output.WriteLine("results stopped short; the survivor says:\n" + await _processes.StatusAsync(firstPort, _ => true));
        }

        Assert.True(victim.Process.HasExited);
        Assert.True(reader.Resubscriptions > 0, "the subscriber never lost its orchestrator");
        Assert.Equal(produced.Order(StringComparer.Ordinal), results.Select(r => r.RunId).Order(StringComparer.Ordinal));
        // No gap and no repeat: positions 1..N, each once, across both orchestrators.
        Assert.Equal(Enumerable.Range(1, frames).Select(i => (long)i), results.Select(r => r.Position).Order());
        Assert.All(results, r => Assert.Equal(RunStatus.Succeeded, r.Status));
        var after = await _processes.StatusAsync(firstPort, text => !text.Contains($":{secondPort}", StringComparison.Ordinal));
        output.WriteLine(after);
        Assert.Contains("active runs on this orchestrator: 0", after, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_orchestrator_started_mid_stream_takes_run_hosts_from_the_others_and_every_result_arrives_once()
    {
        var project = TestServers.Unique("grow");
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            defaults: { timeout: 10s }
            nodes:
              - { id: pre, processor: passthrough, role: cpu, queue: cpu-grow }
              - { id: model, processor: sleep, role: gpu, queue: gpu-grow, after: [pre], params: { ms: 5 } }
              - { id: post, processor: checksum, role: cpu, queue: cpu-grow, after: [model] }
            """);
        var grpcPort = TestPorts.Free();
        var cluster = await _processes.StartOrchestratorPairAsync(workflow, _kafka.BootstrapServers, "gpu-grow", (grpcPort, -1));
        await using var reader = new ResubscribingReader(project, $"http://127.0.0.1:{grpcPort}");
        using var producer = new FrameProducer(_kafka.BootstrapServers);
        var produced = new List<string>();
        async Task ProduceAsync(int count)
        {
            for (var i = 0; i < count; i++)
            {
                produced.Add(await producer.ProduceAsync(project, Encoding.UTF8.GetBytes($"frame {produced.Count}")));
            }
        }

        await ProduceAsync(300);
        var thirdPort = TestPorts.Free();
        var third = _processes.Start("Tsp.Seed.dll",
            "run", "--port", ChildProcesses.Port(thirdPort), "--grpc-port", "-1", "--roles", "orchestrator", "--seed", $"127.0.0.1:{cluster.FirstPort}",
            "--redis", TestServers.Redis, "--kafka", _kafka.BootstrapServers, "--postgres", cluster.Journal, "--workflow", workflow);

        // Frames keep coming while the third joins and sharding hands it run hosts (a rebalance round
        // is 10 s): it takes hosts that hold unfinished runs.
        var holdsHosts = new Regex($@"127\.0\.0\.1:{thirdPort}  hosts=[1-9]");
        string status;
        do
        {
            await ProduceAsync(50);
            status = await _processes.StatusAsync(cluster.FirstPort, _ => true);
            Assert.False(third.Process.HasExited, "the third orchestrator exited");
            Assert.True(produced.Count < 20_000, "the third orchestrator never got a run host:\n" + status);
        }
        while (!holdsHosts.IsMatch(status));

        output.WriteLine(status);
        await ProduceAsync(300);
        var results = await reader.WaitForRunsAsync(produced.Count, TimeSpan.FromSeconds(240));

        Assert.Equal(produced.Order(StringComparer.Ordinal), results.Select(r => r.RunId).Order(StringComparer.Ordinal));
        Assert.Equal(Enumerable.Range(1, produced.Count).Select(i => (long)i), results.Select(r => r.Position).Order());
        Assert.All(results, r => Assert.Equal(RunStatus.Succeeded, r.Status));
        // The 64 hosts end spread over the three orchestrators.
        var spread = await _processes.StatusAsync(cluster.FirstPort, text =>
            Regex.Matches(text, @"  hosts=(\d+)").Select(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)).ToList() is { Count: 3 } hosts && hosts.Sum() == 64 && hosts.Min() >= 16);
        output.WriteLine(spread);
    }

    [Fact]
    public async Task A_ClusterClient_subscriber_of_an_orchestrator_killed_mid_stream_goes_on_at_the_other_without_gap_or_repeat()
    {
        var project = TestServers.Unique("remote");
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            nodes:
              - { id: pre, processor: passthrough, role: cpu, queue: cpu-remote }
              - { id: model, processor: sleep, role: gpu, queue: gpu-remote, after: [pre], params: { ms: 20 } }
            """);
        var cluster = await _processes.StartOrchestratorPairAsync(workflow, _kafka.BootstrapServers, "gpu-remote", (-1, -1));
        var ports = new[] { cluster.FirstPort, cluster.SecondPort };
        var orchestrators = new[] { cluster.First, cluster.Second };

        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Services.AddAkka("external-subscriber", (akka, _) => akka
            .ConfigureLoggers(l => l.LogLevel = Akka.Event.LogLevel.WarningLevel)
            .WithRemoting("127.0.0.1", 0)
            .AddTspResultClient(ports.Select(p => $"127.0.0.1:{p}")));
        using var external = builder.Build();
        await external.StartAsync();
        var system = external.Services.GetRequiredService<Akka.Actor.ActorSystem>();
        var clusterClient = await external.Services.GetRequiredService<IRequiredActor<TspClusterClient>>().GetAsync();
        var subscription = await RemoteResults.SubscribeAsync(system, clusterClient, project, "earliest", TimeSpan.FromSeconds(60));
        // The orchestrator that serves the subscription is the one that dies.
        var victim = orchestrators[Array.IndexOf(ports, subscription.ServedBy.Port!.Value)];

        const int frames = 1000;
        var received = new List<TpResult>();
        var reading = Task.Run(async () =>
        {
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(240));
            while (received.Select(r => r.RunId).Distinct().Count() < frames)
            {
                var result = await subscription.Results.ReadAsync(deadline.Token);
                lock (received)
                {
                    received.Add(result);
                }
            }
        });
        using var producer = new FrameProducer(_kafka.BootstrapServers);
        var produced = new List<string>();
        for (var i = 0; i < frames; i++)
        {
            produced.Add(await producer.ProduceAsync(project, Encoding.UTF8.GetBytes($"frame {i}")));
            if (i == frames / 2)
            {
                // Once the subscriber has results from the victim.
                var patience = Stopwatch.StartNew();
                while (Count(received) < 50)
                {
                    Assert.True(patience.Elapsed < TimeSpan.FromSeconds(120), "no results reached the subscriber");
                    await Task.Delay(10);
                }

                victim.Process.Kill();
            }
        }

        await reading;
        await external.StopAsync();
        Assert.Equal(produced.Order(StringComparer.Ordinal), received.Select(r => r.RunId).Order(StringComparer.Ordinal));
        Assert.Equal(Enumerable.Range(1, frames).Select(i => (long)i), received.Select(r => r.Position).Order());
        Assert.True(victim.Process.HasExited);
    }

    [Fact]
    public async Task A_single_member_killed_with_journal_writes_in_flight_loses_no_accepted_run_and_publishes_none_twice_after_restart()
    {
        var project = TestServers.Unique("crash");
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            nodes:
              - { id: pre, processor: passthrough, role: cpu, queue: cpu-crash }
              - { id: model, processor: sleep, role: gpu, queue: gpu-crash, after: [pre], params: { ms: 50 } }
              - { id: post, processor: checksum, role: cpu, queue: cpu-crash, after: [model] }
            """);
        var journal = TestServers.TempSqlitePath();
        var (firstGrpc, secondGrpc) = (TestPorts.Free(), TestPorts.Free());
        ChildProcess Start(int port, int grpc) => _processes.Start("Tsp.Seed.dll", "run", "--roles", "seed,orchestrator,gpu,cpu", "--port", Port(port), "--grpc-port", Port(grpc),
            "--redis", TestServers.Redis, "--kafka", _kafka.BootstrapServers, "--journal", journal, "--workflow", workflow);
        var firstPort = TestPorts.Free();
        var first = Start(firstPort, firstGrpc);
        await first.WaitForLineAsync(l => l.StartsWith("grpc: ", StringComparison.Ordinal), TimeSpan.FromSeconds(90));
        await using var reader = new ResubscribingReader(project, $"http://127.0.0.1:{firstGrpc}", $"http://127.0.0.1:{secondGrpc}");
        using var producer = new FrameProducer(_kafka.BootstrapServers);
        const int frames = 1500;
        var produced = new List<string>();
        for (var i = 0; i < frames; i++)
        {
            produced.Add(await producer.ProduceAsync(project, Encoding.UTF8.GetBytes($"frame {i}")));
        }

        // Runs in flight: starts, node results and completions are being journaled when the process dies.
        var before = await _processes.StatusAsync(firstPort, text => Regex.IsMatch(text, $@"{project}  kafka_in_flight_runs=[1-9]\d* kafka_consumed=[1-9]"));
        output.WriteLine(before);
        first.Process.Kill();
        await first.Process.WaitForExitAsync();

        var second = Start(TestPorts.Free(), secondGrpc);
        await second.WaitForLineAsync(l => l.StartsWith("grpc: ", StringComparison.Ordinal), TimeSpan.FromSeconds(90));
        var results = await reader.WaitForRunsAsync(frames, TimeSpan.FromSeconds(240));

        Assert.True(reader.Resubscriptions > 0, "the subscriber never lost the killed process");
        Assert.Equal(produced.Order(StringComparer.Ordinal), results.Select(r => r.RunId).Order(StringComparer.Ordinal));
        Assert.Equal(Enumerable.Range(1, frames).Select(i => (long)i), results.Select(r => r.Position).Order());
        Assert.All(results, r => Assert.Equal(RunStatus.Succeeded, r.Status));
    }

    [Fact]
    public async Task With_remoting_TLS_only_processes_holding_the_shared_certificate_join_or_read_status()
    {
        var project = TestServers.Unique("tls");
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            nodes:
              - { id: pre, processor: checksum, role: cpu, queue: cpu-tls }
            """);
        static Dictionary<string, string> Holding(string pfx) => new() { ["Tsp__Tls__Certificate"] = pfx, ["Tsp__Tls__Password"] = "secret" };
        var shared = Holding(WritePfx("tsp-cluster"));
        var stranger = Holding(WritePfx("tsp-cluster"));
        var (seedPort, memberPort, plainPort, strangerPort) = (TestPorts.Free(), TestPorts.Free(), TestPorts.Free(), TestPorts.Free());
        var seed = _processes.Start(shared, "Tsp.Seed.dll", "run", "--grpc-port", "-1", "--port", Port(seedPort), "--redis", TestServers.Redis, "--kafka", _kafka.BootstrapServers, "--journal", TestServers.TempSqlitePath(), "--workflow", workflow);
        await seed.WaitForLineAsync(l => l.StartsWith("cluster: ", StringComparison.Ordinal), TimeSpan.FromSeconds(90));
        string[] Worker(int port) => ["--seed", $"127.0.0.1:{seedPort}", "--port", Port(port), "--roles", "cpu", "--redis", TestServers.Redis];
        // Without TLS, and with TLS but another certificate (same subject): both started first.
        var plain = _processes.Start("Tsp.GpuNode.dll", Worker(plainPort));
        var impostor = _processes.Start(stranger, "Tsp.GpuNode.dll", Worker(strangerPort));
        _processes.Start(shared, "Tsp.GpuNode.dll", Worker(memberPort));

        var text = await _processes.StatusAsync(seedPort, t => t.Contains($"127.0.0.1:{memberPort}  Up  reachable", StringComparison.Ordinal) && Regex.IsMatch(t, @"cpu-tls \(cpu\)  routees=[1-9]"), shared);
        output.WriteLine(text);
        Assert.Equal(2, Regex.Count(text, "  Up  "));
        Assert.DoesNotContain($":{plainPort}", text, StringComparison.Ordinal);
        Assert.DoesNotContain($":{strangerPort}", text, StringComparison.Ordinal);

        // Work crosses TLS: the seed has no cpu role, so every node runs on the member.
        using var producer = new FrameProducer(_kafka.BootstrapServers);
        var produced = new List<string>();
        for (var i = 0; i < 20; i++)
        {
            produced.Add(await producer.ProduceAsync(project, Encoding.UTF8.GetBytes($"frame {i}")));
        }

        await using var store = await RedisStore.ConnectAsync(TestServers.Redis);
        var logged = await TestServers.WaitForResultsAsync(store, project, produced.Count, TimeSpan.FromSeconds(120));

        Assert.Equal(produced.Order(StringComparer.Ordinal), logged.Select(r => r.Result.RunId).Order(StringComparer.Ordinal));
        Assert.All(logged.SelectMany(r => r.Result.Nodes), n => Assert.StartsWith($"tsp@127.0.0.1:{memberPort}/", n.Worker, StringComparison.Ordinal));

        // The status verb without the certificate, or with the other one, reaches nobody.
        foreach (var environment in new[] { new Dictionary<string, string>(), stranger })
        {
            var status = _processes.Start(environment, "Tsp.Seed.dll", "status", "--seed", $"127.0.0.1:{seedPort}");
            Assert.True(status.Process.WaitForExit(120_000), "status did not give up");
            Assert.Equal(4, status.Process.ExitCode);
        }

        Assert.All(new[] { plain, impostor }, p => Assert.DoesNotContain(p.Lines, l => l.Contains("Welcome from", StringComparison.Ordinal)));
    }

    /// <summary>A self-signed certificate with its key, as a .pfx protected by "secret".</summary>
    private static string WritePfx(string subject)
    {
        using var key = System.Security.Cryptography.RSA.Create(2048);
        var request = new System.Security.Cryptography.X509Certificates.CertificateRequest($"CN={subject}", key, System.Security.Cryptography.HashAlgorithmName.SHA256, System.Security.Cryptography.RSASignaturePadding.Pkcs1);
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        var path = Path.Combine(Path.GetTempPath(), "tsp-tests", TestServers.Unique("remoting") + ".pfx");
        File.WriteAllBytes(path, certificate.Export(System.Security.Cryptography.X509Certificates.X509ContentType.Pfx, "secret"));
        return path;
    }

    [Fact]
    public async Task A_member_whose_split_brain_settings_differ_is_named_in_a_warning_on_both_sides()
    {
        var project = TestServers.Unique("sbr");
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            nodes:
              - { id: pre, processor: passthrough, role: cpu, queue: cpu-sbr }
            """);
        var (seedPort, workerPort) = (TestPorts.Free(), TestPorts.Free());
        var seed = _processes.Start("Tsp.Seed.dll", "run", "--grpc-port", "-1", "--port", Port(seedPort), "--redis", TestServers.Redis, "--kafka", _kafka.BootstrapServers, "--journal", TestServers.TempSqlitePath(), "--workflow", workflow);
        await seed.WaitForLineAsync(l => l.StartsWith("cluster: ", StringComparison.Ordinal), TimeSpan.FromSeconds(90));
        var worker = _processes.Start(new Dictionary<string, string> { ["Tsp__Cluster__StableAfter"] = "00:00:03" }, "Tsp.GpuNode.dll", "--seed", $"127.0.0.1:{seedPort}", "--port", Port(workerPort), "--roles", "cpu", "--redis", TestServers.Redis);

        var atSeed = await seed.WaitForLineAsync(l => l.Contains("resolves splits with", StringComparison.Ordinal), TimeSpan.FromSeconds(90));
        var atWorker = await worker.WaitForLineAsync(l => l.Contains("resolves splits with", StringComparison.Ordinal), TimeSpan.FromSeconds(30));
        Assert.Contains($"member akka.tcp://tsp@127.0.0.1:{workerPort} resolves splits with keep-majority/quorum-0/stable-after-3000ms/heartbeat-pause-3000ms, this member with keep-majority/quorum-0/stable-after-10000ms", atSeed, StringComparison.Ordinal);
        Assert.Contains($"member akka.tcp://tsp@127.0.0.1:{seedPort} resolves splits with keep-majority/quorum-0/stable-after-10000ms", atWorker, StringComparison.Ordinal);

        // The settings travel as a role, but the status lists only the roles operators set.
        var status = await _processes.StatusAsync(seedPort, t => t.Contains($"127.0.0.1:{workerPort}  Up", StringComparison.Ordinal));
        Assert.Contains($"akka.tcp://tsp@127.0.0.1:{workerPort}  Up  reachable  roles=cpu\n", status, StringComparison.Ordinal);
    }

    private static string Port(int port) => ChildProcesses.Port(port);

    private static int Count<T>(List<T> shared)
    {
        lock (shared)
        {
            return shared.Count;
        }
    }

    /// <summary>Reads a subscription until <paramref name="runs"/> distinct runs have arrived; returns everything it read.</summary>
    private static async Task<List<TpResult>> ReadUntilAsync(Grpc.Core.AsyncServerStreamingCall<TpResult> subscription, int runs, TimeSpan limit)
    {
        var received = new List<TpResult>();
        var distinct = new HashSet<string>(StringComparer.Ordinal);
        using var deadline = new CancellationTokenSource(limit);
        while (distinct.Count < runs && await subscription.ResponseStream.MoveNext(deadline.Token))
        {
            received.Add(subscription.ResponseStream.Current);
            distinct.Add(subscription.ResponseStream.Current.RunId);
        }

        return received;
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
        var seedPort = TestPorts.Free();
        var seed = _processes.Start("Tsp.Seed.dll", "run", "--grpc-port", "0", "--port", Port(seedPort), "--redis", TestServers.Redis, "--kafka", _kafka.BootstrapServers, "--journal", TestServers.TempSqlitePath(), "--workflow", workflow);
        await seed.WaitForLineAsync(l => l.StartsWith("cluster: ", StringComparison.Ordinal), TimeSpan.FromSeconds(90));
        var (first, second) = (TestPorts.Free(), TestPorts.Free());
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

                // The rest of the stream goes out once the new worker's routees are in the queue: produced
                // at once, the stream could finish on the first worker before a busy machine booted the second.
                await seed.WaitForLineAsync(l => l.Contains($"queue gpu-s: routee tsp@127.0.0.1:{second}/", StringComparison.Ordinal), TimeSpan.FromSeconds(90));
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

