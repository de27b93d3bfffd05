using Tsp.ServiceDefaults.Embedded;
using System.Diagnostics;
using System.Globalization;
using Akka.Actor;
using Akka.Hosting;
using Confluent.Kafka;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Tsp.Actors.Hosting;
using Tsp.Actors.Ingest;
using Tsp.Actors.Workflows;

namespace Tsp.Bench;

/// <summary>
/// <c>ingest</c>: the same N records are read by a bare Confluent consumer loop (consume and store
/// offsets, nothing else; median of three passes) and by TSP's ingest into accepted — durably persisted — runs, on the same
/// embedded broker, in the same run. Figure: records/s for both and their ratio (median of repeats).
/// </summary>
internal static class IngestScenario
{
    public static async Task<int> RunAsync(BenchOptions options)
    {
        var bare = new List<double>();
        var tsp = new List<double>();
        // The first repeats are warm-ups and not counted: both paths run on the JIT's first-tier code at
        // first, and tiering goes on for about two repeats (a trace counted ≈ 900 methods compiled
        // inside the second repeat's window). A long-running orchestrator does not pay that.
        const int warmUps = 2;
        for (var repeat = 1 - warmUps; repeat <= options.Repeats; repeat++)
        {
            using var kafka = EmbeddedKafka.Start();
            var project = $"bench{repeat}-{Guid.NewGuid():N}"[..16];
            await ProduceAsync(kafka.BootstrapServers, project, options);
            // The bare loop reads the whole topic in tens of milliseconds, so a single pass is noisy
            // on a shared VM: its figure is the median of three passes (each its own group).
            var bareRate = Median([.. Enumerable.Range(0, 3).Select(pass => BareLoop(kafka.BootstrapServers, project, options.Messages, pass))]);
            var tspRate = await TspIngestAsync(kafka.BootstrapServers, project, options);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {(repeat <= 0 ? "warm-up" : $"repeat {repeat}")}: bare={bareRate:0} tsp={tspRate:0} records/s"));
            if (repeat > 0)
            {
                bare.Add(bareRate);
                tsp.Add(tspRate);
            }
        }

        var (bareMedian, tspMedian) = (Median(bare), Median(tsp));
        var figures = string.Create(CultureInfo.InvariantCulture, $"bare_per_s={bareMedian:0} tsp_per_s={tspMedian:0} ratio={tspMedian / bareMedian:0.000}");
        Console.WriteLine($"ingest: {figures} messages={options.Messages} size={options.Size}{(options.AcceptOnly ? " accept-only" : string.Empty)}");
        var acceptOnly = options.AcceptOnly ? " --accept-only" : string.Empty;
        var execution = options.AcceptOnly ? "runs accepted and left waiting (no node role in the process)" : "runs also executing in the same process";
        Results.Record(options, $"bench/run.sh ingest --messages {options.Messages} --size {options.Size}{acceptOnly}", figures, $"median of {options.Repeats} after {warmUps} warm-ups; bare: median of 3 passes each; {execution}; SQLite journal, redis-server, mock broker");
        return 0;
    }

    private static async Task ProduceAsync(string bootstrap, string project, BenchOptions options)
    {
        using var producer = new FrameProducer(bootstrap);
        var data = new byte[options.Size];
        Random.Shared.NextBytes(data);
        var sends = new List<Task>();
        for (var i = 0; i < options.Messages; i++)
        {
            sends.Add(producer.ProduceAsync(project, data));
            if (sends.Count == 1000)
            {
                await Task.WhenAll(sends);
                sends.Clear();
            }
        }

        await Task.WhenAll(sends);
    }

    private static double BareLoop(string bootstrap, string project, int messages, int pass)
    {
        using var consumer = new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig
        {
            BootstrapServers = bootstrap,
            GroupId = $"bare-{pass}-{project}",
            AutoOffsetReset = AutoOffsetReset.Earliest,
            EnableAutoOffsetStore = false,
        }).Build();
        consumer.Subscribe(KafkaTopics.Frames(project));
        // Timed from the first record, so the group join (seconds on the mock broker) is not counted.
        var first = consumer.Consume(TimeSpan.FromSeconds(30)) ?? throw new InvalidOperationException("no record within 30 s");
        consumer.StoreOffset(first);
        var clock = Stopwatch.StartNew();
        for (var count = 1; count < messages;)
        {
            var record = consumer.Consume(TimeSpan.FromSeconds(10))
                ?? throw new InvalidOperationException($"the bare loop read {count} of {messages} records and then nothing for 10 s: the embedded broker keeps only a few MB per partition, so produce fewer or smaller records");
            consumer.StoreOffset(record);
            count++;
        }

        var rate = (messages - 1) / clock.Elapsed.TotalSeconds;
        consumer.Close();
        return rate;
    }

    private static async Task<double> TspIngestAsync(string bootstrap, string project, BenchOptions options)
    {
        var workflow = Path.Combine(Path.GetTempPath(), $"{project}.yaml");
        await File.WriteAllTextAsync(workflow, $"project: {project}\nnodes:\n  - {{ id: n, processor: passthrough, role: cpu, queue: cpu-bench }}\n");
        var journal = Path.Combine(Path.GetTempPath(), $"{project}.db");
        var tsp = new TspOptions
        {
            Redis = options.Redis,
            SqlitePath = journal,
            Workflows = [workflow],
            // --accept-only: no node role here, so accepted runs wait in their queue and the figure is
            // the ingest path alone; otherwise the runs also execute in this process meanwhile.
            Roles = options.AcceptOnly ? [TspRoles.Orchestrator] : [.. TspRoles.All],
            Kafka = new KafkaOptions { Bootstrap = bootstrap, MaxInFlightRuns = options.Messages + 1 },
        };
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Services.AddTspServices(tsp);
        builder.Services.AddAkka(TspHostingExtensions.SystemName, (akka, _) =>
        {
            akka.ConfigureLoggers(l => l.LogLevel = Akka.Event.LogLevel.WarningLevel);
            akka.AddTsp(tsp);
        });
        using var host = builder.Build();
        await host.StartAsync();
        await StartRunHostsAsync(host.Services.GetRequiredService<RunSubmitter>(), tsp.RunHosts);
        var ingest = host.Services.GetRequiredService<KafkaIngests>().ByProject[project];
        async Task<long> Started() => (await ingest.Ask<IngestStats>(GetIngestStats.Instance, TimeSpan.FromSeconds(10))).Started;
        // Exact once every record is accepted (no slot is then held by a run not yet started).
        async Task<long> Finished()
        {
            var stats = await ingest.Ask<IngestStats>(GetIngestStats.Instance, TimeSpan.FromSeconds(10));
            return stats.Started - stats.InFlightRuns;
        }

        while (await Started() == 0)
        {
            await Task.Delay(5);
        }

        var clock = Stopwatch.StartNew();
        var (allocatedBefore, pausedBefore) = (GC.GetTotalAllocatedBytes(), GC.GetTotalPauseDuration());
        var collectionsBefore = Enumerable.Range(0, 3).Select(GC.CollectionCount).ToArray();
        var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
        var from = await Started();
        long started;
        while ((started = await Started()) < options.Messages)
        {
            await Task.Delay(5);
        }

        var rate = (started - from) / clock.Elapsed.TotalSeconds;
        var finished = await Finished();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"    tsp: {finished} runs finished by the end, {(GC.GetTotalAllocatedBytes() - allocatedBefore) / (double)(started - from):0} B allocated per record, GC paused {(GC.GetTotalPauseDuration() - pausedBefore).TotalMilliseconds:0} of {clock.Elapsed.TotalMilliseconds:0} ms, collections gen0/1/2 {string.Join('/', Enumerable.Range(0, 3).Select(g => GC.CollectionCount(g) - collectionsBefore[g]))}, {(Process.GetCurrentProcess().TotalProcessorTime - cpuBefore) / clock.Elapsed:0.00} cores busy"));
        await host.StopAsync();
        File.Delete(workflow);
        return rate;
    }

    /// <summary>Starts every run host before the measured window (while ingest still joins its
    /// group): a long-running orchestrator has its hosts up, and starting one (shard allocation,
    /// journal recovery) is not part of accepting records.</summary>
    private static async Task StartRunHostsAsync(RunSubmitter submitter, int hosts)
    {
        var probes = new Dictionary<string, string>();
        for (var i = 0; probes.Count < hosts; i++)
        {
            var runId = $"warm-{i}";
            probes.TryAdd(RunMessageExtractor.HostOf(runId, hosts), runId);
        }

        await Task.WhenAll(probes.Values.Select(runId => submitter.IsKnownAsync(runId)));
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted[sorted.Count / 2];
    }
}
