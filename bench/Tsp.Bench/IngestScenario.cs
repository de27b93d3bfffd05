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
/// Both clocks start when the group assigns the consumer its partitions, before its first fetch, so
/// neither path's prefetch is free; TSP's project is deployed on a running orchestrator whose run
/// hosts are up, as on a long-running cluster. No pass starts with a forced collection: one gives back
/// the young generation's memory, and TSP's burst then faults it in again (3× the page faults, a
/// third fewer records/s), which a long-running process does not pay. With the runs executing, TSP runs twice: with no limit
/// on runs in flight, and with the default <c>Kafka:MaxInFlightRuns</c>.
/// </summary>
internal static class IngestScenario
{
    public static async Task<int> RunAsync(BenchOptions options)
    {
        var bare = new List<double>();
        var tsp = new List<double>();
        var tspDefaultLimit = new List<double>();
        // The first repeats are warm-ups and not counted: both paths run on the JIT's first-tier code at
        // first, and tiering goes on for about three repeats (TSP's pass in the third still compiled
        // ~30 methods in ~130 ms of JIT time, the fourth ~10 in under 15 ms: the TSP line says).
        // A long-running orchestrator does not pay that.
        const int warmUps = 3;
        for (var repeat = 1 - warmUps; repeat <= options.Repeats; repeat++)
        {
            using var kafka = EmbeddedKafka.Start();
            var project = $"bench{repeat}-{Guid.NewGuid():N}"[..16];
            await ProduceAsync(kafka.BootstrapServers, project, options);
            // The bare loop reads the whole topic in tens of milliseconds, so a single pass is noisy
            // on a shared VM: its figure is the median of three passes (each its own group).
            var bareRate = Median([.. Enumerable.Range(0, 3).Select(pass => BareLoop(kafka.BootstrapServers, project, options.Messages, pass))]);
            var tspRate = await TspIngestAsync(kafka.BootstrapServers, project, options, options.Messages + 1);
            // Accepted runs that never run would hold the default limit's slots forever.
            var defaultLimitRate = options.AcceptOnly ? 0 : await DefaultLimitAsync(options, repeat);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {(repeat <= 0 ? "warm-up" : $"repeat {repeat}")}: bare={bareRate:0} tsp={tspRate:0}{(options.AcceptOnly ? "" : $" tsp_default_limit={defaultLimitRate:0}")} records/s"));
            if (repeat > 0)
            {
                bare.Add(bareRate);
                tsp.Add(tspRate);
                tspDefaultLimit.Add(defaultLimitRate);
            }
        }

        var (bareMedian, tspMedian) = (Median(bare), Median(tsp));
        var defaultLimit = options.AcceptOnly
            ? string.Empty
            : string.Create(CultureInfo.InvariantCulture, $" tsp_default_limit_per_s={Median(tspDefaultLimit):0} default_limit_ratio={Median(tspDefaultLimit) / bareMedian:0.000} max_in_flight_runs={new KafkaOptions().MaxInFlightRuns}");
        var figures = string.Create(CultureInfo.InvariantCulture, $"bare_per_s={bareMedian:0} tsp_per_s={tspMedian:0} ratio={tspMedian / bareMedian:0.000}{defaultLimit}");
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
        // Timed from the assignment, before the first fetch: the group join (seconds on the mock broker)
        // is not counted, the prefetch is.
        Stopwatch? clock = null;
        using var consumer = new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig
        {
            BootstrapServers = bootstrap,
            GroupId = $"bare-{pass}-{project}",
            AutoOffsetReset = AutoOffsetReset.Earliest,
            EnableAutoOffsetStore = false,
            // As TSP's ingest prefetches.
            QueuedMaxMessagesKbytes = 16 * 1024,
        }).SetPartitionsAssignedHandler((_, _) => clock ??= Stopwatch.StartNew()).Build();
        consumer.Subscribe(KafkaTopics.Frames(project));
        var first = consumer.Consume(TimeSpan.FromSeconds(30)) ?? throw new InvalidOperationException("no record within 30 s");
        consumer.StoreOffset(first);
        for (var count = 1; count < messages;)
        {
            var record = consumer.Consume(TimeSpan.FromSeconds(10))
                ?? throw new InvalidOperationException($"the bare loop read {count} of {messages} records and then nothing for 10 s: the embedded broker keeps only a few MB per partition, so produce fewer or smaller records");
            consumer.StoreOffset(record);
            count++;
        }

        var rate = messages / clock!.Elapsed.TotalSeconds;
        consumer.Close();
        return rate;
    }

    /// <summary>TSP as configured by default, on a topic and project of its own (the same records).</summary>
    private static async Task<double> DefaultLimitAsync(BenchOptions options, int repeat)
    {
        using var kafka = EmbeddedKafka.Start();
        var project = $"limit{repeat}-{Guid.NewGuid():N}"[..16];
        await ProduceAsync(kafka.BootstrapServers, project, options);
        return await TspIngestAsync(kafka.BootstrapServers, project, options, new KafkaOptions().MaxInFlightRuns);
    }

    private static async Task<double> TspIngestAsync(string bootstrap, string project, BenchOptions options, int maxInFlightRuns)
    {
        var yaml = $"project: {project}\nnodes:\n  - {{ id: n, processor: passthrough, role: cpu, queue: cpu-bench }}\n";
        var journal = Path.Combine(Path.GetTempPath(), $"{project}.db");
        var tsp = new TspOptions
        {
            Redis = options.Redis,
            SqlitePath = journal,
            // --accept-only: no node role here, so accepted runs wait in their queue and the figure is
            // the ingest path alone; otherwise the runs also execute in this process meanwhile.
            Roles = options.AcceptOnly ? [TspRoles.Orchestrator] : [.. TspRoles.All],
            Kafka = new KafkaOptions { Bootstrap = bootstrap, MaxInFlightRuns = maxInFlightRuns },
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
        var control = host.Services.GetRequiredService<Tsp.Actors.Control.RunControl>();
        await control.DeployAsync(control.Validate(yaml, $"{project}.yaml"), yaml, "bench");
        IActorRef? ingest;
        while (!host.Services.GetRequiredService<KafkaIngests>().ByProject.TryGetValue(project, out ingest))
        {
            await Task.Delay(1);
        }
        async Task<long> Started() => (await ingest.Ask<IngestStats>(GetIngestStats.Instance, TimeSpan.FromSeconds(10))).Started;
        // Exact once every record is accepted (no slot is then held by a run not yet started).
        async Task<long> Finished()
        {
            var stats = await ingest.Ask<IngestStats>(GetIngestStats.Instance, TimeSpan.FromSeconds(10));
            return stats.Started - stats.InFlightRuns;
        }

        while ((await ingest.Ask<IngestStats>(GetIngestStats.Instance, TimeSpan.FromSeconds(10))).Assignments == 0)
        {
            await Task.Delay(1);
        }

        using var ticks = Environment.GetEnvironmentVariable("TSP_BENCH_ALLOC") is null ? null : new AllocationTicks();
        var windowStart = Stopwatch.GetTimestamp();
        var (allocatedBefore, pausedBefore) = (GC.GetTotalAllocatedBytes(), GC.GetTotalPauseDuration());
        var collectionsBefore = Enumerable.Range(0, 3).Select(GC.CollectionCount).ToArray();
        var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
        var faultsBefore = MinorFaults();
        var (jitMethods, jitTime) = (System.Runtime.JitInfo.GetCompiledMethodCount(), System.Runtime.JitInfo.GetCompilationTime());
        long started;
        while ((started = await Started()) < options.Messages)
        {
            await Task.Delay(1);
        }

        var windowEnd = Stopwatch.GetTimestamp();
        var rate = started / Stopwatch.GetElapsedTime(windowStart, windowEnd).TotalSeconds;
        ticks?.Print((int)started);
        var finished = await Finished();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"    tsp: {finished} runs finished by the end, {(GC.GetTotalAllocatedBytes() - allocatedBefore) / (double)started:0} B allocated per record, GC paused {(GC.GetTotalPauseDuration() - pausedBefore).TotalMilliseconds:0} of {Stopwatch.GetElapsedTime(windowStart).TotalMilliseconds:0} ms, collections gen0/1/2 {string.Join('/', Enumerable.Range(0, 3).Select(g => GC.CollectionCount(g) - collectionsBefore[g]))}, {(Process.GetCurrentProcess().TotalProcessorTime - cpuBefore) / Stopwatch.GetElapsedTime(windowStart):0.00} cores busy, {MinorFaults() - faultsBefore} page faults, {System.Runtime.JitInfo.GetCompiledMethodCount() - jitMethods} methods compiled in {(System.Runtime.JitInfo.GetCompilationTime() - jitTime).TotalMilliseconds:0} ms of JIT time, window {MonotonicSeconds(windowStart):0.000000},{MonotonicSeconds(windowEnd):0.000000} (CLOCK_MONOTONIC s, for perf record -k CLOCK_MONOTONIC … report --time)"));
        await host.StopAsync();
        await BenchRedis.DeleteProjectAsync(options.Redis, project);
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

    private static double MonotonicSeconds(long timestamp) => timestamp / (double)Stopwatch.Frequency;

    /// <summary>The process's minor page faults so far (first touches of memory), from /proc.</summary>
    private static long MinorFaults()
    {
        var stat = File.ReadAllText("/proc/self/stat");
        return long.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[7], CultureInfo.InvariantCulture);
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted[sorted.Count / 2];
    }
}
