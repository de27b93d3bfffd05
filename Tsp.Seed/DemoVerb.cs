using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Akka.Actor;
using Akka.Hosting;
using Google.Protobuf;
using Microsoft.Extensions.DependencyInjection;
using Tsp.Actors.Dispatch;
using Tsp.Actors.Hosting;
using Tsp.Actors.Ingest;
using Tsp.Actors.Northbound;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Actors.Workflows;

namespace Tsp.Seed;

/// <summary>
/// <c>demo</c>: standalone on embedded defaults, a throwaway journal, N generated frames through the
/// sample workflow, progress while it runs, and one summary line at the end.
/// </summary>
internal static class DemoVerb
{
    public static async Task<int> RunAsync(TspCommandLine cli)
    {
        var frames = cli.IntOption("frames", 200);
        var concurrency = cli.IntOption("concurrency", 64);
        var size = cli.IntOption("size", 64 * 1024);
        var options = SeedHost.ReadOptions(cli.Configuration);
        var scratch = Path.Combine(Path.GetTempPath(), $"tsp-demo-{Environment.ProcessId}");
        options.SqlitePath = Path.Combine(scratch, "journal.db");
        using var embedded = ServeVerb.ApplyStandaloneDefaults(options);
        try
        {
            var summary = await RunDemoAsync(options, frames, concurrency, size, Console.Out);
            Console.WriteLine(summary.Line);
            return summary.Results == frames && summary.Failed == 0 ? 0 : 1;
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    public sealed record Summary(int Frames, int Results, int Failed, int Dead, double RunsPerSecond, double P99Ms)
    {
        public string Line => string.Create(CultureInfo.InvariantCulture, $"demo: frames={Frames} results={Results} failed={Failed} dead={Dead} runs_per_s={RunsPerSecond:0.0} p99_ms={P99Ms:0.0}");
    }

    public static async Task<Summary> RunDemoAsync(TspOptions options, int frames, int concurrency, int size, TextWriter output)
    {
        using var host = SeedHost.Build(options, quiet: true);
        await host.StartAsync();
        try
        {
            var system = host.Services.GetRequiredService<ActorSystem>();
            var submitter = host.Services.GetRequiredService<RunSubmitter>();
            var store = host.Services.GetRequiredService<RedisStore>();
            var project = host.Services.GetRequiredService<WorkflowCatalog>().Projects.First();
            output.WriteLine($"demo: project '{project}', {frames} frames of {size} bytes, {concurrency} in flight; redis {options.Redis}, journal {options.SqlitePath}");
            var (subscriber, results) = await ResultSubscriptions.SubscribeAsync(system, project, TimeSpan.FromSeconds(30));
            await host.Services.GetRequiredService<NodeQueues>().WaitForRouteesAsync(TimeSpan.FromSeconds(30));

            var submittedAt = new ConcurrentDictionary<string, long>(StringComparer.Ordinal);
            var latencies = new List<double>(frames);
            var failed = 0;
            var received = 0;
            var gate = new SemaphoreSlim(concurrency);
            var clock = Stopwatch.StartNew();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            TpResult? example = null;

            var consumer = Task.Run(async () =>
            {
                var lastReport = clock.Elapsed;
                await foreach (var result in results.ReadAllAsync())
                {
                    if (!seen.Add(result.RunId) || !submittedAt.TryGetValue(result.RunId, out var start))
                    {
                        continue;
                    }

                    latencies.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                    received++;
                    example = result.Status == RunStatus.Succeeded ? result : example;
                    if (result.Status != RunStatus.Succeeded)
                    {
                        failed++;
                        output.WriteLine($"  run {result.RunId} failed: {result.Error}");
                    }

                    gate.Release();
                    if (clock.Elapsed - lastReport > TimeSpan.FromSeconds(1) || received == frames)
                    {
                        lastReport = clock.Elapsed;
                        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  progress: {received}/{frames} results, {failed} failed, {received / clock.Elapsed.TotalSeconds:0} runs/s"));
                    }

                    if (received == frames)
                    {
                        return;
                    }
                }
            });

            var random = new Random(42);
            var submissions = new List<Task>(frames);
            for (var i = 0; i < frames; i++)
            {
                await gate.WaitAsync();
                var data = new byte[size];
                random.NextBytes(data);
                var runId = $"demo-{i:D6}-{Guid.CreateVersion7():N}";
                var frame = new Frame { Project = project, SourceId = $"camera-{i % 4}", Data = ByteString.CopyFrom(data) };
                submittedAt[runId] = Stopwatch.GetTimestamp();
                submissions.Add(SubmitAsync(frame, runId));
            }

            await Task.WhenAll(submissions);
            var finished = await Task.WhenAny(consumer, Task.Delay(TimeSpan.FromSeconds(60 + (frames / 10))));
            if (finished != consumer)
            {
                output.WriteLine($"demo: timed out waiting for results ({received}/{frames})");
            }

            var elapsed = clock.Elapsed;

            async Task SubmitAsync(Frame frame, string runId)
            {
                var accepted = await submitter.SubmitAsync(frame, runId);
                if (accepted.Outcome != StartOutcome.Accepted)
                {
                    throw new InvalidOperationException($"run {runId} not accepted: {accepted.Outcome} {accepted.Error}");
                }
            }

            system.Stop(subscriber);
            if (example is not null)
            {
                output.WriteLine($"  example result: run {example.RunId} {example.Status} in {example.CompletedAtUnixMs - example.AcceptedAtUnixMs} ms");
                foreach (var node in example.Nodes)
                {
                    var metrics = string.Join(' ', node.Metrics.Select(m => string.Create(CultureInfo.InvariantCulture, $"{m.Key}={m.Value:0.###}")));
                    output.WriteLine($"    {node.NodeId,-10} {node.Status,-9} {node.DurationUs / 1000.0,7:0.00} ms  {metrics}");
                }
            }

            var dead = (await store.ReadDeadLettersAsync(project)).Count;
            latencies.Sort();
            var p99 = latencies.Count == 0 ? 0 : latencies[Math.Min(latencies.Count - 1, (int)Math.Ceiling(latencies.Count * 0.99) - 1)];
            return new Summary(frames, received, failed, dead, received / elapsed.TotalSeconds, p99);
        }
        finally
        {
            await host.StopAsync();
        }
    }
}
