using Tsp.ServiceDefaults.Embedded;
using System.Collections.Concurrent;
using System.Text;
using Akka.Actor;
using Akka.Streams;
using Akka.Streams.Dsl;
using Confluent.Kafka;
using Google.Protobuf;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Tsp.Actors.Dispatch;
using Tsp.Actors.Hosting;
using Tsp.Actors.Ingest;
using Tsp.Actors.Northbound;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Tests.Shared;
using Xunit.Abstractions;

namespace Tsp.Integration.Tests;

/// <summary>Kafka ingest against the librdkafka mock cluster (a real Kafka-protocol broker on loopback).</summary>
[Collection(ClusterCollection.Name)]
public sealed class KafkaIngestTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(90);
    private readonly EmbeddedKafka _kafka = EmbeddedKafka.Start();
    private readonly string _project = TestServers.Unique("kafka");

    public void Dispose() => _kafka.Dispose();

    private TspOptions Options(string journal, string nodeMs = "0", int maxInFlight = 64, int batchSize = KafkaOptions.DefaultBatchSize, string scheduling = "{}") => new()
    {
        Redis = TestServers.Redis,
        SqlitePath = journal,
        Workflows =
        [
            TestServers.WriteWorkflow($$"""
                project: {{_project}}
                scheduling: {{scheduling}}
                nodes:
                  - { id: pre, processor: passthrough, role: cpu, queue: cpu-k }
                  - { id: model, processor: sleep, role: gpu, queue: gpu-k, after: [pre], params: { ms: {{nodeMs}} } }
                  - { id: post, processor: checksum, role: cpu, queue: cpu-k, after: [model] }
                """),
        ],
        Kafka = new KafkaOptions { Bootstrap = _kafka.BootstrapServers, MaxInFlightRuns = maxInFlight, BatchSize = batchSize },
    };

    private static async Task<IngestStats> Stats(IHost host) =>
        await host.Services.GetRequiredService<KafkaIngests>().ByProject.Values.Single().Ask<IngestStats>(GetIngestStats.Instance, TimeSpan.FromSeconds(10));

    [Fact]
    public async Task Every_message_becomes_exactly_one_result()
    {
        using var host = await TestServers.StartHostAsync(Options(TestServers.TempSqlitePath()));
        var (subscriber, results) = await ResultSubscriptions.SubscribeAsync(host.System(), _project, Patience);
        using var producer = new FrameProducer(_kafka.BootstrapServers);
        var expected = new List<string>();
        // Every fourth record has no source id: a batch's runs then carry source ids for some runs only.
        static string SourceOf(int i) => i % 4 == 1 ? string.Empty : $"cam-{i % 3}";
        for (var i = 0; i < 300; i++)
        {
            expected.Add(await producer.ProduceAsync(_project, Encoding.UTF8.GetBytes($"frame {i}"), SourceOf(i)));
        }

        var seen = new Dictionary<string, TpResult>();
        using var timeout = new CancellationTokenSource(Patience);
        while (seen.Count < expected.Count)
        {
            var result = await results.ReadAsync(timeout.Token);
            Assert.True(seen.TryAdd(result.RunId, result), $"run {result.RunId} reported twice");
            if (seen.Count % 50 == 0)
            {
                output.WriteLine($"{seen.Count} results; {await Stats(host)}");
            }
        }

        Assert.Equal(expected.Order(), seen.Keys.Order());
        Assert.All(seen.Values, r => Assert.Equal(RunStatus.Succeeded, r.Status));
        Assert.Equal(Enumerable.Range(0, expected.Count).Select(SourceOf), expected.Select(runId => seen[runId].SourceId));
        host.System().Stop(subscriber);
    }

    [Fact]
    public async Task The_source_hands_on_batches_bounded_in_records_and_bytes_and_commits_up_to_each_finished_batch()
    {
        using var producer = new FrameProducer(_kafka.BootstrapServers);
        for (var i = 0; i < 30; i++)
        {
            await producer.ProduceAsync(_project, new byte[1000]);
        }

        using var system = ActorSystem.Create("source", TspDispatchers.Config(1));
        var topic = KafkaTopics.Frames(_project);
        var group = "source-" + _project;
        var consumerConfig = new ConsumerConfig { BootstrapServers = _kafka.BootstrapServers, GroupId = group, AutoOffsetReset = AutoOffsetReset.Earliest };
        var batches = await KafkaSourceStage.Create(consumerConfig, topic, maxBatch: 8, maxBatchBytes: 2500)
            .Select(batch =>
            {
                KafkaMessage.CommitAll(batch);
                return batch;
            })
            .Scan(new List<IReadOnlyList<KafkaMessage>>(), (all, batch) => [.. all, batch])
            .TakeWhile(all => all.Sum(b => b.Count) < 30, inclusive: true)
            .RunWith(Sink.Last<List<IReadOnlyList<KafkaMessage>>>(), KafkaSourceStage.Materializer(system))
            .WaitAsync(Patience);

        // 1000-byte values against a 2500-byte bound: a batch ends with its third record.
        Assert.All(batches, b => Assert.InRange(b.Count, 1, 3));
        var records = batches.SelectMany(b => b).Select(m => m.Record.TopicPartitionOffset).ToList();
        Assert.Equal(30, records.Distinct().Count());
        foreach (var partition in records.GroupBy(r => r.Partition.Value))
        {
            Assert.Equal(partition.Select(r => r.Offset.Value).Order(), partition.Select(r => r.Offset.Value));
        }

        // The stored offsets are committed by auto-commit, or at the latest when the stopped source
        // closes its consumer (which happens after the sink has completed).
        using var probe = new ConsumerBuilder<byte[], byte[]>(consumerConfig).Build();
        var last = records.GroupBy(r => r.TopicPartition).Select(g => new TopicPartitionOffset(g.Key, g.Max(r => r.Offset.Value) + 1)).OrderBy(t => t.Partition.Value).ToList();
        await AwaitAsync(() =>
        {
            var committed = probe.Committed(last.Select(t => t.TopicPartition), TimeSpan.FromSeconds(10)).OrderBy(t => t.Partition.Value);
            Assert.Equal(last.Select(t => t.Offset.Value), committed.Select(t => t.Offset.Value));
            return Task.CompletedTask;
        });
    }

    [Fact]
    public async Task A_source_waiting_for_records_stops_when_its_stream_is_cancelled()
    {
        using var producer = new FrameProducer(_kafka.BootstrapServers);
        await producer.ProduceAsync(_project, new byte[10]);

        // A limit this high turns an interpreter that repolls without leaving its mailbox run (what
        // a source that re-polls through an async callback would do) into one that never hears the cancellation.
        using var system = ActorSystem.Create("source", TspDispatchers.Config(1)
            .WithFallback("akka.stream.materializer.sync-processing-limit = 1000000"));
        var consumerConfig = new ConsumerConfig { BootstrapServers = _kafka.BootstrapServers, GroupId = "stop-" + _project, AutoOffsetReset = AutoOffsetReset.Earliest };
        var probe = new KafkaSourceProbe();
        var received = new ConcurrentQueue<KafkaMessage>();
        var (killSwitch, done) = KafkaSourceStage.Create(consumerConfig, KafkaTopics.Frames(_project), maxBatch: 10, maxBatchBytes: 1 << 20, probe)
            .ViaMaterialized(KillSwitches.Single<IReadOnlyList<KafkaMessage>>(), Keep.Right)
            .ToMaterialized(Sink.ForEach<IReadOnlyList<KafkaMessage>>(batch => batch.ToList().ForEach(received.Enqueue)), Keep.Both)
            .Run(KafkaSourceStage.Materializer(system));
        await AwaitAsync(() =>
        {
            // Past the one record the source only waits: no records are left.
            Assert.Single(received);
            Assert.Contains(probe.Partitions, p => p.Lag == 0);
            return Task.CompletedTask;
        });

        killSwitch.Shutdown();
        await done.WaitAsync(Patience);
        await AwaitAsync(() =>
        {
            // Cleared by the stage's PostStop, after it closed its consumer.
            Assert.Empty(probe.Partitions);
            return Task.CompletedTask;
        });
        await system.Terminate().WaitAsync(Patience);
    }

    [Fact]
    public async Task A_source_without_demand_through_rebalances_reads_every_partition_it_is_given_once_demand_returns()
    {
        var topic = KafkaTopics.Frames(_project);
        using var producer = new FrameProducer(_kafka.BootstrapServers);
        await producer.ProduceAsync(_project, new byte[10]);
        using var writer = new ProducerBuilder<byte[]?, byte[]>(new ProducerConfig { BootstrapServers = _kafka.BootstrapServers }).Build();
        for (var i = 0; i < 40; i++)
        {
            await writer.ProduceAsync(new TopicPartition(topic, i % 4), new Message<byte[]?, byte[]> { Value = new byte[10] });
        }

        using var system = ActorSystem.Create("source", TspDispatchers.Config(1));
        var group = "idle-" + _project;
        var consumerConfig = new ConsumerConfig { BootstrapServers = _kafka.BootstrapServers, GroupId = group, AutoOffsetReset = AutoOffsetReset.Earliest, SessionTimeoutMs = 6000 };
        var probe = new KafkaSourceProbe();
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var seen = new ConcurrentDictionary<TopicPartitionOffset, byte>();
        var (killSwitch, _) = KafkaSourceStage.Create(consumerConfig, topic, maxBatch: 5, maxBatchBytes: 1 << 20, probe)
            .SelectAsync(1, async batch =>
            {
                // The first batch waits for the gate: the source has no demand meanwhile.
                await gate.Task;
                foreach (var message in batch)
                {
                    seen.TryAdd(message.Record.TopicPartitionOffset, 0);
                }

                KafkaMessage.CommitAll(batch);
                return batch;
            })
            .ViaMaterialized(KillSwitches.Single<IReadOnlyList<KafkaMessage>>(), Keep.Right)
            .ToMaterialized(Sink.Ignore<IReadOnlyList<KafkaMessage>>(), Keep.Both)
            .Run(KafkaSourceStage.Materializer(system));
        try
        {
            await AwaitAsync(() =>
            {
                Assert.Contains(probe.Partitions, p => p.Paused);
                return Task.CompletedTask;
            });
            output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} paused");

            // Read ahead of demand: the batch at the gate, one at the async boundary, one being
            // offered, and a record held per partition (with Akka's default buffer: all 41).
            Assert.InRange(probe.Partitions.Sum(p => Math.Max(0, p.NextOffset)), 1, (3 * 5) + 4);

            // A second member takes half the partitions and leaves again: two rebalances, each of which
            // hands partitions to the source while it has no demand.
            using (var other = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig(consumerConfig) { EnableAutoCommit = false }).Build())
            {
                other.Subscribe(topic);
                var deadline = DateTime.UtcNow + Patience;
                while (other.Assignment.Count == 0 && DateTime.UtcNow < deadline)
                {
                    other.Consume(TimeSpan.FromMilliseconds(100));
                }

                Assert.NotEmpty(other.Assignment);
                output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} the other member holds {other.Assignment.Count} partitions");
                await AwaitAsync(() =>
                {
                    Assert.Equal(4 - other.Assignment.Count, probe.Partitions.Count);
                    return Task.CompletedTask;
                });
                output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} the source holds the rest");
                other.Close();
            }

            await AwaitAsync(() =>
            {
                Assert.Equal(4, probe.Partitions.Count);
                return Task.CompletedTask;
            });
            output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} before demand: " + string.Join(", ", probe.Partitions));
            gate.SetResult();
            var lastReport = DateTime.UtcNow;
            await AwaitAsync(() =>
            {
                if (DateTime.UtcNow - lastReport > TimeSpan.FromSeconds(2))
                {
                    lastReport = DateTime.UtcNow;
                    output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} seen {seen.Count}: " + string.Join(", ", probe.Partitions));
                }

                Assert.Equal(41, seen.Count);
                Assert.All(probe.Partitions, p => Assert.Equal(0, p.Lag));
                return Task.CompletedTask;
            });
        }
        finally
        {
            killSwitch.Shutdown();
            await system.Terminate();
        }
    }

    private static async Task<Dictionary<string, TpResult>> CollectAsync(System.Threading.Channels.ChannelReader<TpResult> results, int count)
    {
        var seen = new Dictionary<string, TpResult>();
        using var timeout = new CancellationTokenSource(Patience);
        while (seen.Count < count)
        {
            var result = await results.ReadAsync(timeout.Token);
            Assert.True(seen.TryAdd(result.RunId, result), $"run {result.RunId} reported twice");
        }

        return seen;
    }

    [Fact]
    public async Task Bad_messages_are_dead_lettered_with_their_reason_while_good_ones_around_them_complete()
    {
        var options = Options(TestServers.TempSqlitePath());
        options.MaxFrameBytes = 1000;
        options.Kafka.DeadLetterTopic = true;
        using var host = await TestServers.StartHostAsync(options);
        var (subscriber, results) = await ResultSubscriptions.SubscribeAsync(host.System(), _project, Patience);
        var store = host.Services.GetRequiredService<RedisStore>();
        using var producer = new FrameProducer(_kafka.BootstrapServers);
        var topic = KafkaTopics.Frames(_project);
        Headers TpFrame() => [new Header(KafkaTopics.ContentTypeHeader, Encoding.UTF8.GetBytes(KafkaTopics.TpFrameContentType))];

        var good = new List<string> { await producer.ProduceAsync(_project, [1, 2, 3], "before") };
        var bad = new Dictionary<string, string>
        {
            [await producer.ProduceRawAsync(topic, [])] = "empty message",
            [await producer.ProduceRawAsync(topic, new byte[1001])] = "message of 1001 bytes exceeds the maximum of 1000 bytes",
            [await producer.ProduceRawAsync(topic, [0xFF, 0xFF, 0xFF], TpFrame())] = "TP frame does not parse",
            [await producer.ProduceRawAsync(topic, new Frame { Project = "elsewhere", Data = ByteString.CopyFrom(1) }.ToByteArray(), TpFrame())] = $"TP frame for project 'elsewhere' on topic {topic}",
            [await producer.ProduceRawAsync(topic, [1], [new Header(KafkaTopics.CapturedAtHeader, Encoding.UTF8.GetBytes("yesterday"))])] = "header captured-at 'yesterday' is neither",
        };
        good.Add(await producer.ProduceRawAsync(topic, new Frame { SourceId = "tp", Data = ByteString.CopyFrom(4, 5) }.ToByteArray(), TpFrame()));
        good.Add(await producer.ProduceAsync(_project, [6], "after"));

        var seen = await CollectAsync(results, good.Count);

        Assert.Equal(good.Order(), seen.Keys.Order());
        Assert.Equal("tp", seen[good[1]].SourceId);
        await AwaitAsync(async () => Assert.Equal(bad.Count, (await store.ReadDeadLettersAsync(_project)).Count));
        var dead = (await store.ReadDeadLettersAsync(_project)).ToDictionary(d => d.Reference.Replace('/', '-'), d => d);
        foreach (var (runId, reason) in bad)
        {
            var letter = dead[runId];
            Assert.Equal("kafka", letter.Origin);
            Assert.StartsWith(reason, letter.Reason, StringComparison.Ordinal);
        }

        var stats = await Stats(host);
        Assert.Equal((good.Count + bad.Count, bad.Count), (stats.Consumed, stats.DeadLettered));
        host.System().Stop(subscriber);

        // The same records, as they came, on the dead-letter topic, with the reason and the source.
        using var consumer = new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig
        {
            BootstrapServers = _kafka.BootstrapServers,
            GroupId = "dlq-reader",
            AutoOffsetReset = AutoOffsetReset.Earliest,
        }).Build();
        consumer.Subscribe(KafkaTopics.DeadLetters(_project));
        var onTopic = new Dictionary<string, string>();
        var until = DateTime.UtcNow + Patience;
        while (onTopic.Count < bad.Count && DateTime.UtcNow < until)
        {
            if (consumer.Consume(TimeSpan.FromSeconds(1)) is { } record)
            {
                var source = Encoding.UTF8.GetString(record.Message.Headers.GetLastBytes(KafkaTopics.DeadSourceHeader));
                onTopic[source.Replace('/', '-')] = Encoding.UTF8.GetString(record.Message.Headers.GetLastBytes(KafkaTopics.DeadReasonHeader));
            }
        }

        Assert.Equal(bad.Keys.Order(), onTopic.Keys.Order());
        Assert.All(bad, b => Assert.StartsWith(b.Value, onTopic[b.Key], StringComparison.Ordinal));
        consumer.Close();
    }

    [Fact]
    public async Task Ingest_restarted_mid_stream_loses_nothing_and_reports_nothing_twice()
    {
        var journal = TestServers.TempSqlitePath();
        using var producer = new FrameProducer(_kafka.BootstrapServers);
        var expected = new List<string>();
        for (var i = 0; i < 120; i++)
        {
            expected.Add(await producer.ProduceAsync(_project, Encoding.UTF8.GetBytes($"frame {i}")));
        }

        var seen = new ConcurrentDictionary<string, int>();
        await using var store = await RedisStore.ConnectAsync(TestServers.Redis);
        using (var first = await TestServers.StartHostAsync(Options(journal, nodeMs: "20", maxInFlight: 16)))
        {
            await AwaitAsync(async () => Assert.True((await Stats(first)).Started >= 30));
            await first.StopAsync();
        }

        using var second = await TestServers.StartHostAsync(Options(journal, nodeMs: "20", maxInFlight: 16));
        await AwaitAsync(async () => Assert.Equal(expected.Count, (await store.ReadResultsAsync(_project, 0, 1000)).Select(r => r.Result.RunId).Distinct().Count()));

        var logged = await store.ReadResultsAsync(_project, 0, 1000);
        Assert.Equal(expected.Order(), logged.Select(r => r.Result.RunId).Distinct().Order());
        var duplicates = logged.GroupBy(r => r.Result.RunId).Where(g => g.Count() > 1).Select(g => g.Key).ToList();
        output.WriteLine($"{logged.Count} results logged for {expected.Count} messages; run ids logged twice: {duplicates.Count}");
        Assert.Empty(duplicates);
    }

    [Fact]
    public async Task A_projects_rate_limit_holds_its_records_in_Kafka_instead_of_starting_them()
    {
        // One frame per 20 s: the bucket holds one, and one more may be taken into debt.
        using var host = await TestServers.StartHostAsync(Options(TestServers.TempSqlitePath(), batchSize: 1, scheduling: "{ rate_limit: 0.05 }"));
        var (subscriber, results) = await ResultSubscriptions.SubscribeAsync(host.System(), _project, Patience);
        using var producer = new FrameProducer(_kafka.BootstrapServers);
        for (var i = 0; i < 5; i++)
        {
            await producer.ProduceAsync(_project, [(byte)i]);
        }

        Assert.Equal(2, (await CollectAsync(results, 2)).Count);
        var stats = await Stats(host);
        Assert.Equal(2, stats.Started);
        // The third record waits for the limit (about 20 s), not for a slot: started stays at 2.
        await HoldsThroughoutAsync(TimeSpan.FromSeconds(3), async () => Assert.Equal(2, (await Stats(host)).Started));
        host.System().Stop(subscriber);
    }

    private static async Task HoldsThroughoutAsync(TimeSpan period, Func<Task> assertion)
    {
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (watch.Elapsed < period)
        {
            await assertion();
            await Task.Delay(250);
        }
    }

    [Fact]
    public async Task Slow_nodes_pause_consumption_and_in_flight_runs_stay_at_their_bound()
    {
        // Each round of 8 runs holds every slot for 1.5 s: no batch completes, so the source has no
        // demand for longer than the second after which it pauses its partitions.
        using var host = await TestServers.StartHostAsync(Options(TestServers.TempSqlitePath(), nodeMs: "1500", maxInFlight: 8, batchSize: 4));
        var (subscriber, results) = await ResultSubscriptions.SubscribeAsync(host.System(), _project, Patience);
        using var producer = new FrameProducer(_kafka.BootstrapServers);
        var expected = new List<string>();
        for (var i = 0; i < 40; i++)
        {
            expected.Add(await producer.ProduceAsync(_project, [(byte)i]));
        }

        var samples = new List<IngestStats>();
        var collecting = CollectAsync(results, expected.Count);
        while (!collecting.IsCompleted)
        {
            samples.Add(await Stats(host));
            await Task.WhenAny(collecting, Task.Delay(50));
        }

        Assert.Equal(expected.Order(), (await collecting).Keys.Order());
        Assert.All(samples, s => Assert.InRange(s.InFlightRuns, 0, 8));
        Assert.Equal(8, samples.Max(s => s.PeakInFlightRuns));
        // While the bound held, consumption lagged production and the partitions were paused.
        Assert.Contains(samples, s => s.Consumed < expected.Count - 16);
        // (Counted, not only sampled: under load a pause can fall between two samples.)
        Assert.True(samples[^1].BackpressurePauses > 0 || samples.Any(s => s.Partitions.Any(p => p.Paused)), "the source never paused its partitions");
        host.System().Stop(subscriber);
    }

    [Fact]
    public async Task Frames_produced_by_kcat_from_another_process_become_runs()
    {
        using var host = await TestServers.StartHostAsync(Options(TestServers.TempSqlitePath()));
        var (subscriber, results) = await ResultSubscriptions.SubscribeAsync(host.System(), _project, Patience);
        var dir = Directory.CreateTempSubdirectory("tsp-kcat");
        for (var i = 0; i < 5; i++)
        {
            await File.WriteAllBytesAsync(Path.Combine(dir.FullName, $"frame{i}.bin"), [(byte)(i + 1), 42]);
        }

        var kcat = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("kcat", ["-b", _kafka.BootstrapServers, "-P", "-t", KafkaTopics.Frames(_project), "-H", "source-id=kcat", .. Directory.GetFiles(dir.FullName)])
        {
            RedirectStandardError = true,
        })!;
        await kcat.WaitForExitAsync();
        Assert.True(kcat.ExitCode == 0, await kcat.StandardError.ReadToEndAsync());

        var seen = await CollectAsync(results, 5);

        Assert.All(seen.Values, r => Assert.Equal(("kcat", RunStatus.Succeeded), (r.SourceId, r.Status)));
        host.System().Stop(subscriber);
    }

    [Fact]
    public async Task The_produce_command_publishes_a_folder_and_skips_empty_files()
    {
        using var host = await TestServers.StartHostAsync(Options(TestServers.TempSqlitePath()));
        var (subscriber, results) = await ResultSubscriptions.SubscribeAsync(host.System(), _project, Patience);
        var dir = Directory.CreateTempSubdirectory("tsp-produce");
        for (var i = 0; i < 4; i++)
        {
            await File.WriteAllBytesAsync(Path.Combine(dir.FullName, $"part{i}.png"), [(byte)i, 1, 2]);
        }

        await File.WriteAllBytesAsync(Path.Combine(dir.FullName, "zero.png"), []);
        var seed = Path.Combine(AppContext.BaseDirectory, "Tsp.Seed.dll");
        var produce = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("dotnet", [seed, "produce", "--bootstrap", _kafka.BootstrapServers, "--project", _project, "--dir", dir.FullName, "--rate", "50"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        var stdout = produce.StandardOutput.ReadToEndAsync();
        var stderr = produce.StandardError.ReadToEndAsync();
        await produce.WaitForExitAsync();
        output.WriteLine(await stdout + await stderr);
        Assert.Equal(0, produce.ExitCode);
        Assert.Contains("produce: 4 frames", await stdout, StringComparison.Ordinal);
        Assert.Contains("skipped empty file", await stderr, StringComparison.Ordinal);

        var seen = await CollectAsync(results, 4);

        Assert.Equal(["part0.png", "part1.png", "part2.png", "part3.png"], seen.Values.Select(r => r.SourceId).Order());
        host.System().Stop(subscriber);
    }

    private static async Task AwaitAsync(Func<Task> assertion)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (true)
        {
            try
            {
                await assertion();
                return;
            }
            catch (Exception) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(100);
            }
        }
    }
}
