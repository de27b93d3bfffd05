using System.Text;
using Npgsql;
using System.Text.RegularExpressions;
using Tsp.Actors.Hosting;
using Tsp.Actors.Ingest;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.ServiceDefaults.Embedded;
using Tsp.Tests.Shared;
using Xunit.Abstractions;

namespace Tsp.Integration.Tests;

/// <summary>Redis or Kafka failing under a stream: a seed and a worker process on a redis-server (or a
/// Kafka broker process) of the test's own, frames through Kafka, results read by a gRPC subscriber
/// that resubscribes as clients do.</summary>
[Collection(ClusterCollection.Name)]
public sealed class DependencyFaultTests(ITestOutputHelper output) : IDisposable
{
    private const int Frames = 600;
    private readonly ChildProcesses _processes = new(output);
    private readonly EmbeddedKafka _kafka = EmbeddedKafka.Start();

    public void Dispose()
    {
        _processes.Dispose();
        _kafka.Dispose();
    }

    [Fact]
    public async Task Redis_restarting_mid_stream_with_AOF_loses_no_frame_and_publishes_none_twice()
    {
        using var redis = await RedisServerProcess.StartAsync(appendOnly: true);

        var (_, seed) = await StreamThroughAsync(redis.Endpoint, _kafka.BootstrapServers, "restart", async () =>
        {
            await redis.StopAsync();
            await redis.StartAsync();
        });

        output.WriteLine(string.Join('\n', seed.Lines.Where(l => l.Contains("Redis", StringComparison.Ordinal)).Take(20)));
    }

    [Fact]
    public async Task Redis_unreachable_for_30_s_mid_stream_pauses_the_work_which_then_resumes_by_itself()
    {
        using var redis = await RedisServerProcess.StartAsync(appendOnly: true);

        var (_, seed) = await StreamThroughAsync(redis.Endpoint, _kafka.BootstrapServers, "frozen", async () =>
        {
            // The fault's length, not a wait for something: Redis hangs every command for 30 s.
            redis.Freeze();
            await Task.Delay(TimeSpan.FromSeconds(30));
            redis.Resume();
        });

        // The outage was seen (and said once in a while, not once per task), and recovered from without a restart.
        Assert.Contains(seed.Lines, l => l.Contains("waited for Redis", StringComparison.Ordinal) || l.Contains("runs cannot be started", StringComparison.Ordinal));
        Assert.True(seed.Lines.Count(l => l.Contains("waited for Redis", StringComparison.Ordinal)) < 40, "the queue logged Redis waits per task");
    }

    [Fact]
    public async Task Redis_losing_its_data_fails_the_runs_it_held_with_a_reason_in_dead_letters_and_later_frames_run()
    {
        using var redis = await RedisServerProcess.StartAsync(appendOnly: false);
        var project = TestServers.Unique("lost");
        var (seedPort, _, _) = await StartClusterAsync(redis.Endpoint, _kafka.BootstrapServers, project, "lost", modelMs: 200);
        using var producer = new FrameProducer(_kafka.BootstrapServers);
        const int frames = 200;
        // Frames larger than a reply carries (NodeActor.CarriedOutputLimit): pre passes its frame on, and
        // model must read it back from Redis, which is what the loss takes away.
        static byte[] Frame(string text) => [.. Encoding.UTF8.GetBytes(text), .. new byte[Tsp.Actors.Nodes.NodeActor.CarriedOutputLimit]];
        for (var i = 0; i < frames; i++)
        {
            await producer.ProduceAsync(project, Frame($"frame {i}"));
        }

        // Runs are in flight (their frames and outputs in Redis) when Redis loses everything: some are
        // done, and at 200 ms a model task on 8 slots the other 100 or more take seconds more.
        await using (var before = await RedisStore.ConnectAsync(redis.Endpoint))
        {
            var done = await before.LatestPositionAsync(project);
            var patience = System.Diagnostics.Stopwatch.StartNew();
            while (done < 8)
            {
                Assert.True(patience.Elapsed < TimeSpan.FromSeconds(120), $"only {done} runs were done within 120 s");
                await Task.Delay(10);
                done = await before.LatestPositionAsync(project);
            }

            Assert.True(done <= frames / 2, $"{done} of {frames} runs were done before Redis could be wiped mid-way");
        }

        await redis.KillAsync();
        await redis.StartAsync();
        var after = new List<string>();
        for (var i = 0; i < 16; i++)
        {
            after.Add(await producer.ProduceAsync(project, Frame($"after {i}")));
        }

        // Nothing hangs: every accepted run ends, failed or not, and ingest holds no run.
        await _processes.StatusAsync(seedPort, text => text.Contains("active runs on this orchestrator: 0", StringComparison.Ordinal)
            && text.Contains($"{project}  kafka_in_flight_runs=0", StringComparison.Ordinal));
        await using var store = await RedisStore.ConnectAsync(redis.Endpoint);
        var logged = await store.ReadResultsAsync(project, 0, 1000);
        var failed = logged.Where(r => r.Result.Status == RunStatus.Failed).ToList();
        Assert.NotEmpty(failed);
        Assert.All(failed, r => Assert.Contains("is missing from Redis", r.Result.Error, StringComparison.Ordinal));
        var dead = await store.ReadDeadLettersAsync(project);
        Assert.Equal(failed.Select(r => r.Result.RunId).Order(), dead.Select(d => d.Reference).Order());
        Assert.All(dead, d => Assert.Contains("is missing from Redis", d.Reason, StringComparison.Ordinal));
        // Frames that arrive after the loss run as usual.
        Assert.All(after, id => Assert.Equal(RunStatus.Succeeded, Assert.Single(logged, r => r.Result.RunId == id).Result.Status));
    }

    [Fact]
    public async Task Kafka_unreachable_for_30_s_mid_stream_pauses_ingest_which_resumes_from_its_offsets_with_every_result_once()
    {
        var broker = _processes.Start("Tsp.TestBroker.dll");
        var kafka = (await broker.WaitForLineAsync(l => l.StartsWith("kafka: ", StringComparison.Ordinal), TimeSpan.FromSeconds(60)))["kafka: ".Length..];

        // Every frame is in Kafka before the broker freezes: the consumer is what this is about (the mock
        // broker does not always take an idempotent producer back after a stall of its own). At 100 ms a
        // model task, ingest still has records to read when the broker stops answering.
        await StreamThroughAsync(TestServers.Redis, kafka, "partition", async () =>
        {
            // The fault's length: the broker's connections stay open and nothing answers for 30 s.
            broker.Signal("STOP");
            await Task.Delay(TimeSpan.FromSeconds(30));
            broker.Signal("CONT");
        }, produceDuringFault: false, modelMs: 100);
    }

    [Fact]
    public async Task PostgreSQL_going_away_for_10_s_under_two_orchestrators_loses_no_frame_and_publishes_none_twice()
    {
        var project = TestServers.Unique("pg");
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            defaults: { timeout: 10s }
            nodes:
              - { id: pre, processor: passthrough, role: cpu, queue: cpu-pg }
              - { id: model, processor: sleep, role: gpu, queue: gpu-pg, after: [pre], params: { ms: 10 } }
              - { id: post, processor: checksum, role: cpu, queue: cpu-pg, after: [model] }
            """);
        var grpcPort = TestPorts.Free();
        var cluster = await _processes.StartOrchestratorPairAsync(workflow, _kafka.BootstrapServers, "gpu-pg", (grpcPort, -1));
        // As a restart looks to its clients: every connection is dropped and new ones are refused for 10 s.
        await StreamAsync(project, _kafka.BootstrapServers, grpcPort, cluster.FirstPort, [cluster.First, cluster.Second, cluster.Worker], () => CutPostgresAsync(cluster.Journal, TimeSpan.FromSeconds(10)));
    }

    /// <summary>Terminates every connection to the database and refuses new ones for <paramref name="outage"/>.</summary>
    private static async Task CutPostgresAsync(string connectionString, TimeSpan outage)
    {
        var database = new NpgsqlConnectionStringBuilder(connectionString).Database!;
        await using var admin = new NpgsqlConnection(TestServers.PostgresServer + ";Database=postgres");
        await admin.OpenAsync();
        async Task ExecuteAsync(string sql)
        {
            await using var command = new NpgsqlCommand(sql, admin);
            await command.ExecuteNonQueryAsync();
        }

        await ExecuteAsync($"ALTER DATABASE {database} ALLOW_CONNECTIONS false");
        await ExecuteAsync($"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'");
        // The fault's length, not a wait for something.
        await Task.Delay(outage);
        await ExecuteAsync($"ALTER DATABASE {database} ALLOW_CONNECTIONS true");
    }

    /// <summary>A seed and a worker on <paramref name="redis"/> and <paramref name="kafka"/>, streamed through
    /// as <see cref="StreamAsync"/> does.</summary>
    private async Task<(List<TpResult> Results, ChildProcess Seed)> StreamThroughAsync(string redis, string kafka, string name, Func<Task> fault, bool produceDuringFault = true, int modelMs = 10)
    {
        var project = TestServers.Unique(name);
        var (seedPort, grpcPort, members) = await StartClusterAsync(redis, kafka, project, name, modelMs);
        var results = await StreamAsync(project, kafka, grpcPort, seedPort, members, fault, produceDuringFault);
        return (results, members[0]);
    }

    /// <summary>Streams <see cref="Frames"/> frames through Kafka to a running cluster; once a sixth has
    /// results, applies <paramref name="fault"/> while the rest is produced (or, without
    /// <paramref name="produceDuringFault"/>, with every frame already produced). Asserts that every frame's
    /// result arrived exactly once, at positions 1..N, and that no member exited.</summary>
    private async Task<List<TpResult>> StreamAsync(string project, string kafka, int grpcPort, int statusPort, ChildProcess[] members, Func<Task> fault, bool produceDuringFault = true)
    {
        await using var reader = new ResubscribingReader(project, $"http://127.0.0.1:{grpcPort}");
        using var producer = new FrameProducer(kafka);
        var produced = new List<string>();
        for (var i = 0; i < (produceDuringFault ? Frames / 3 : Frames); i++)
        {
            produced.Add(await producer.ProduceAsync(project, Encoding.UTF8.GetBytes($"frame {i}")));
        }

        await reader.WaitForRunsAsync(Frames / 6, TimeSpan.FromSeconds(120));
        var rest = Task.Run(async () =>
        {
            for (var i = produced.Count; i < Frames; i++)
            {
                var id = await producer.ProduceAsync(project, Encoding.UTF8.GetBytes($"frame {i}"));
                lock (produced)
                {
                    produced.Add(id);
                }
            }
        });
        await fault();
        await rest;

        var results = await reader.WaitForRunsAsync(Frames, TimeSpan.FromSeconds(240));
        output.WriteLine(await _processes.StatusAsync(statusPort, _ => true));
        Assert.Equal(produced.Order(StringComparer.Ordinal), results.Select(r => r.RunId).Order(StringComparer.Ordinal));
        Assert.Equal(Enumerable.Range(1, Frames).Select(i => (long)i), results.Select(r => r.Position).Order());
        Assert.All(results, r => Assert.Equal(RunStatus.Succeeded, r.Status));
        Assert.All(members, p => Assert.False(p.Process.HasExited, "a TSP process exited"));
        return results;
    }

    /// <summary>A seed (orchestrator, Kafka ingest, gRPC) and a worker, both on <paramref name="redis"/>;
    /// the workflow's queues are cpu-<paramref name="name"/> and gpu-<paramref name="name"/>.</summary>
    /// <returns>The ports, and the seed and the worker process.</returns>
    private async Task<(int SeedPort, int GrpcPort, ChildProcess[] Members)> StartClusterAsync(string redis, string kafka, string project, string name, int modelMs)
    {
        var workflow = TestServers.WriteWorkflow($$"""
            project: {{project}}
            defaults: { timeout: 10s }
            nodes:
              - { id: pre, processor: passthrough, role: cpu, queue: cpu-{{name}} }
              - { id: model, processor: sleep, role: gpu, queue: gpu-{{name}}, after: [pre], params: { ms: {{modelMs}} } }
              - { id: post, processor: checksum, role: cpu, queue: cpu-{{name}}, after: [model] }
            """);
        var (seedPort, grpcPort) = (TestPorts.Free(), TestPorts.Free());
        var seed = _processes.Start("Tsp.Seed.dll", "run", "--grpc-port", ChildProcesses.Port(grpcPort), "--port", ChildProcesses.Port(seedPort), "--redis", redis, "--kafka", kafka, "--journal", TestServers.TempSqlitePath(), "--workflow", workflow);
        await seed.WaitForLineAsync(l => l.StartsWith("grpc: ", StringComparison.Ordinal), TimeSpan.FromSeconds(90));
        var worker = _processes.Start("Tsp.GpuNode.dll", "--seed", $"127.0.0.1:{seedPort}", "--port", ChildProcesses.Port(TestPorts.Free()), "--roles", "gpu,cpu", "--redis", redis);
        await _processes.StatusAsync(seedPort, text => Regex.IsMatch(text, @"gpu-\S+ \(gpu\)  routees=[1-9]"));
        return (seedPort, grpcPort, [seed, worker]);
    }
}
