using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Akka.Actor;
using Microsoft.Extensions.DependencyInjection;
using Tsp.Actors.Dispatch;
using Tsp.Actors.Hosting;
using Tsp.Actors.Ingest;
using Tsp.Actors.Nodes.Onnx;
using Tsp.Actors.Northbound;
using Google.Protobuf;
using Tsp.ServiceDefaults;
using Tsp.ServiceDefaults.Operations;
using Tsp.ServiceDefaults.Samples;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Actors.Workflows;

namespace Tsp.Seed;

/// <summary>
/// <c>demo</c>: standalone on embedded defaults (Garnet, librdkafka mock cluster, a throwaway SQLite
/// journal); N generated frames are produced to the project's Kafka topic, ingested into runs, and
/// their results followed; progress while it runs, one summary line at the end.
/// </summary>
internal static class DemoVerb
{
    public static async Task<int> RunAsync(IReadOnlyDictionary<string, string?> flags, int frames, int concurrency, int size)
    {
        var options = TspProcess.ReadOptions(flags);
        var scratch = Path.Combine(Path.GetTempPath(), $"tsp-demo-{Environment.ProcessId}");
        options.SqlitePath = Path.Combine(scratch, "journal.db");
        using var embedded = StandaloneServers.Apply(options);
        try
        {
            var summary = await RunDemoAsync(options, frames, concurrency, size, Console.Out);
            Console.WriteLine(summary.Line);
            return summary.Results == frames && summary.Failed == 0 ? ExitCodes.Ok : ExitCodes.Failed;
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    /// <param name="Quality">The project's quality figures (" auroc=… recall=… precision=… serial_accuracy=…"), or "".</param>
    public sealed record Summary(int Frames, int Results, int Failed, int Dead, double RunsPerSecond, double P99Ms, string Quality = "")
    {
        public string Line => string.Create(CultureInfo.InvariantCulture, $"demo: frames={Frames} results={Results} failed={Failed} dead={Dead} runs_per_s={RunsPerSecond:0.0} p99_ms={P99Ms:0.0}") + Quality;
    }

    /// <summary>Runs the demo on <paramref name="options"/>, which must name Redis and Kafka.</summary>
    public static async Task<Summary> RunDemoAsync(TspOptions options, int frames, int concurrency, int size, TextWriter output)
    {
        if (string.IsNullOrWhiteSpace(options.Kafka.Bootstrap) || string.IsNullOrWhiteSpace(options.Redis))
        {
            throw new ArgumentException("the demo needs Redis and Kafka endpoints (StandaloneServers.Apply embeds both)", nameof(options));
        }

        options.Kafka.MaxInFlightRuns = concurrency;
        // The demo reads its results in-process; a fixed port would only collide with a running TSP.
        using var host = SeedHost.Build(options, new Seed.Grpc.GrpcOptions { Port = -1 }, httpPort: 0, quiet: Environment.GetEnvironmentVariable("TSP_DEMO_VERBOSE") is null);
        await TspProcess.StartAsync(host);
        try
        {
            var system = host.Services.GetRequiredService<ActorSystem>();
            var store = host.Services.GetRequiredService<RedisStore>();
            var catalog = host.Services.GetRequiredService<WorkflowCatalog>();
            await SeedHost.PrepareSampleModelsAsync(host);
            var inspection = InspectionFrames.Find(catalog);
            IDemoFrames source = inspection is null ? new RandomFrames(size) : new InspectionFrames();
            var project = inspection?.Inspection.Project ?? catalog.Projects.First();
            output.WriteLine(inspection is null
                ? $"demo: project '{project}', {frames} frames of {size} bytes, at most {concurrency} runs in flight"
                : $"demo: project '{project}', {frames} generated surface images (every second one defective), at most {concurrency} runs in flight");
            output.WriteLine($"demo: kafka {options.Kafka.Bootstrap} (topic {KafkaTopics.Frames(project)}), redis {options.Redis}, journal {options.SqlitePath}");
            output.WriteLine($"demo: dashboard {SeedHost.HttpUrl(host)}/ (metrics {SeedHost.HttpUrl(host)}{OperationsHttp.MetricsPath}), served while the demo runs");
            var (subscriber, results) = await ResultSubscriptions.SubscribeAsync(system, project, TimeSpan.FromSeconds(30));
            await host.Services.GetRequiredService<NodeQueues>().WaitForRouteesAsync(TimeSpan.FromSeconds(30));
            if (inspection is { } scenario)
            {
                await TrainIfNeededAsync(host, scenario.Training.Project, scenario.Model, output);
            }

            // One frame first, not counted: the consumer group joins (≈3 s on the mock broker), code
            // paths warm up, and the figures below measure the pipeline, not its start.
            using (var warmUp = new FrameProducer(options.Kafka.Bootstrap!))
            {
                var warmUpRun = await warmUp.ProduceAsync(project, inspection is null ? new byte[size] : SurfaceImages.Generate(InspectionFrames.FirstSeed - 1, defective: false).Png, "warm-up");
                using var patience = new CancellationTokenSource(TimeSpan.FromSeconds(60));
                while ((await results.ReadAsync(patience.Token)).RunId != warmUpRun)
                {
                }
            }

            var producedAt = new ConcurrentDictionary<string, long>(StringComparer.Ordinal);
            var completedAt = new ConcurrentDictionary<string, long>(StringComparer.Ordinal);
            var failed = 0;
            var clock = Stopwatch.StartNew();
            TpResult? example = null;

            var consumer = Task.Run(async () =>
            {
                var lastReport = clock.Elapsed;
                await foreach (var result in results.ReadAllAsync())
                {
                    if (!completedAt.TryAdd(result.RunId, Stopwatch.GetTimestamp()))
                    {
                        continue;
                    }

                    source.Judge(result);
                    example = result.Status == RunStatus.Succeeded && (example is null || Interest(result) > Interest(example)) ? result : example;
                    if (result.Status != RunStatus.Succeeded)
                    {
                        failed++;
                        output.WriteLine($"  run {result.RunId} failed: {result.Error}");
                    }

                    if (clock.Elapsed - lastReport > TimeSpan.FromSeconds(1) || completedAt.Count == frames)
                    {
                        lastReport = clock.Elapsed;
                        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  progress: {completedAt.Count}/{frames} results, {failed} failed, {completedAt.Count / clock.Elapsed.TotalSeconds:0} runs/s"));
                    }

                    if (completedAt.Count == frames)
                    {
                        return;
                    }
                }
            });

            // The embedded mock broker keeps only the newest few MB of each partition: a producer far
            // ahead of ingest would lose frames there. So the demo stays at most `ahead` frames ahead
            // of the results (a real Kafka has no such limit).
            var frameBytes = inspection is null ? size : 160 * 1024;
            var ahead = Math.Clamp((8 << 20) / frameBytes, 1, 2 * concurrency);
            using (var producer = new FrameProducer(options.Kafka.Bootstrap!))
            {
                var deliveries = new List<Task>(frames);
                for (var i = 0; i < frames; i++)
                {
                    while (i - completedAt.Count >= ahead && !consumer.IsCompleted)
                    {
                        await Task.Delay(1);
                    }

                    var (data, sourceId) = source.Frame(i);
                    deliveries.Add(ProduceAsync(producer, project, data, sourceId));
                }

                await Task.WhenAll(deliveries);

                async Task ProduceAsync(FrameProducer to, string project, byte[] data, string source)
                {
                    var sent = Stopwatch.GetTimestamp();
                    producedAt[await to.ProduceAsync(project, data, source, "application/octet-stream", DateTimeOffset.UtcNow)] = sent;
                }
            }

            var finished = await Task.WhenAny(consumer, Task.Delay(TimeSpan.FromSeconds(60 + (frames / 10))));
            if (finished != consumer)
            {
                output.WriteLine($"demo: timed out waiting for results ({completedAt.Count}/{frames})");
                foreach (var ingest in host.Services.GetRequiredService<KafkaIngests>().ByProject.Values)
                {
                    output.WriteLine($"  {await ingest.Ask<IngestStats>(GetIngestStats.Instance, TimeSpan.FromSeconds(5))}");
                }

                foreach (var queue in host.Services.GetRequiredService<NodeQueues>().All.Values)
                {
                    output.WriteLine($"  {await queue.Ask<QueueStats>(GetQueueStats.Instance, TimeSpan.FromSeconds(5))}");
                }
            }

            var elapsed = clock.Elapsed;
            system.Stop(subscriber);
            if (example is not null)
            {
                output.WriteLine($"  example result: run {example.RunId} {example.Status} in {example.CompletedAtUnixMs - example.AcceptedAtUnixMs} ms, source {example.SourceId}");
                foreach (var node in example.Nodes)
                {
                    var metrics = string.Join(' ', node.Metrics.Select(m => string.Create(CultureInfo.InvariantCulture, $"{m.Key}={m.Value:0.###}")));
                    var model = node.ModelName.Length > 0 ? $"  model {node.ModelName} v{node.ModelVersion}" : "";
                    output.WriteLine($"    {node.NodeId,-10} {node.Status,-9} {node.DurationUs / 1000.0,7:0.00} ms  {metrics}{model}");
                }

                foreach (var detection in example.Detections)
                {
                    var text = detection.Text.Length > 0 ? $" \"{detection.Text}\"" : "";
                    output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"    {detection.Label}{text} {detection.Score:0.00} at x={detection.Box.X:0} y={detection.Box.Y:0} w={detection.Box.Width:0} h={detection.Box.Height:0} (node {detection.NodeId})"));
                }
            }

            var dead = (await store.ReadDeadLettersAsync(project)).Count;
            var latencies = completedAt
                .Where(c => producedAt.ContainsKey(c.Key))
                .Select(c => Stopwatch.GetElapsedTime(producedAt[c.Key], c.Value).TotalMilliseconds)
                .Order()
                .ToList();
            var p99 = latencies.Count == 0 ? 0 : latencies[Math.Min(latencies.Count - 1, (int)Math.Ceiling(latencies.Count * 0.99) - 1)];
            var score = source.Score();
            if (score is not null)
            {
                output.WriteLine($"demo: quality {score.Details}");
            }

            return new Summary(frames, completedAt.Count, failed, dead, completedAt.Count / elapsed.TotalSeconds, p99, score?.Figures ?? "");
        }
        finally
        {
            await host.StopAsync();
        }
    }

    /// <summary>How much an example result shows: kinds of detection, and whether any text was read.</summary>
    private static int Interest(TpResult result) =>
        result.Detections.Select(d => d.Label).Distinct(StringComparer.Ordinal).Count() + (result.Detections.Any(d => d.Text.Length > 0) ? 1 : 0);

    /// <summary>Fits the model on good images through the training project when the repository has no version of it yet.</summary>
    private static async Task TrainIfNeededAsync(Microsoft.Extensions.Hosting.IHost host, string trainingProject, string model, TextWriter output)
    {
        var models = host.Services.GetRequiredService<OnnxModels>();
        if (models.Repository.Versions(model).Count > 0)
        {
            output.WriteLine($"demo: model '{model}' version {models.Repository.Versions(model)[^1]} found in {models.Repository.Root}; delete it to train again");
            return;
        }

        const int images = SurfaceImages.TrainingImages;
        output.WriteLine($"demo: no version of model '{model}' yet: training it on {images} good images (project '{trainingProject}')");
        var clock = Stopwatch.StartNew();
        var system = host.Services.GetRequiredService<ActorSystem>();
        var (subscriber, results) = await ResultSubscriptions.SubscribeAsync(system, trainingProject, TimeSpan.FromSeconds(30));
        try
        {
            var frame = new Frame { Project = trainingProject, SourceId = "demo-training", Data = SurfaceImages.GoodTrainingSet(images).ToByteString() };
            var accepted = await host.Services.GetRequiredService<RunSubmitter>().SubmitAsync(frame);
            if (accepted.Outcome == StartOutcome.Rejected)
            {
                throw new InvalidOperationException($"training run rejected: {accepted.Error}");
            }

            using var patience = new CancellationTokenSource(TimeSpan.FromMinutes(5));
            TpResult result;
            while ((result = await results.ReadAsync(patience.Token)).RunId != accepted.RunId)
            {
            }

            if (result.Status != RunStatus.Succeeded)
            {
                throw new InvalidOperationException($"training failed: {result.Error}");
            }

            var export = result.Nodes.First(n => n.ModelName == model);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"demo: trained '{model}' version {export.ModelVersion} in {clock.Elapsed.TotalSeconds:0.0} s"));
        }
        finally
        {
            system.Stop(subscriber);
        }
    }
}
