using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Google.Protobuf;
using Tsp.Actors.Protocol;

namespace Tsp.Bench;

/// <summary>
/// <c>orchestration</c>: what TSP itself costs per run. The DAG <c>pre → (a ∥ b) → join → post</c>, every
/// node the <c>checksum</c> processor, a frame of <c>--size</c> bytes (64 KiB) written to Redis before each
/// run, each node reading its inputs from Redis and writing its output back, durable runs (SQLite or
/// PostgreSQL journal), <c>--in-flight</c> runs in flight. Figures: runs/s and submit-to-result latency
/// percentiles (median of repeats after uncounted warm-ups), then one run at a time for the single-run p50.
/// </summary>
internal static class OrchestrationScenario
{
    /// <param name="oneNode">Only <c>pre</c>: set against the 5-node DAG, what each further node costs.</param>
    /// <param name="nodeMs">Sleep nodes of this many ms instead of checksum nodes (<c>--node-ms</c>): with
    /// <c>--in-flight</c> equal to <c>--messages</c> a burst that waits in the node queue, whose p50
    /// says how early results come out of it.</param>
    public static async Task<int> RunAsync(BenchOptions options, bool oneNode, double? nodeMs = null)
    {
        var rates = new List<double>();
        var p50s = new List<double>();
        var p99s = new List<double>();
        var singles = new List<double>();
        var cpus = new List<double>();
        var redisCpus = new List<double>();
        var redisPid = CostsScenario.RedisPid(options.Redis);
        // The first repeats are warm-ups, not counted: the JIT tiers up through them, which a
        // long-running orchestrator does not pay. The first warm-up's runs cost about twice the CPU of
        // later ones, and the repeat after it still compiles 2,000–3,000 methods (~2 s of JIT time, on
        // the background compiler); later ones compile fewer than 200 (jit_methods on each line).
        const int warmUps = 2;
        for (var repeat = 1 - warmUps; repeat <= options.Repeats; repeat++)
        {
            var project = $"orch{repeat}-{Guid.NewGuid():N}"[..16];
            await using var host = await BenchHost.StartAsync(options, project, Workflow(project, oneNode, nodeMs), tsp =>
            {
                if (Environment.GetEnvironmentVariable("TSP_BENCH_RUN_HOSTS") is { } hosts)
                {
                    tsp.RunHosts = int.Parse(hosts, CultureInfo.InvariantCulture);
                }

                if (Environment.GetEnvironmentVariable("TSP_BENCH_WRITE_NODE_RESULTS_FROM_MS") is { } from)
                {
                    tsp.RunHost = tsp.RunHost with { WriteNodeResultsFrom = TimeSpan.FromMilliseconds(double.Parse(from, CultureInfo.InvariantCulture)) };
                }

                if (Environment.GetEnvironmentVariable("TSP_BENCH_PUBLISHED_MARK_DELAY_MS") is { } delay)
                {
                    tsp.RunHost = tsp.RunHost with { PublishedMarkDelay = TimeSpan.FromMilliseconds(double.Parse(delay, CultureInfo.InvariantCulture)) };
                }

                // Checksum nodes: a slot for every run in flight, so the queue never holds a task and the
                // figure is TSP's own cost. Sleep nodes: 8 slots, as a model's queue on one worker.
                tsp.Queues["cpu-bench"] = new Actors.Dispatch.QueueOptions { Role = Actors.Hosting.TspRoles.Cpu, RouteesPerMember = 2, SlotsPerRoutee = nodeMs is null ? options.InFlight : 4 };
            });
            var frames = Enumerable.Range(0, 16).Select(_ => RandomFrame(project, options.Size)).ToList();
            // Each repeat's orchestrator is fresh, and its first runs are not measured: for about a
            // second its code still tiers up (120–220 ms of JIT time fell in a window that opened after
            // 2,000 runs, 54–62 ms after 6,000), and the runs in flight then were about half of those
            // above p99, finishing late together in the window's first 300 ms (bench/RESULTS.md).
            // The measured runs follow the warm-up ones in the same stream, so the window opens with
            // the runs already in flight, as in a long-running orchestrator.
            TimeSpan cpu = default, redisCpu = default, pause = default, jitTime = default;
            int gen0 = 0, gen1 = 0, gen2 = 0;
            long jitMethods = 0;
            // Started with the warm-up and cleared when the measured runs begin: a listener's start
            // (the runtime's events enabled, its own code compiled) is not in the measured window.
            using var ticks = Environment.GetEnvironmentVariable("TSP_BENCH_ALLOC") is null ? null : new AllocationTicks();
            var spans = ticks is null ? null : new List<(long, long)>(options.Messages);
            var (rate, latencies) = await RunAsync(host, frames, options.Messages, options.InFlight, spans, warmUp: options.Messages * 3 / 10, measuring: () =>
            {
                (cpu, redisCpu) = (Process.GetCurrentProcess().TotalProcessorTime, CostsScenario.RedisCpu(redisPid));
                (pause, gen0, gen1, gen2) = (GC.GetTotalPauseDuration(), GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2));
                (jitMethods, jitTime) = (System.Runtime.JitInfo.GetCompiledMethodCount(), System.Runtime.JitInfo.GetCompilationTime());
                ticks?.Clear();
            });
            ticks?.Print(options.Messages);
            ticks?.PrintTail(spans!, Percentile(latencies, 0.99));
            var gc = string.Create(CultureInfo.InvariantCulture, $"gc_pause_ms={(GC.GetTotalPauseDuration() - pause).TotalMilliseconds:0} gcs={GC.CollectionCount(0) - gen0}/{GC.CollectionCount(1) - gen1}/{GC.CollectionCount(2) - gen2} jit_methods={System.Runtime.JitInfo.GetCompiledMethodCount() - jitMethods} jit_ms={(System.Runtime.JitInfo.GetCompilationTime() - jitTime).TotalMilliseconds:0}");
            cpus.Add((Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalMicroseconds / options.Messages);
            redisCpus.Add((CostsScenario.RedisCpu(redisPid) - redisCpu).TotalMicroseconds / options.Messages);
            var (_, single) = await RunAsync(host, frames, 200, 1);
            if (repeat <= 0)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  warm-up: runs_per_s={rate:0} cpu_us_per_run={cpus[^1]:0}+{redisCpus[^1]:0} {gc}"));
                cpus.Clear();
                redisCpus.Clear();
                continue;
            }

            rates.Add(rate);
            p50s.Add(Percentile(latencies, 0.50));
            p99s.Add(Percentile(latencies, 0.99));
            singles.Add(Percentile(single, 0.50));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  repeat {repeat}: runs_per_s={rate:0} p50_ms={p50s[^1]:0.0} p99_ms={p99s[^1]:0.0} p999_ms={Percentile(latencies, 0.999):0.0} single_p50_ms={singles[^1]:0.00} cpu_us_per_run={cpus[^1]:0}+{redisCpus[^1]:0} {gc}"));
        }

        var figures = string.Create(CultureInfo.InvariantCulture,
            $"runs_per_s={Median(rates):0} p50_ms={Median(p50s):0.0} p99_ms={Median(p99s):0.0} single_p50_ms={Median(singles):0.00} cpu_us_per_run={Median(cpus):0}+{Median(redisCpus):0} journal={options.Journal}");
        Console.WriteLine($"orchestration: {figures}");
        Results.Record(options, $"bench/run.sh orchestration --messages {options.Messages} --in-flight {options.InFlight} --journal {options.Journal}{(oneNode ? " --one-node" : "")}{(nodeMs is { } recordedMs ? string.Create(CultureInfo.InvariantCulture, $" --node-ms {recordedMs}") : "")}", figures,
            $"median of {options.Repeats} after {warmUps} warm-up repeats, each measured after its first 30 % of runs; {(oneNode ? "1" : "5-node DAG of")} {(nodeMs is null ? "checksum" : "sleep")} node{(oneNode ? "" : "s")}, {options.Size} B frames, redis-server");
        return 0;
    }

    /// <param name="nodeMs">Null: checksum nodes; otherwise sleep nodes of that many ms, so that the
    /// queue's slots, not the CPU, bound the runs.</param>
    private static string Workflow(string project, bool oneNode, double? nodeMs)
    {
        var processor = nodeMs is { } ms ? string.Create(CultureInfo.InvariantCulture, $"sleep, params: {{ ms: {ms} }}") : "checksum";
        string[] nodes =
        [
            "id: pre",
            "id: model_a, after: [pre]",
            "id: model_b, after: [pre]",
            "id: join, after: [model_a, model_b]",
            "id: post, after: [join]",
        ];
        var lines = nodes.Take(oneNode ? 1 : nodes.Length).Select(node => $"  - {{ {node}, processor: {processor}, role: cpu, queue: cpu-bench }}\n");
        return $"project: {project}\nnodes:\n{string.Concat(lines)}";
    }

    internal static Frame RandomFrame(string project, int size)
    {
        var data = new byte[size];
        Random.Shared.NextBytes(data);
        return new Frame { Project = project, Data = ByteString.CopyFrom(data) };
    }

    /// <summary>Submits <paramref name="count"/> runs keeping <paramref name="inFlight"/> in flight; returns
    /// runs/s and each run's submit-to-result latency in ms.</summary>
    /// <remarks>The bench keeps nothing per run beyond its latency: a run's submit time is dropped when its
    /// result arrives and no submission task is held, so the bench's own bookkeeping does not survive
    /// young-generation collections and inflate the orchestrator's GC pauses.</remarks>
    /// <param name="spans">Where given, each run's submit and result times (Stopwatch ticks) are added to it.</param>
    /// <param name="warmUp">Runs submitted first, in the same stream, and not measured: the clock,
    /// the latencies and <paramref name="measuring"/> start with the run after them.</param>
    /// <param name="measuring">Called as the first measured run is submitted.</param>
    internal static async Task<(double Rate, List<double> LatenciesMs)> RunAsync(BenchHost host, List<Frame> frames, int count, int inFlight, List<(long Submitted, long Done)>? spans = null, int warmUp = 0, Action? measuring = null)
    {
        var submittedAt = new ConcurrentDictionary<string, long>();
        // Stopwatch ticks when the first measured run was submitted; results from then on count for the rate.
        var measuredFrom = long.MaxValue;
        var resultsMeasured = 0;
        var latencies = new List<double>(count);
        using var slots = new SemaphoreSlim(inFlight);
        // Not disposed: a submission that fails after the repeat has ended may still cancel it.
        var failed = new CancellationTokenSource();
        Exception? failure = null;
        void Fail(Exception e)
        {
            failure ??= e;
            failed.Cancel();
        }

        var consumer = Task.Run(async () =>
        {
            for (var received = 0; received < warmUp + count; received++)
            {
                var result = await host.Results.ReadAsync(failed.Token);
                var now = Stopwatch.GetTimestamp();
                if (result.Status != RunStatus.Succeeded)
                {
                    Fail(new InvalidOperationException($"run {result.RunId} failed: {result.Error}"));
                    return;
                }

                // The result can overtake the submission's own bookkeeping by a hair; spin until it is there.
                long at;
                while (!submittedAt.TryRemove(result.RunId, out at))
                {
                    Thread.SpinWait(10);
                }

                var from = Volatile.Read(ref measuredFrom);
                if (now >= from)
                {
                    resultsMeasured++;
                }

                if (at >= from)
                {
                    latencies.Add(Stopwatch.GetElapsedTime(at, now).TotalMilliseconds);
                    spans?.Add((at, now));
                }

                slots.Release();
            }
        });
        try
        {
            for (var i = 0; i < warmUp + count; i++)
            {
                await slots.WaitAsync(failed.Token);
                if (i == warmUp)
                {
                    measuring?.Invoke();
                    Volatile.Write(ref measuredFrom, Stopwatch.GetTimestamp());
                }

                var runId = Guid.CreateVersion7().ToString("N");
                submittedAt[runId] = Stopwatch.GetTimestamp();
                _ = Submit(host, frames[i % frames.Count], runId).ContinueWith(
                    t => Fail(t.Exception!.GetBaseException()),
                    CancellationToken.None,
                    TaskContinuationOptions.OnlyOnFaulted,
                    TaskScheduler.Default);
            }

            await consumer;
        }
        catch (OperationCanceledException) when (failure is not null)
        {
        }

        if (failure is not null)
        {
            throw failure;
        }

        // What completed while the clock ran: the measured runs and the last warm-up runs in flight.
        return (resultsMeasured / Stopwatch.GetElapsedTime(measuredFrom).TotalSeconds, latencies);
    }

    private static async Task Submit(BenchHost host, Frame frame, string runId)
    {
        var accepted = await host.Submitter.SubmitAsync(frame, runId);
        if (accepted.Outcome != StartOutcome.Accepted)
        {
            throw new InvalidOperationException($"run {runId} not accepted: {accepted.Outcome} {accepted.Error}");
        }
    }

    internal static double Percentile(List<double> values, double p)
    {
        var sorted = values.Order().ToList();
        return sorted[Math.Min(sorted.Count - 1, (int)(p * sorted.Count))];
    }

    internal static double Median(List<double> values) => Percentile(values, 0.5);
}
