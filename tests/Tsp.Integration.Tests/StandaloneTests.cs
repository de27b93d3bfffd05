using Tsp.ServiceDefaults.Embedded;
using System.Diagnostics;
using Google.Protobuf;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Tsp.Actors.Hosting;
using Tsp.Actors.Ingest;
using Tsp.Actors.Northbound;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Seed;
using Tsp.Tests.Shared;
using Xunit.Abstractions;

namespace Tsp.Integration.Tests;

/// <summary>One process, every role, real Redis (or Garnet) and a real journal, end to end.</summary>
[Collection(ClusterCollection.Name)]
public sealed class StandaloneTests(ITestOutputHelper output)
{
    private static readonly TimeSpan ResultTimeout = TimeSpan.FromSeconds(60);

    private static string DemoWorkflow => Path.Combine(AppContext.BaseDirectory, "samples", "demo", "workflow.yaml");

    /// <summary>The demo workflow under a project name of this test's own, so the results log starts empty.</summary>
    private static string DemoWorkflowAs(string project) =>
        TestServers.WriteWorkflow(File.ReadAllText(DemoWorkflow).Replace("project: demo", $"project: {project}", StringComparison.Ordinal));

    private async Task RunDemoAgainst(string redis)
    {
        var project = TestServers.Unique("demo");
        using var kafka = EmbeddedKafka.Start();
        var options = new TspOptions
        {
            Redis = redis,
            SqlitePath = TestServers.TempSqlitePath(),
            Workflows = [DemoWorkflowAs(project)],
            Kafka = new KafkaOptions { Bootstrap = kafka.BootstrapServers },
        };
        var log = new StringWriter();

        var summary = await DemoVerb.RunDemoAsync(options, frames: 60, concurrency: 16, size: 4096, log);

        output.WriteLine(log.ToString());
        Assert.Equal((60, 60, 0, 0), (summary.Frames, summary.Results, summary.Failed, summary.Dead));
        await using var store = await RedisStore.ConnectAsync(redis);
        var logged = await store.ReadResultsAsync(project, 0, 1000);
        Assert.Equal(61, logged.Count); // one warm-up frame, not counted by the summary
        Assert.Equal(Enumerable.Range(1, 61).Select(i => (long)i), logged.Select(r => r.Position));
        Assert.Equal(61, logged.Select(r => r.Result.RunId).Distinct().Count());
        Assert.Single(logged, r => r.Result.SourceId == "warm-up");
        Assert.All(logged, r => Assert.Equal(RunStatus.Succeeded, r.Result.Status));
        // The condition decides per frame; across 60 random frames both branches are taken.
        var inspect = logged.Select(r => r.Result.Nodes.Single(n => n.NodeId == "inspect").Status).ToList();
        Assert.Contains(NodeStatus.Completed, inspect);
        Assert.Contains(NodeStatus.Skipped, inspect);
        Assert.Contains("progress:", log.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public Task The_demo_workflow_runs_end_to_end_on_redis_server() => RunDemoAgainst(TestServers.Redis);

    [Fact]
    public async Task The_demo_workflow_runs_end_to_end_on_embedded_garnet()
    {
        using var garnet = EmbeddedRedis.Start();
        await RunDemoAgainst(garnet.ConnectionString);
    }

    [Fact]
    public async Task Node_outputs_are_claim_checked_in_redis_under_run_and_node()
    {
        var project = TestServers.Unique("claim");
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            nodes:
              - { id: copy, processor: passthrough, role: cpu, queue: cpu-a }
              - { id: hash, processor: checksum, role: gpu, queue: gpu-a, after: [copy] }
            """);
        using var host = await TestServers.StartHostAsync(new TspOptions { Redis = TestServers.Redis, SqlitePath = TestServers.TempSqlitePath(), Workflows = [workflow] });
        var (subscriber, results) = await ResultSubscriptions.SubscribeAsync(host.System(), project, ResultTimeout);
        var submitter = host.Services.GetRequiredService<RunSubmitter>();
        var store = host.Services.GetRequiredService<RedisStore>();

        var accepted = await submitter.SubmitAsync(new Frame { Project = project, Data = ByteString.CopyFromUtf8("frame bytes") });

        Assert.Equal(StartOutcome.Accepted, accepted.Outcome);
        var result = await results.ReadAsync().AsTask().WaitAsync(ResultTimeout);
        Assert.Equal(accepted.RunId, result.RunId);
        Assert.Equal(RunStatus.Succeeded, result.Status);
        var copy = result.Nodes.Single(n => n.NodeId == "copy");
        Assert.Equal(RedisKeys.NodeOutput(project, result.RunId, "copy"), copy.OutputKey);
        Assert.Equal("frame bytes", System.Text.Encoding.UTF8.GetString((await store.GetBlobAsync(copy.OutputKey))!));
        var hash = result.Nodes.Single(n => n.NodeId == "hash");
        var expectedHash = System.IO.Hashing.XxHash64.HashToUInt64("frame bytes"u8);
        Assert.Equal(expectedHash, System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian((await store.GetBlobAsync(hash.OutputKey))!));
        Assert.Equal(expectedHash.ToString("x16", System.Globalization.CultureInfo.InvariantCulture), hash.Labels["checksum"]);
        host.System().Stop(subscriber);
        await host.StopAsync();
    }

    /// <summary>join runs once wait has slept 5 s, after a (a checksum: a short node, a small output).</summary>
    private static string CarriedWorkflow(string project) => TestServers.WriteWorkflow($$"""
        project: {{project}}
        nodes:
          - { id: a, processor: checksum, role: cpu, queue: cpu-a }
          - { id: wait, processor: sleep, role: cpu, queue: cpu-b, params: { ms: 5000 } }
          - { id: join, processor: checksum, role: cpu, queue: cpu-a, after: [a, wait] }
        """);

    /// <summary>join's checksum over a's output and the frame "frame bytes".</summary>
    private static string CarriedJoinChecksum(out byte[] aOutput)
    {
        aOutput = new byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(aOutput, System.IO.Hashing.XxHash64.HashToUInt64("frame bytes"u8));
        return System.IO.Hashing.XxHash64.HashToUInt64([.. aOutput, .. "frame bytes"u8]).ToString("x16", System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task A_short_nodes_small_output_reaches_its_child_inside_the_task_and_reaches_redis_with_the_runs_result()
    {
        var project = TestServers.Unique("deferred");
        using var host = await TestServers.StartHostAsync(new TspOptions { Redis = TestServers.Redis, SqlitePath = TestServers.TempSqlitePath(), Workflows = [CarriedWorkflow(project)] });
        var (subscriber, results) = await ResultSubscriptions.SubscribeAsync(host.System(), project, ResultTimeout);
        var submitter = host.Services.GetRequiredService<RunSubmitter>();
        var control = host.Services.GetRequiredService<Tsp.Actors.Control.RunControl>();
        var store = host.Services.GetRequiredService<RedisStore>();

        var accepted = await submitter.SubmitAsync(new Frame { Project = project, Data = ByteString.CopyFromUtf8("frame bytes") });
        var aOutput = RedisKeys.NodeOutput(project, accepted.RunId, "a");
        var patience = System.Diagnostics.Stopwatch.StartNew();
        RunSummary summary;
        while ((summary = await control.GetRunAsync(project, accepted.RunId)).Nodes.Single(n => n.NodeId == "a").Stage != NodeStage.Completed)
        {
            Assert.True(patience.Elapsed < ResultTimeout, $"a did not complete within {ResultTimeout}");
            await Task.Delay(20);
        }

        // a is done and wait still sleeps: a's output is with the run's host, not in Redis.
        Assert.Equal(RunStage.Running, summary.Stage);
        Assert.False(await store.BlobExistsAsync(aOutput));

        var result = await results.ReadAsync().AsTask().WaitAsync(ResultTimeout);
        Assert.Equal(accepted.RunId, result.RunId);
        Assert.True(result.Status == RunStatus.Succeeded, result.Error);
        Assert.Equal(CarriedJoinChecksum(out var aBytes), result.Nodes.Single(n => n.NodeId == "join").Labels["checksum"]);
        Assert.Equal(aBytes, await store.GetBlobAsync(aOutput));
        var ttl = await store.Connection.GetDatabase().KeyTimeToLiveAsync(aOutput);
        Assert.InRange(ttl!.Value, TimeSpan.FromSeconds(1), store.Options.FinishedBlobTtl);
        host.System().Stop(subscriber);
        await host.StopAsync();
    }

    [Fact]
    public async Task A_small_output_reaches_its_child_inside_the_task_even_when_its_key_is_gone()
    {
        var project = TestServers.Unique("carried");
        // Every node's output written by its node at once; a's key is deleted before join runs, so join
        // can only succeed on the output that a's reply carried (NodeActor.CarriedOutputLimit).
        using var host = await TestServers.StartHostAsync(new TspOptions
        {
            Redis = TestServers.Redis,
            SqlitePath = TestServers.TempSqlitePath(),
            Workflows = [CarriedWorkflow(project)],
            RunHost = new Tsp.Actors.Workflows.RunHostTuning { WriteNodeResultsFrom = TimeSpan.Zero },
        });
        var (subscriber, results) = await ResultSubscriptions.SubscribeAsync(host.System(), project, ResultTimeout);
        var submitter = host.Services.GetRequiredService<RunSubmitter>();
        var store = host.Services.GetRequiredService<RedisStore>();

        var accepted = await submitter.SubmitAsync(new Frame { Project = project, Data = ByteString.CopyFromUtf8("frame bytes") });
        var aOutput = RedisKeys.NodeOutput(project, accepted.RunId, "a");
        var patience = System.Diagnostics.Stopwatch.StartNew();
        while (!await store.BlobExistsAsync(aOutput))
        {
            Assert.True(patience.Elapsed < ResultTimeout, $"a's output {aOutput} was not written within {ResultTimeout}");
            await Task.Delay(20);
        }

        await store.DeleteBlobsAsync([aOutput]);

        var result = await results.ReadAsync().AsTask().WaitAsync(ResultTimeout);
        Assert.Equal(accepted.RunId, result.RunId);
        Assert.True(result.Status == RunStatus.Succeeded, result.Error);
        Assert.Equal(CarriedJoinChecksum(out _), result.Nodes.Single(n => n.NodeId == "join").Labels["checksum"]);
        host.System().Stop(subscriber);
        await host.StopAsync();
    }

    [Fact]
    public async Task A_failing_node_is_retried_then_dead_lettered_while_other_runs_complete()
    {
        var project = TestServers.Unique("fail");
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            defaults: { timeout: 5s }
            nodes:
              - { id: pre, processor: passthrough, role: cpu, queue: cpu-f }
              - id: recovers
                processor: flaky
                role: cpu
                queue: cpu-f
                after: [pre]
                max_attempts: 3
                params: { fail_attempts: 2 }
              - id: gate
                processor: checksum
                role: cpu
                queue: cpu-f
                after: [recovers]
              - id: broken
                processor: flaky
                role: gpu
                queue: gpu-f
                after: [gate]
                when: "gate.bytes > 5"
                max_attempts: 2
            """);
        var options = new TspOptions
        {
            Redis = TestServers.Redis,
            SqlitePath = TestServers.TempSqlitePath(),
            Workflows = [workflow],
            Queues = { ["cpu-f"] = new() { Role = "cpu", RetryBaseDelay = TimeSpan.FromMilliseconds(10) }, ["gpu-f"] = new() { Role = "gpu", RetryBaseDelay = TimeSpan.FromMilliseconds(10) } },
        };
        using var host = await TestServers.StartHostAsync(options);
        var (subscriber, results) = await ResultSubscriptions.SubscribeAsync(host.System(), project, ResultTimeout);
        var submitter = host.Services.GetRequiredService<RunSubmitter>();
        var store = host.Services.GetRequiredService<RedisStore>();

        // 3 bytes: gate.bytes = 3, "broken" is skipped and the run succeeds after retries of "recovers".
        // 9 bytes: "broken" runs, fails twice, and fails the run.
        var ok = await submitter.SubmitAsync(new Frame { Project = project, Data = ByteString.CopyFrom(1, 2, 3) });
        var bad = await submitter.SubmitAsync(new Frame { Project = project, Data = ByteString.CopyFrom(new byte[9]) });
        var byRun = new Dictionary<string, TpResult>();
        while (byRun.Count < 2)
        {
            var result = await results.ReadAsync().AsTask().WaitAsync(ResultTimeout);
            byRun[result.RunId] = result;
        }

        var succeeded = byRun[ok.RunId];
        Assert.Equal(RunStatus.Succeeded, succeeded.Status);
        Assert.Equal(3, succeeded.Nodes.Single(n => n.NodeId == "recovers").Attempts);
        Assert.Equal(NodeStatus.Skipped, succeeded.Nodes.Single(n => n.NodeId == "broken").Status);
        var failed = byRun[bad.RunId];
        Assert.Equal(RunStatus.Failed, failed.Status);
        Assert.Equal("node 'broken' failed after 2 attempt(s): InvalidOperationException: flaky: failure on attempt 2", failed.Error);
        var dead = Assert.Single(await store.ReadDeadLettersAsync(project));
        Assert.Equal((bad.RunId, "broken"), (dead.Reference, dead.NodeId));
        host.System().Stop(subscriber);
        await host.StopAsync();
    }

    [Fact]
    public async Task A_node_that_hangs_past_its_timeout_is_abandoned_on_the_worker_and_retried()
    {
        var project = TestServers.Unique("hang");
        // Both nodes' first attempt never returns and ignores its cancellation. "stuck" may retry and
        // succeeds; "gives-up" (only for frames over 5 bytes) may not, and fails its run.
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            nodes:
              - { id: pre, processor: passthrough, role: cpu, queue: cpu-h }
              - id: stuck
                processor: flaky
                role: cpu
                queue: cpu-h
                after: [pre]
                timeout: 300ms
                max_attempts: 2
                params: { hang_attempts: 1, fail_attempts: 0 }
              - id: gives-up
                processor: flaky
                role: cpu
                queue: cpu-h
                after: [pre, stuck]
                when: "pre.bytes > 5"
                timeout: 300ms
                max_attempts: 1
                params: { hang_attempts: 1, fail_attempts: 0 }
            """);
        var options = new TspOptions
        {
            Redis = TestServers.Redis,
            SqlitePath = TestServers.TempSqlitePath(),
            Workflows = [workflow],
            // One slot, and a queue that would wait an hour before taking a task back on its own: only
            // the worker's own timeout answer can free the slot and let the retries run.
            Queues = { ["cpu-h"] = new() { Role = "cpu", RouteesPerMember = 1, SlotsPerRoutee = 1, RetryBaseDelay = TimeSpan.FromMilliseconds(10), TimeoutGrace = TimeSpan.FromHours(1) } },
        };
        using var host = await TestServers.StartHostAsync(options);
        var (subscriber, results) = await ResultSubscriptions.SubscribeAsync(host.System(), project, ResultTimeout);
        var submitter = host.Services.GetRequiredService<RunSubmitter>();

        var small = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            small.Add((await submitter.SubmitAsync(new Frame { Project = project, Data = ByteString.CopyFrom(1, 2, (byte)i) })).RunId);
        }

        var large = (await submitter.SubmitAsync(new Frame { Project = project, Data = ByteString.CopyFrom(new byte[9]) })).RunId;
        var byRun = new Dictionary<string, TpResult>();
        while (byRun.Count < 4)
        {
            var result = await results.ReadAsync().AsTask().WaitAsync(ResultTimeout);
            byRun[result.RunId] = result;
        }

        Assert.All(small, id =>
        {
            Assert.Equal(RunStatus.Succeeded, byRun[id].Status);
            Assert.Equal(2, byRun[id].Nodes.Single(n => n.NodeId == "stuck").Attempts);
        });
        Assert.Equal(RunStatus.Failed, byRun[large].Status);
        Assert.Equal("node 'gives-up' failed after 1 attempt(s): timed out after 300 ms; processor 'flaky' ignored the cancellation and was abandoned", byRun[large].Error);
        host.System().Stop(subscriber);
        await host.StopAsync();
    }

    [Fact]
    public async Task Bad_frames_are_rejected_with_a_reason_and_never_start_a_run()
    {
        var project = TestServers.Unique("bad");
        using var host = await TestServers.StartHostAsync(new TspOptions
        {
            Redis = TestServers.Redis,
            SqlitePath = TestServers.TempSqlitePath(),
            Workflows = [DemoWorkflowAs(project)],
            MaxFrameBytes = 1024,
        });
        var submitter = host.Services.GetRequiredService<RunSubmitter>();

        var unknown = await submitter.SubmitAsync(new Frame { Project = "ghost", Data = ByteString.CopyFrom(1) });
        var empty = await submitter.SubmitAsync(new Frame { Project = project });
        var oversized = await submitter.SubmitAsync(new Frame { Project = project, Data = ByteString.CopyFrom(new byte[1025]) });
        var badId = await submitter.SubmitAsync(new Frame { Project = project, Data = ByteString.CopyFrom(1) }, runId: "a/b");

        Assert.All(new[] { unknown, empty, oversized, badId }, r => Assert.Equal(StartOutcome.Rejected, r.Outcome));
        Assert.Equal($"unknown project 'ghost' (deployed: {project})", unknown.Error);
        Assert.Equal($"frame for project '{project}' is empty", empty.Error);
        Assert.Equal("frame of 1025 bytes exceeds the maximum of 1024 bytes", oversized.Error);
        Assert.Contains("run id 'a/b' may hold only", badId.Error, StringComparison.Ordinal);
        var good = await submitter.SubmitAsync(new Frame { Project = project, Data = ByteString.CopyFrom(1) });
        Assert.Equal(StartOutcome.Accepted, good.Outcome);
        var again = await submitter.SubmitAsync(new Frame { Project = project, Data = ByteString.CopyFrom(1) }, good.RunId);
        Assert.Contains(again.Outcome, new[] { StartOutcome.AlreadyRunning, StartOutcome.AlreadyCompleted });
        await host.StopAsync();
    }

    [Fact]
    public async Task A_batch_submission_writes_every_frame_and_answers_each_submission_in_order()
    {
        var project = TestServers.Unique("batch");
        using var host = await TestServers.StartHostAsync(new TspOptions
        {
            Redis = TestServers.Redis,
            SqlitePath = TestServers.TempSqlitePath(),
            Workflows = [DemoWorkflowAs(project)],
        });
        var submitter = host.Services.GetRequiredService<RunSubmitter>();
        var submissions = Enumerable.Range(0, 40)
            .Select(i => (Frame: new Frame { Project = project, SourceId = $"cam-{i}", Data = ByteString.CopyFrom(BitConverter.GetBytes(i * 7919)) }, RunId: $"{project}-{i}"))
            .ToList();
        submissions[5] = (new Frame { Project = project }, $"{project}-empty");
        submissions[7] = (submissions[7].Frame, "a b");
        submissions.Add(submissions[0]);

        var outcomes = await submitter.SubmitBatchAsync(submissions);

        Assert.Equal(submissions.Select(s => s.RunId), outcomes.Select(o => o.RunId));
        Assert.Equal($"frame for project '{project}' is empty", outcomes[5].Error);
        Assert.Contains("run id 'a b' may hold only", outcomes[7].Error, StringComparison.Ordinal);
        var good = Enumerable.Range(0, 40).Where(i => i is not (5 or 7)).ToList();
        Assert.All(good, i => Assert.Equal(StartOutcome.Accepted, outcomes[i].Outcome));
        Assert.Contains(outcomes[^1].Outcome, new[] { StartOutcome.Accepted, StartOutcome.AlreadyRunning, StartOutcome.AlreadyCompleted });
        // Redelivered: no run starts again, and the frame strings written for them are deleted at once.
        var again = await submitter.SubmitBatchAsync(submissions);
        Assert.All(good, i => Assert.Contains(again[i].Outcome, new[] { StartOutcome.AlreadyRunning, StartOutcome.AlreadyCompleted }));
        await using var store = await RedisStore.ConnectAsync(TestServers.Redis);

        var logged = await TestServers.WaitForResultsAsync(store, project, good.Count, ResultTimeout);

        Assert.Equal(good.Select(i => submissions[i].RunId).Order(), logged.Select(r => r.Result.RunId).Order());
        Assert.All(logged, r => Assert.Equal(RunStatus.Succeeded, r.Result.Status));
        // The first node (passthrough) read each run's own frame out of its host's frame string.
        Assert.All(good, i => Assert.Equal(submissions[i].Frame.Data.ToByteArray(), store.GetBlobAsync(RedisKeys.NodeOutput(project, submissions[i].RunId, "ingest")).Result));

        // A host's frame string is deleted once the last of its runs has finished.
        var server = store.Connection.GetServer(store.Connection.GetEndPoints()[0]);
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < ResultTimeout && server.Keys(pattern: RedisKeys.Frames(project, "*"), pageSize: 5000).Any())
        {
            await Task.Delay(100);
        }

        Assert.Empty(server.Keys(pattern: RedisKeys.Frames(project, "*"), pageSize: 5000));
        await host.StopAsync();
    }

    [Fact]
    public async Task Runs_accepted_before_a_restart_finish_after_it_without_being_submitted_again()
    {
        var project = TestServers.Unique("restart");
        var journal = TestServers.TempSqlitePath();
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            nodes:
              - { id: pre, processor: passthrough, role: cpu, queue: cpu-r }
              - { id: slow, processor: sleep, role: gpu, queue: gpu-r, after: [pre], params: { ms: 400 } }
              - { id: post, processor: checksum, role: cpu, queue: cpu-r, after: [slow] }
            """);
        TspOptions Options() => new()
        {
            Redis = TestServers.Redis,
            SqlitePath = journal,
            Workflows = [workflow],
            Queues = { ["gpu-r"] = new() { Role = "gpu", RouteesPerMember = 1, SlotsPerRoutee = 2 } },
        };
        var runIds = new List<string>();
        using (var first = await TestServers.StartHostAsync(Options()))
        {
            var submitter = first.Services.GetRequiredService<RunSubmitter>();
            for (var i = 0; i < 12; i++)
            {
                var accepted = await submitter.SubmitAsync(new Frame { Project = project, Data = ByteString.CopyFrom((byte)i) });
                Assert.Equal(StartOutcome.Accepted, accepted.Outcome);
                runIds.Add(accepted.RunId);
            }

            // 12 runs through 2 slots of 400 ms: most are still unfinished when the process stops.
            await first.StopAsync();
        }

        await using var store = await RedisStore.ConnectAsync(TestServers.Redis);
        var beforeRestart = (await store.ReadResultsAsync(project, 0, 100)).Count;
        output.WriteLine($"{beforeRestart} of 12 runs finished before the restart");
        Assert.True(beforeRestart < 12);

        using var second = await TestServers.StartHostAsync(Options());
        var deadline = Stopwatch.StartNew();
        IReadOnlyList<PositionedResult> logged = [];
        while (deadline.Elapsed < ResultTimeout)
        {
            logged = await store.ReadResultsAsync(project, 0, 100);
            if (logged.Select(r => r.Result.RunId).Distinct().Count() == 12)
            {
                break;
            }

            await Task.Delay(100);
        }

        Assert.Equal(runIds.Order(), logged.Select(r => r.Result.RunId).Distinct().Order());
        Assert.All(logged, r => Assert.Equal(RunStatus.Succeeded, r.Result.Status));
        await second.StopAsync();
    }

    [Fact]
    public async Task The_demo_command_trains_then_inspects_the_sample_and_prints_one_summary_line()
    {
        var models = Path.Combine(Path.GetTempPath(), "tsp-tests", TestServers.Unique("models"));
        var (exitCode, text) = await RunSeedAsync("demo", "--frames", "40", "--models", models);

        output.WriteLine(text);
        Assert.Equal(0, exitCode);
        Assert.Contains("demo: project 'rail-inspection'", text, StringComparison.Ordinal);
        Assert.Contains("demo: trained 'rail-anomaly' version 1", text, StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(models, "rail-anomaly", "1", "model.onnx")));
        Assert.Contains("progress: 40/40 results", text, StringComparison.Ordinal);
        Assert.Matches(@"(?m)^    anomaly +Completed .* model rail-anomaly v1$", text);
        Assert.Matches(@"(?m)^    read +Completed .* model ocr-rec v1$", text);
        Assert.Matches(@"(?m)^    serial ""\d{4}-\d{2}"" [01]\.\d\d at x=\d+ y=\d+ w=\d+ h=\d+ \(node serial\)$", text);
        Assert.Matches(@"(?m)^demo: quality recall@0\.5=[01]\.\d{3} .*recall_strong=.* serials_read=\d+/40$", text);
        var summary = System.Text.RegularExpressions.Regex.Match(text, @"(?m)^demo: frames=40 results=40 failed=0 dead=0 runs_per_s=\d+(\.\d)? p99_ms=\d+(\.\d)? auroc=(?<auroc>[01]\.\d{3}) recall=(?<recall>[01]\.\d{3}) precision=(?<precision>[01]\.\d{3}) serial_accuracy=(?<serials>[01]\.\d{3})$");
        Assert.True(summary.Success, "no summary line");
        double Figure(string name) => double.Parse(summary.Groups[name].Value, System.Globalization.CultureInfo.InvariantCulture);
        // Floors well under the figures of 200 images (bench/RESULTS.md): 40 images are a small sample.
        Assert.InRange(Figure("auroc"), 0.9, 1.0);
        Assert.InRange(Figure("recall"), 0.7, 1.0);
        Assert.InRange(Figure("precision"), 0.7, 1.0);
        Assert.InRange(Figure("serials"), 0.9, 1.0);
    }

    private static Task<(int ExitCode, string Output)> RunSeedAsync(params string[] args) => RunAsync("Tsp.Seed.dll", args);

    /// <summary>Runs one of the solution's executables to its end (at most 3 minutes).</summary>
    private static Task<(int ExitCode, string Output)> RunAsync(string dll, params string[] args) => RunAsync(dll, new Dictionary<string, string>(), args);

    private static async Task<(int ExitCode, string Output)> RunAsync(string dll, IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var executable = Path.Combine(AppContext.BaseDirectory, dll);
        var start = new ProcessStartInfo("dotnet", [executable, .. args])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        ChildProcesses.UseAnyFreeHttpPort(start);
        foreach (var (key, value) in environment)
        {
            start.Environment[key] = value;
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }

        return (process.ExitCode, await stdout + await stderr);
    }

    [Fact]
    public async Task A_member_with_an_unreachable_redis_or_journal_or_a_bad_workflow_exits_at_start_saying_why()
    {
        var unreachable = await RunSeedAsync("run", "--redis", "127.0.0.1:1", "--journal", TestServers.TempSqlitePath(), "--workflow", DemoWorkflow);
        var noJournal = await RunSeedAsync("run", "--redis", TestServers.Redis, "--postgres", "Host=127.0.0.1;Port=1;Username=u;Password=secret-pw;Database=tsp", "--workflow", DemoWorkflow);
        var badWorkflow = TestServers.WriteWorkflow("project: p\nnodes:\n  - { id: a, processor: nope, role: cpu, queue: q }\n");
        var invalid = await RunSeedAsync("run", "--redis", TestServers.Redis, "--workflow", badWorkflow);
        var badFlag = await RunSeedAsync("run", "--colour", "blue");
        var missingWorkflow = await RunSeedAsync("run", "--redis", TestServers.Redis, "--workflow", "/no/such/workflow.yaml");
        var badRole = await RunSeedAsync("run", "--roles", "seed,orchestrator,tpu", "--redis", TestServers.Redis, "--workflow", DemoWorkflow);
        var badSeed = await RunSeedAsync("run", "--seed", "10.0.0.5", "--redis", TestServers.Redis, "--workflow", DemoWorkflow);
        var badWorkerSeed = await RunAsync("Tsp.GpuNode.dll", "--seed", "127.0.0.1:70000", "--redis", TestServers.Redis);
        var badQueues = await RunAsync("Tsp.GpuNode.dll", "--seed", "127.0.0.1:4053", "--redis", TestServers.Redis, "--queues", "gpu-model=2,gpu-ocr=none");
        var notPfx = Path.Combine(Path.GetTempPath(), "tsp-tests", TestServers.Unique("not") + ".pfx");
        await File.WriteAllTextAsync(notPfx, "not a certificate");
        var badCertificate = await RunAsync("Tsp.GpuNode.dll", new Dictionary<string, string> { ["Tsp__Tls__Certificate"] = notPfx }, "--seed", "127.0.0.1:4053", "--redis", TestServers.Redis);
        var noCertificate = await RunAsync("Tsp.Seed.dll", new Dictionary<string, string> { ["Tsp__Tls__Certificate"] = "/no/such/remoting.pfx" }, "status", "--seed", "127.0.0.1:4053");

        Assert.Equal(4, unreachable.ExitCode);
        Assert.Contains("error: cannot reach Redis at 127.0.0.1:1", unreachable.Output, StringComparison.Ordinal);
        Assert.Equal(4, noJournal.ExitCode);
        Assert.Contains("error: cannot reach PostgreSQL journal at 127.0.0.1:1/tsp", noJournal.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("secret-pw", noJournal.Output, StringComparison.Ordinal);
        Assert.Equal(3, invalid.ExitCode);
        Assert.Contains($"{badWorkflow}:3: node 'a': unknown processor 'nope'", invalid.Output, StringComparison.Ordinal);
        Assert.Equal(3, missingWorkflow.ExitCode);
        Assert.Contains("/no/such/workflow.yaml: cannot read the workflow file", missingWorkflow.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", missingWorkflow.Output, StringComparison.Ordinal);
        Assert.Equal(2, badFlag.ExitCode);
        Assert.Contains("error: Unrecognized command or argument '--colour'", badFlag.Output, StringComparison.Ordinal);
        Assert.Contains("see: Tsp.Seed run --help", badFlag.Output, StringComparison.Ordinal);
        Assert.Equal(2, badRole.ExitCode);
        Assert.Contains("error: unknown role 'tpu' (roles: seed, orchestrator, gpu, cpu)", badRole.Output, StringComparison.Ordinal);
        Assert.Equal(2, badSeed.ExitCode);
        Assert.Contains("error: seed '10.0.0.5' is not HOST:PORT", badSeed.Output, StringComparison.Ordinal);
        Assert.Equal(2, badWorkerSeed.ExitCode);
        Assert.Contains("error: seed '127.0.0.1:70000' is not HOST:PORT", badWorkerSeed.Output, StringComparison.Ordinal);
        Assert.Equal(2, badQueues.ExitCode);
        Assert.Contains("error: Tsp:WorkerQueues (--queues): 'gpu-ocr=none': slots must be a whole number of at least 1, not 'none'", badQueues.Output, StringComparison.Ordinal);
        Assert.Equal(2, badCertificate.ExitCode);
        Assert.Contains($"error: Tsp:Tls:Certificate: cannot read '{notPfx}' as a PKCS#12 (.pfx) file", badCertificate.Output, StringComparison.Ordinal);
        Assert.Equal(2, noCertificate.ExitCode);
        Assert.Contains("error: Tsp:Tls:Certificate: no such file '/no/such/remoting.pfx'", noCertificate.Output, StringComparison.Ordinal);
        Assert.All(new[] { badCertificate, noCertificate }, r => Assert.DoesNotContain("   at ", r.Output, StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_taken_operations_port_ends_the_start_with_exit_5_naming_the_address_and_the_flags()
    {
        using var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        var port = ((System.Net.IPEndPoint)taken.LocalEndpoint).Port.ToString(System.Globalization.CultureInfo.InvariantCulture);

        var run = await RunSeedAsync("run", "--http-port", port, "--grpc-port", "-1", "--redis", TestServers.Redis, "--journal", TestServers.TempSqlitePath(), "--workflow", DemoWorkflow);

        Assert.True(run.ExitCode == 5, $"exit {run.ExitCode}: {run.Output}");
        Assert.Contains($"127.0.0.1:{port}", run.Output, StringComparison.Ordinal);
        Assert.Contains("--http-port", run.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", run.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Every_verb_answers_help_and_a_bad_flag_value_is_refused_naming_the_flag()
    {
        foreach (var verb in new[] { "demo", "standalone", "run", "produce", "status", "top", "subscribe" })
        {
            var help = await RunSeedAsync(verb, "--help");
            Assert.True(help.ExitCode == 0, $"{verb} --help exited with {help.ExitCode}: {help.Output}");
            Assert.Contains($"Tsp.Seed {verb} [options]", help.Output, StringComparison.Ordinal);
        }

        var root = await RunSeedAsync("--help");
        Assert.Equal(0, root.ExitCode);
        Assert.Contains("subscribe", root.Output, StringComparison.Ordinal);
        var worker = await RunAsync("Tsp.GpuNode.dll", "--help");
        Assert.Equal(0, worker.ExitCode);
        Assert.Contains("--seed", worker.Output, StringComparison.Ordinal);

        var frames = await RunSeedAsync("demo", "--frames", "many");
        Assert.Equal(2, frames.ExitCode);
        Assert.Contains("'many' for option '--frames'", frames.Output, StringComparison.Ordinal);
        var zero = await RunSeedAsync("demo", "--frames", "0");
        Assert.Equal(2, zero.ExitCode);
        Assert.Contains("--frames 0 must be at least 1", zero.Output, StringComparison.Ordinal);
        var grpcPort = await RunSeedAsync("run", "--grpc-port", "70000");
        Assert.Equal(2, grpcPort.ExitCode);
        Assert.Contains("--grpc-port 70000 is out of range", grpcPort.Output, StringComparison.Ordinal);
        var httpPort = await RunSeedAsync("run", "--http-port", "70000");
        Assert.Equal(2, httpPort.ExitCode);
        Assert.Contains("--http-port 70000 is out of range", httpPort.Output, StringComparison.Ordinal);
        var url = await RunSeedAsync("subscribe", "--grpc", "nowhere", "--project", "p");
        Assert.Equal(2, url.ExitCode);
        Assert.Contains("--grpc 'nowhere' is not an absolute URL", url.Output, StringComparison.Ordinal);
        var badSetting = await RunAsync("Tsp.Seed.dll", new Dictionary<string, string> { ["Tsp__RunHosts"] = "eight" }, "run");
        Assert.Equal(2, badSetting.ExitCode);
        Assert.Contains("Tsp:RunHosts", badSetting.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", badSetting.Output, StringComparison.Ordinal);
        var missing = await RunSeedAsync("produce", "--project", "p");
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("--bootstrap", missing.Output, StringComparison.Ordinal);
    }
}
