using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Threading.Channels;
using Google.Protobuf;
using Microsoft.Extensions.DependencyInjection;
using Tsp.Actors.Northbound;
using Tsp.Actors.Protocol;

namespace Tsp.Bench;

/// <summary>
/// <c>fairness</c>: projects sharing one queue (one routee of 4 slots, a 10 ms sleep node). First a
/// live project B sends a frame every 50 ms alone, then again while project A keeps 1,024 runs in
/// flight (a backlog of 2.5 s of work in the queue): B's p99 latency flooded over alone. Then projects
/// of weights 3 and 1 both keep 512 runs in flight for 10 s: their completed runs' ratio.
/// </summary>
internal static class FairnessScenario
{
    private const int LiveFrames = 100;
    private static readonly TimeSpan LiveEvery = TimeSpan.FromMilliseconds(50);

    public static async Task<int> RunAsync(BenchOptions options)
    {
        var id = Guid.NewGuid().ToString("N")[..8];
        var (flood, live, heavy, light) = ($"fa{id}", $"fb{id}", $"fh{id}", $"fl{id}");
        var files = new[] { (live, 1), (heavy, 3), (light, 1) }.Select(p =>
        {
            var file = Path.Combine(Path.GetTempPath(), $"{p.Item1}.yaml");
            File.WriteAllText(file, Workflow(p.Item1, p.Item2));
            return file;
        }).ToList();
        try
        {
            await using var host = await BenchHost.StartAsync(options, flood, Workflow(flood, 1), tsp =>
            {
                tsp.Workflows.AddRange(files);
                tsp.Queues["cpu-fair"] = new Actors.Dispatch.QueueOptions { Role = Actors.Hosting.TspRoles.Cpu, RouteesPerMember = 1, SlotsPerRoutee = 4 };
            });
            var system = host.Services.GetRequiredService<Akka.Actor.ActorSystem>();
            var results = new Dictionary<string, ChannelReader<TpResult>> { [flood] = host.Results };
            foreach (var project in new[] { live, heavy, light })
            {
                results[project] = (await ResultSubscriptions.SubscribeAsync(system, project, TimeSpan.FromSeconds(30))).Results;
            }

            // Warm-up (JIT, the journal, the routee), not measured.
            await LiveAsync(host, live, results[live]);
            var alone = await LiveAsync(host, live, results[live]);
            using var stopFlood = new CancellationTokenSource();
            var flooding = SaturateAsync(host, flood, results[flood], 1024, stopFlood.Token);
            // Let the backlog build before B starts.
            await Task.Delay(TimeSpan.FromSeconds(2));
            var flooded = await LiveAsync(host, live, results[live]);
            await stopFlood.CancelAsync();
            await flooding;

            using var stopWeighted = new CancellationTokenSource();
            var counting = new ConcurrentDictionary<string, long>();
            var heavyRuns = SaturateAsync(host, heavy, results[heavy], 512, stopWeighted.Token, counting);
            var lightRuns = SaturateAsync(host, light, results[light], 512, stopWeighted.Token, counting);
            await Task.Delay(TimeSpan.FromSeconds(3));
            var (heavyAt, lightAt) = (counting.GetValueOrDefault(heavy), counting.GetValueOrDefault(light));
            await Task.Delay(TimeSpan.FromSeconds(10));
            var weighted = (double)(counting.GetValueOrDefault(heavy) - heavyAt) / Math.Max(1, counting.GetValueOrDefault(light) - lightAt);
            await stopWeighted.CancelAsync();
            await Task.WhenAll(heavyRuns, lightRuns);

            var (aloneP99, floodedP99) = (OrchestrationScenario.Percentile(alone, 0.99), OrchestrationScenario.Percentile(flooded, 0.99));
            var figures = string.Create(CultureInfo.InvariantCulture,
                $"b_p99_alone_ms={aloneP99:0.0} b_p99_flooded_ms={floodedP99:0.0} flood_ratio={floodedP99 / aloneP99:0.00} weighted_ratio={weighted:0.00}");
            Console.WriteLine($"fairness: {figures}");
            Results.Record(options, "bench/run.sh fairness", figures,
                $"one queue of 4 slots (sleep 10 ms); B: {LiveFrames} frames every {LiveEvery.TotalMilliseconds:0} ms, alone then beside A's 1,024 runs in flight; weights 3:1 with 512 in flight each, completions over 10 s after 3 s");
            return 0;
        }
        finally
        {
            files.ForEach(File.Delete);
        }
    }

    private static string Workflow(string project, int weight) => $$"""
        project: {{project}}
        scheduling: { weight: {{weight}} }
        nodes:
          - { id: work, processor: sleep, role: cpu, queue: cpu-fair, params: { ms: 10 } }
        """;

    private static Frame FrameOf(string project) => new() { Project = project, Data = ByteString.CopyFrom(new byte[1024]) };

    /// <summary>One frame every <see cref="LiveEvery"/>; each run's submit-to-result latency in ms.</summary>
    private static async Task<List<double>> LiveAsync(BenchHost host, string project, ChannelReader<TpResult> results)
    {
        var submitted = new ConcurrentDictionary<string, long>();
        var latencies = new List<double>();
        var reading = Task.Run(async () =>
        {
            while (latencies.Count < LiveFrames)
            {
                var result = await results.ReadAsync();
                var now = Stopwatch.GetTimestamp();
                long at;
                while (!submitted.TryGetValue(result.RunId, out at))
                {
                    Thread.SpinWait(10);
                }

                latencies.Add(Stopwatch.GetElapsedTime(at, now).TotalMilliseconds);
            }
        });
        using var ticks = new PeriodicTimer(LiveEvery);
        for (var i = 0; i < LiveFrames; i++)
        {
            var runId = Guid.CreateVersion7().ToString("N");
            submitted[runId] = Stopwatch.GetTimestamp();
            await host.Submitter.SubmitAsync(FrameOf(project), runId);
            await ticks.WaitForNextTickAsync();
        }

        await reading;
        return latencies;
    }

    /// <summary>Keeps <paramref name="inFlight"/> runs of the project in flight until stopped, then
    /// waits for those in flight; counts completions in <paramref name="completed"/>.</summary>
    private static async Task SaturateAsync(BenchHost host, string project, ChannelReader<TpResult> results, int inFlight, CancellationToken stop, ConcurrentDictionary<string, long>? completed = null)
    {
        using var slots = new SemaphoreSlim(inFlight);
        var outstanding = 0;
        var reading = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested || Volatile.Read(ref outstanding) > 0)
            {
                if (!await results.WaitToReadAsync())
                {
                    return;
                }

                while (results.TryRead(out _))
                {
                    Interlocked.Decrement(ref outstanding);
                    completed?.AddOrUpdate(project, 1, (_, n) => n + 1);
                    slots.Release();
                }
            }
        });
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await slots.WaitAsync(stop);
            }
            catch (OperationCanceledException)
            {
                break;
            }

            Interlocked.Increment(ref outstanding);
            _ = host.Submitter.SubmitAsync(FrameOf(project), Guid.CreateVersion7().ToString("N"));
        }

        await reading;
    }
}
