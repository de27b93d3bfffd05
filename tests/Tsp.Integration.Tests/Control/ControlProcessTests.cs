using System.Text;
using System.Text.RegularExpressions;
using Grpc.Core;
using Tsp.Actors.Hosting;
using Tsp.Actors.Ingest;
using Tsp.Actors.Protocol;
using Tsp.ServiceDefaults.Embedded;
using Tsp.Tests.Shared;
using Xunit.Abstractions;

namespace Tsp.Integration.Tests.Control;

/// <summary>An operator's verbs against a running cluster of processes (a seed/orchestrator, a worker;
/// real Redis, a Kafka-protocol broker, the SQLite journal), each through the CLI as an operator types it.</summary>
[Collection(ClusterCollection.Name)]
public sealed class ControlProcessTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);
    private readonly ChildProcesses _processes = new(output);
    private readonly EmbeddedKafka _kafka = EmbeddedKafka.Start();
    private readonly List<string> _directories = [];

    public void Dispose()
    {
        _processes.Dispose();
        _kafka.Dispose();
        foreach (var directory in _directories.Where(Directory.Exists))
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    private static string Port(int port) => ChildProcesses.Port(port);

    /// <summary>Runs a verb of Tsp.Seed to its end: its exit code and its lines (stdout and stderr).</summary>
    private async Task<(int ExitCode, List<string> Lines)> VerbAsync(params string[] args)
    {
        var verb = _processes.Start("Tsp.Seed.dll", args);
        await verb.Process.WaitForExitAsync(new CancellationTokenSource(Timeout).Token);
        verb.Process.WaitForExit();
        return (verb.Process.ExitCode, [.. verb.Lines]);
    }

    private ChildProcess StartOrchestrator(int port, int grpc, string journal, string workflow, string roles = "seed,orchestrator") =>
        _processes.Start("Tsp.Seed.dll", "run", "--roles", roles, "--port", Port(port), "--grpc-port", Port(grpc),
            "--redis", TestServers.Redis, "--kafka", _kafka.BootstrapServers, "--journal", journal, "--workflow", workflow);

    private static Task<TpResult> ResultAsync(TspService.TspServiceClient client, string project, string runId) =>
        GrpcTestClients.ResultAsync(client, project, runId, Timeout);

    [Fact]
    public async Task Runs_on_a_worker_are_inspected_then_cancelled_one_by_source_and_all_and_their_tasks_stop_on_the_worker()
    {
        var project = TestServers.Unique("ctl");
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            nodes:
              - { id: hold, processor: sleep, role: cpu, queue: cpu-ctl, timeout: 300s, params: { ms: 240000 } }
              - { id: post, processor: passthrough, role: cpu, queue: cpu-ctl, after: [hold] }
            """);
        var (seedPort, grpcPort) = (TestPorts.Free(), TestPorts.Free());
        var seed = StartOrchestrator(seedPort, grpcPort, TestServers.TempSqlitePath(), workflow);
        _processes.Start("Tsp.GpuNode.dll", "--seed", $"127.0.0.1:{seedPort}", "--port", Port(TestPorts.Free()), "--roles", "cpu", "--redis", TestServers.Redis);
        await seed.WaitForLineAsync(l => l.StartsWith("grpc: ", StringComparison.Ordinal), Timeout);
        var grpc = $"http://127.0.0.1:{grpcPort}";
        using var channel = GrpcTestClients.Channel(grpc);
        var client = new TspService.TspServiceClient(channel);
        await _processes.StatusAsync(seedPort, text => Regex.IsMatch(text, @"cpu-ctl \(cpu\)  routees=[1-9]"));

        var sources = new[] { "cam-1", "cam-1", "cam-2", "cam-3" };
        var runs = new List<string>();
        foreach (var (source, i) in sources.Select((s, i) => (s, i)))
        {
            var frame = GrpcTestClients.Frame(project, i);
            frame.SourceId = source;
            runs.Add((await client.SubmitAsync(new SubmitRequest { Frame = frame })).RunId);
        }

        // inspect: one line per unfinished run, starting with its id; the running ones show their queue.
        List<string> listed = [];
        await Eventually.HoldsAsync(
            async () =>
            {
                var (code, lines) = await VerbAsync("inspect", "--grpc", grpc, "--project", project);
                Assert.Equal(0, code);
                listed = lines.Where(l => runs.Any(r => l.StartsWith(r + " ", StringComparison.Ordinal))).ToList();
                Assert.Equal(runs.Order(StringComparer.Ordinal), listed.Select(l => l.Split(' ')[0]).Order(StringComparer.Ordinal));
                // Running on the worker, named (celery's "active"); the others wait in the queue ("reserved").
                Assert.Contains(listed, l => Regex.IsMatch(l, @" running .* hold=running\(cpu-ctl, [^,]+:\d+/[^,]+, \d+ ms\)"));
            },
            Timeout);
        Assert.All(listed, l => Assert.Contains("post=waiting", l, StringComparison.Ordinal));

        var one = await VerbAsync("cancel", "--grpc", grpc, "--project", project, "--run", runs[0], "--reason", "bad camera");
        Assert.Equal(0, one.ExitCode);
        Assert.Contains(one.Lines, l => Regex.IsMatch(l, $@"^{Regex.Escape(runs[0])} cancelled: cancelled by .+: bad camera$"));
        var cancelled = await ResultAsync(client, project, runs[0]);
        Assert.Equal(RunStatus.Cancelled, cancelled.Status);
        Assert.EndsWith(": bad camera", cancelled.Error, StringComparison.Ordinal);

        var again = await VerbAsync("cancel", "--grpc", grpc, "--project", project, "--run", runs[0]);
        Assert.Equal(1, again.ExitCode);
        Assert.Contains(again.Lines, l => l.StartsWith($"{runs[0]} already_finished: ", StringComparison.Ordinal));
        var unknown = await VerbAsync("cancel", "--grpc", grpc, "--project", project, "--run", "no-such-run");
        Assert.Equal(1, unknown.ExitCode);
        Assert.Contains(unknown.Lines, l => l.StartsWith("no-such-run not_found: ", StringComparison.Ordinal));

        var bySource = await VerbAsync("cancel", "--grpc", grpc, "--project", project, "--source", "cam-2");
        Assert.Equal(0, bySource.ExitCode);
        Assert.Equal([$"{runs[2]} cancelled"], bySource.Lines.Where(l => l.StartsWith(runs[2], StringComparison.Ordinal)).Select(l => l.Split(':')[0]));
        Assert.DoesNotContain(bySource.Lines, l => l.StartsWith(runs[1], StringComparison.Ordinal) || l.StartsWith(runs[3], StringComparison.Ordinal));

        var all = await VerbAsync("cancel", "--grpc", grpc, "--project", project, "--all");
        Assert.Equal(0, all.ExitCode);
        Assert.Equal(new[] { runs[1], runs[3] }.Order(StringComparer.Ordinal), all.Lines.Where(l => runs.Any(r => l.StartsWith(r + " cancelled", StringComparison.Ordinal))).Select(l => l.Split(' ')[0]).Order(StringComparer.Ordinal));
        foreach (var run in runs)
        {
            Assert.Equal(RunStatus.Cancelled, (await ResultAsync(client, project, run)).Status);
        }

        var empty = await VerbAsync("inspect", "--grpc", grpc, "--project", project);
        Assert.Contains("0 unfinished run(s)", empty.Lines);

        // The worker's sleeps (4 min) were cancelled by their token: every slot is free again long before.
        var status = await _processes.StatusAsync(seedPort, text => Regex.IsMatch(text, @"cpu-ctl \(cpu\)  routees=\d+ credits=(\d+)/\1 waiting=0 in_flight=0 .*cancelled=[1-9]"));
        output.WriteLine(status);

        var subscriber = _processes.Start("Tsp.Seed.dll", "subscribe", "--grpc", grpc, "--project", project, "--from", "earliest");
        foreach (var run in runs)
        {
            await subscriber.WaitForLineAsync(l => l.Contains($" {run} cancelled ", StringComparison.Ordinal), Timeout);
        }
    }

    [Fact]
    public async Task A_paused_project_stays_paused_across_an_orchestrator_restart_and_consumes_every_frame_once_resumed()
    {
        var project = TestServers.Unique("pause");
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            nodes:
              - { id: sum, processor: checksum, role: cpu, queue: cpu-pause }
            """);
        var journal = TestServers.TempSqlitePath();
        var (firstPort, grpcPort) = (TestPorts.Free(), TestPorts.Free());
        var first = StartOrchestrator(firstPort, grpcPort, journal, workflow, roles: "seed,orchestrator,cpu");
        await first.WaitForLineAsync(l => l.StartsWith("grpc: ", StringComparison.Ordinal), Timeout);
        var grpc = $"http://127.0.0.1:{grpcPort}";
        using var producer = new FrameProducer(_kafka.BootstrapServers);
        using (var channel = GrpcTestClients.Channel(grpc))
        {
            var before = await producer.ProduceAsync(project, Encoding.UTF8.GetBytes("before"));
            Assert.Equal(RunStatus.Succeeded, (await ResultAsync(new TspService.TspServiceClient(channel), project, before)).Status);
        }

        var paused = await VerbAsync("pause", "--grpc", grpc, "--project", project, "--reason", "line stopped");
        Assert.Equal(0, paused.ExitCode);
        Assert.Contains(paused.Lines, l => Regex.IsMatch(l, $@"^{project} paused since \S+ by .+: line stopped$"));
        first.Process.Kill();
        await first.Process.WaitForExitAsync();

        var secondPort = TestPorts.Free();
        var second = StartOrchestrator(secondPort, grpcPort, journal, workflow, roles: "seed,orchestrator,cpu");
        await second.WaitForLineAsync(l => l.StartsWith("grpc: ", StringComparison.Ordinal), Timeout);
        var produced = new List<string>();
        for (var i = 0; i < 5; i++)
        {
            produced.Add(await producer.ProduceAsync(project, Encoding.UTF8.GetBytes($"while paused {i}")));
        }

        await _processes.StatusAsync(secondPort, text => Regex.IsMatch(text, $@"{project}  .* paused"));
        using var resumedChannel = GrpcTestClients.Channel(grpc);
        var client = new TspService.TspServiceClient(resumedChannel);
        // Paused: none of the frames becomes a run while the test watches.
        await HoldsThroughoutAsync(TimeSpan.FromSeconds(5), async () =>
        {
            foreach (var run in produced)
            {
                var error = await Assert.ThrowsAsync<RpcException>(() => client.GetResultAsync(new GetResultRequest { Project = project, RunId = run }).ResponseAsync);
                Assert.Equal(StatusCode.NotFound, error.StatusCode);
            }
        });

        var resumed = await VerbAsync("resume", "--grpc", grpc, "--project", project);
        Assert.Equal(0, resumed.ExitCode);
        Assert.Contains(resumed.Lines, l => l.StartsWith($"{project} consuming since ", StringComparison.Ordinal));
        foreach (var run in produced)
        {
            Assert.Equal(RunStatus.Succeeded, (await ResultAsync(client, project, run)).Status);
        }
    }

    [Fact]
    public async Task Dead_runs_are_listed_and_after_a_crash_and_a_fixed_workflow_redriven_on_their_kept_frames_once()
    {
        var project = TestServers.Unique("redrive");
        var broken = TestServers.WriteWorkflow($$"""
            project: {{project}}
            nodes:
              - { id: sum, processor: checksum, role: cpu, queue: cpu-redrive }
              - { id: check, processor: flaky, role: cpu, queue: cpu-redrive, after: [sum], max_attempts: 1, params: { permanent: "true" } }
            """);
        var fixedWorkflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            nodes:
              - { id: sum, processor: checksum, role: cpu, queue: cpu-redrive }
              - { id: check, processor: passthrough, role: cpu, queue: cpu-redrive, after: [sum] }
            """);
        var journal = TestServers.TempSqlitePath();
        var grpcPort = TestPorts.Free();
        var grpc = $"http://127.0.0.1:{grpcPort}";
        var first = StartOrchestrator(TestPorts.Free(), grpcPort, journal, broken, roles: "seed,orchestrator,cpu");
        await first.WaitForLineAsync(l => l.StartsWith("grpc: ", StringComparison.Ordinal), Timeout);
        using var producer = new FrameProducer(_kafka.BootstrapServers);
        var dead = new List<string>();
        var firstResults = new List<TpResult>();
        using (var channel = GrpcTestClients.Channel(grpc))
        {
            for (var i = 0; i < 2; i++)
            {
                dead.Add(await producer.ProduceAsync(project, Encoding.UTF8.GetBytes($"frame {i}"), sourceId: $"cam-{i}"));
            }

            foreach (var run in dead)
            {
                var result = await ResultAsync(new TspService.TspServiceClient(channel), project, run);
                Assert.Equal(RunStatus.Failed, result.Status);
                firstResults.Add(result);
            }
        }

        var listed = await VerbAsync("deadletters", "--grpc", grpc, "--project", project);
        Assert.Equal(0, listed.ExitCode);
        var lines = listed.Lines.Where(l => Regex.IsMatch(l, @"^\d+ ")).ToList();
        Assert.Equal(2, lines.Count);
        Assert.All(dead, run => Assert.Contains(lines, l => Regex.IsMatch(l, $@"^\d+ \S+ run {Regex.Escape(run)} node=check source=cam-\d redrivable: node 'check' failed after 1 attempt\(s\): flaky: permanent failure")));

        first.Process.Kill();
        await first.Process.WaitForExitAsync();
        var second = StartOrchestrator(TestPorts.Free(), grpcPort, journal, fixedWorkflow, roles: "seed,orchestrator,cpu");
        await second.WaitForLineAsync(l => l.StartsWith("grpc: ", StringComparison.Ordinal), Timeout);

        var bad = await VerbAsync("deadletters", "--grpc", grpc, "--project", project, "--redrive", "two");
        Assert.Equal(6, bad.ExitCode);
        Assert.Contains(bad.Lines, l => l.StartsWith("error: InvalidArgument: 'select': 'two' is not a dead-letter selection", StringComparison.Ordinal));
        var redriven = await VerbAsync("deadletters", "--grpc", grpc, "--project", project, "--redrive", "all");
        Assert.Equal(0, redriven.ExitCode);
        var redriveLines = redriven.Lines.Where(l => l.Contains(" redriven as ", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, redriveLines.Count);
        Assert.All(redriveLines, l => Assert.Matches(@"^(\d+) redriven as \S+\.redrive-\1 \(accepted\)$", l));

        using var resumedChannel = GrpcTestClients.Channel(grpc);
        var client = new TspService.TspServiceClient(resumedChannel);
        foreach (var line in redriveLines)
        {
            var run = line.Split(' ')[3];
            var result = await ResultAsync(client, project, run);
            var original = firstResults.Single(r => r.RunId == result.RedriveOf);
            Assert.Equal(RunStatus.Succeeded, result.Status);
            Assert.Equal(original.SourceId, result.SourceId);
            // The same frame ran again: its checksum is the dead run's.
            Assert.Equal(original.Nodes.Single(n => n.NodeId == "sum").Metrics, result.Nodes.Single(n => n.NodeId == "sum").Metrics);
        }

        // Redriving again starts nothing new: each dead letter is the same run.
        var twice = await VerbAsync("deadletters", "--grpc", grpc, "--project", project, "--redrive", "all");
        Assert.Equal(2, twice.Lines.Count(l => l.EndsWith("(already_completed)", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task A_workflow_deployed_while_runs_are_in_flight_takes_new_runs_while_the_others_finish_on_theirs_also_across_a_crash()
    {
        var project = TestServers.Unique("deploy");
        string Version(string node, string queue) => TestServers.WriteWorkflow($$"""
            project: {{project}}
            nodes:
              - { id: {{node}}, processor: sleep, role: cpu, queue: {{queue}}, params: { ms: 2000 } }
              - { id: {{node}}-sum, processor: checksum, role: cpu, queue: {{queue}}, after: [{{node}}] }
            """);
        var (v1, v2) = (Version("one", "cpu-deploy-1"), Version("two", "cpu-deploy-2"));
        var cyclic = TestServers.WriteWorkflow($$"""
            project: {{project}}
            nodes:
              - { id: a, processor: checksum, role: cpu, queue: q, after: [b] }
              - { id: b, processor: checksum, role: cpu, queue: q, after: [a] }
            """);
        var journal = TestServers.TempSqlitePath();
        var grpcPort = TestPorts.Free();
        var grpc = $"http://127.0.0.1:{grpcPort}";
        var first = StartOrchestrator(TestPorts.Free(), grpcPort, journal, v1, roles: "seed,orchestrator,cpu");
        await first.WaitForLineAsync(l => l.StartsWith("grpc: ", StringComparison.Ordinal), Timeout);
        var runsOnV1 = new List<string>();
        var runsOnV2 = new List<string>();
        string v1Hash;
        using (var channel = GrpcTestClients.Channel(grpc))
        {
            var client = new TspService.TspServiceClient(channel);
            v1Hash = (await client.GetWorkflowAsync(new GetWorkflowRequest { Project = project })).WorkflowHash;
            for (var i = 0; i < 3; i++)
            {
                runsOnV1.Add((await client.SubmitAsync(new SubmitRequest { Frame = GrpcTestClients.Frame(project, i) })).RunId);
            }

            var refused = await VerbAsync("deploy", "--grpc", grpc, "--workflow", cyclic);
            Assert.Equal(6, refused.ExitCode);
            Assert.Contains(refused.Lines, l => l.StartsWith("error: InvalidArgument: invalid workflow:", StringComparison.Ordinal));
            Assert.Contains(refused.Lines, l => l.Contains($"{cyclic}:3: cycle: a -> b -> a", StringComparison.Ordinal));
            Assert.Equal(v1Hash, (await client.GetWorkflowAsync(new GetWorkflowRequest { Project = project })).WorkflowHash);

            var deployed = await VerbAsync("deploy", "--grpc", grpc, "--workflow", v2);
            Assert.Equal(0, deployed.ExitCode);
            var line = Assert.Single(deployed.Lines, l => l.StartsWith($"{project} deployed version ", StringComparison.Ordinal));
            Assert.EndsWith($"replacing {v1Hash}; its runs in flight finish on it", line, StringComparison.Ordinal);
            for (var i = 3; i < 6; i++)
            {
                runsOnV2.Add((await client.SubmitAsync(new SubmitRequest { Frame = GrpcTestClients.Frame(project, i) })).RunId);
            }
        }

        // Runs of both versions are in flight (2 s nodes): the process dies with them.
        first.Process.Kill();
        await first.Process.WaitForExitAsync();
        var second = StartOrchestrator(TestPorts.Free(), grpcPort, journal, v1, roles: "seed,orchestrator,cpu");
        await second.WaitForLineAsync(l => l.StartsWith("grpc: ", StringComparison.Ordinal), Timeout);
        using var resumed = GrpcTestClients.Channel(grpc);
        var after = new TspService.TspServiceClient(resumed);
        foreach (var (runs, node) in new[] { (runsOnV1, "one"), (runsOnV2, "two") })
        {
            foreach (var run in runs)
            {
                var result = await ResultAsync(after, project, run);
                Assert.True(result.Status == RunStatus.Succeeded, $"run {run} on '{node}': {result.Status}: {result.Error}");
                Assert.Equal([node, node + "-sum"], result.Nodes.Select(n => n.NodeId));
                Assert.Equal(node == "one" ? v1Hash : (await after.GetWorkflowAsync(new GetWorkflowRequest { Project = project })).WorkflowHash, result.WorkflowHash);
            }
        }

        // The deployment outlived the crash: the process started with the old file, new runs take the deployed version.
        var current = (await after.GetWorkflowAsync(new GetWorkflowRequest { Project = project })).WorkflowHash;
        Assert.NotEqual(v1Hash, current);
        await second.WaitForLineAsync(l => l.Contains("is not the one deployed through TspControl", StringComparison.Ordinal), Timeout);
        var later = (await after.SubmitAsync(new SubmitRequest { Frame = GrpcTestClients.Frame(project, 9) })).RunId;
        Assert.Equal(current, (await ResultAsync(after, project, later)).WorkflowHash);

        var removed = await VerbAsync("remove", "--grpc", grpc, "--project", project);
        Assert.Equal(0, removed.ExitCode);
        var gone = await Assert.ThrowsAsync<RpcException>(() => after.SubmitAsync(new SubmitRequest { Frame = GrpcTestClients.Frame(project, 10) }).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, gone.StatusCode);
        var again = await VerbAsync("remove", "--grpc", grpc, "--project", project);
        Assert.Equal(6, again.ExitCode);
        Assert.Contains(again.Lines, l => l == $"error: NotFound: unknown project '{project}'");
    }

    [Fact]
    public async Task A_model_pinned_unloaded_and_loaded_through_the_gateway_stays_so_when_its_worker_restarts()
    {
        var project = TestServers.Unique("models");
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            nodes:
              - { id: sum, processor: checksum, role: cpu, queue: cpu-models }
            """);
        var repository = Directory.CreateTempSubdirectory("tsp-models-").FullName;
        _directories.Add(repository);
        var model = TestServers.Unique("m");
        Operations.MeteredRunFixture.WriteDoublerModel(repository, model, 1);
        Operations.MeteredRunFixture.WriteDoublerModel(repository, model, 2);
        var (seedPort, grpcPort) = (TestPorts.Free(), TestPorts.Free());
        var seed = StartOrchestrator(seedPort, grpcPort, TestServers.TempSqlitePath(), workflow);
        string[] Worker() => ["--seed", $"127.0.0.1:{seedPort}", "--port", Port(TestPorts.Free()), "--roles", "cpu", "--redis", TestServers.Redis, "--models", repository];
        var worker = _processes.Start("Tsp.GpuNode.dll", Worker());
        await seed.WaitForLineAsync(l => l.StartsWith("grpc: ", StringComparison.Ordinal), Timeout);
        var grpc = $"http://127.0.0.1:{grpcPort}";

        async Task<List<string>> ModelLinesAsync(params string[] expected)
        {
            List<string> lines = [];
            await Eventually.HoldsAsync(
                async () =>
                {
                    var (code, all) = await VerbAsync("models", "--grpc", grpc);
                    Assert.Equal(0, code);
                    lines = all.Where(l => l.StartsWith(model + ":", StringComparison.Ordinal)).ToList();
                    foreach (var pattern in expected)
                    {
                        Assert.Contains(lines, l => Regex.IsMatch(l, pattern));
                    }
                },
                Timeout);
            return lines;
        }

        // The worker loads its repository at start: the latest version serves.
        await ModelLinesAsync($@"^{model}:2 ready CPU on akka\.tcp://tsp@127\.0\.0\.1:\d+$", $@"^{model}:1 unavailable on \S+: not served: the latest version is served$");

        var pinned = await VerbAsync("models", "--grpc", grpc, "--load", $"{model}:1");
        Assert.Equal(0, pinned.ExitCode);
        Assert.Contains(pinned.Lines, l => l.StartsWith($"{model} pinned to version 1 by ", StringComparison.Ordinal));
        await ModelLinesAsync($@"^{model}:1 ready CPU ", $@"^{model}:2 unavailable on \S+: not served: version 1 is pinned by ");

        // The pin is durable: a worker that starts again serves version 1, not the latest. (Stopped with
        // SIGTERM: with a kill, two members tie and the resolver may down the seed's side.)
        worker.Signal("TERM");
        await worker.Process.WaitForExitAsync();
        _processes.Start("Tsp.GpuNode.dll", Worker());
        await ModelLinesAsync($@"^{model}:1 ready CPU ");

        var unloaded = await VerbAsync("models", "--grpc", grpc, "--unload", model);
        Assert.Equal(0, unloaded.ExitCode);
        await ModelLinesAsync($@"^{model}:1 unavailable on \S+: unloaded by ", $@"^{model}:2 unavailable on \S+: unloaded by ");
        var loaded = await VerbAsync("models", "--grpc", grpc, "--load", model);
        Assert.Equal(0, loaded.ExitCode);
        await ModelLinesAsync($@"^{model}:2 ready CPU ");

        var unknown = await VerbAsync("models", "--grpc", grpc, "--load", "no-such-model");
        Assert.Equal(6, unknown.ExitCode);
        Assert.Contains(unknown.Lines, l => l.StartsWith("error: NotFound: model 'no-such-model' is in no repository", StringComparison.Ordinal));
        var missingVersion = await VerbAsync("models", "--grpc", grpc, "--load", $"{model}:7");
        Assert.Contains(missingVersion.Lines, l => l == $"error: NotFound: model '{model}' has no version 7 (versions: 1, 2)");
        var stats = await VerbAsync("models", "--grpc", grpc, "--stats");
        Assert.Equal(0, stats.ExitCode);
        Assert.Contains(stats.Lines, l => l.StartsWith("model:version", StringComparison.Ordinal));
        // Each member serving a version says how it batches it.
        Assert.Contains(stats.Lines, l => Regex.IsMatch(l, $@"^batching {model}:2 on \S+ \(CPU\): batch_limit=\d+ delay_ms=[\d.]+ (adaptive|fixed)"));
    }

    /// <summary>Asserts that <paramref name="assertion"/> holds every time it is checked for <paramref name="period"/>.</summary>
    private static async Task HoldsThroughoutAsync(TimeSpan period, Func<Task> assertion)
    {
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (watch.Elapsed < period)
        {
            await assertion();
            await Task.Delay(250);
        }
    }
}
