using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Google.Protobuf;
using Microsoft.Extensions.DependencyInjection;
using Tsp.Actors.Nodes.Onnx;
using Tsp.Actors.Northbound;
using Tsp.Actors.Protocol;
using Tsp.Actors.Workflows;
using Tsp.ServiceDefaults.Samples;

namespace Tsp.Bench;

/// <summary>
/// <c>quality</c>: the rail-inspection sample through TSP itself — its two workflows as shipped, a
/// standalone host, the anomaly model trained by the training workflow on the demo's good images,
/// then --messages held-out images (seeds no training or demo image uses), half defective, steel and
/// concrete, submitted --in-flight at a time — scored from the TP results by
/// <see cref="InspectionScore"/>, as the demo is: AUROC, recall and precision at IoU 0.3, recall at
/// 0.5 and per severity band, serial accuracy, plus false alarms (good images with a defect box).
/// </summary>
internal static class QualityScenario
{
    private const int FirstSeed = 2_000_000;

    public static async Task<int> RunAsync(BenchOptions options)
    {
        var samples = Path.Combine(RepositoryRoot(), "samples", "rail-inspection");
        var project = $"quality-{Guid.NewGuid():N}"[..16];
        var training = Path.Combine(Path.GetTempPath(), $"{project}-train.yaml");
        await File.WriteAllTextAsync(training, (await File.ReadAllTextAsync(Path.Combine(samples, "train.yaml"))).Replace("project: rail-inspection-train", $"project: {project}-train", StringComparison.Ordinal));
        var models = Path.Combine(Path.GetTempPath(), $"{project}-models");
        var inspection = (await File.ReadAllTextAsync(Path.Combine(samples, "workflow.yaml"))).Replace("project: rail-inspection", $"project: {project}", StringComparison.Ordinal);
        try
        {
            await using var host = await BenchHost.StartAsync(options, project, inspection, tsp =>
            {
                tsp.Workflows.Add(training);
                tsp.Onnx = new OnnxOptions { Repository = models, ExecutionProvider = options.Cuda ? "cuda" : "cpu", ReloadInterval = TimeSpan.FromMilliseconds(200) };
            });
            var repository = host.Services.GetRequiredService<OnnxModels>().Repository;
            await PretrainedModels.EnsureTextDetectorAsync(repository);
            await PretrainedModels.EnsureTextRecognizerAsync(repository);
            await TrainAsync(host, $"{project}-train");

            var score = new InspectionScore();
            var falseAlarms = 0;
            var truth = new ConcurrentDictionary<string, SurfaceImage>(StringComparer.Ordinal);
            var clock = Stopwatch.StartNew();
            using var slots = new SemaphoreSlim(options.InFlight);
            var consumer = Task.Run(async () =>
            {
                for (var received = 0; received < options.Messages;)
                {
                    var result = await host.Results.ReadAsync();
                    if (!truth.TryRemove(result.SourceId, out var image))
                    {
                        continue;
                    }

                    received++;
                    slots.Release();
                    score.Add(image, result);
                    falseAlarms += !image.Defective && result.Detections.Any(d => d.Label == "defect") ? 1 : 0;
                }
            });
            for (var i = 0; i < options.Messages; i++)
            {
                await slots.WaitAsync();
                var image = SurfaceImages.Generate(FirstSeed + i, defective: i % 2 == 0, SurfaceImages.KindOf(i));
                var source = $"held-out-{i}";
                truth[source] = image;
                var accepted = await host.Submitter.SubmitAsync(new Frame { Project = project, SourceId = source, Data = ByteString.CopyFrom(image.Png) });
                if (accepted.Outcome != StartOutcome.Accepted)
                {
                    throw new InvalidOperationException($"image {i} not accepted: {accepted.Outcome} {accepted.Error}");
                }
            }

            if (await Task.WhenAny(consumer, Task.Delay(TimeSpan.FromMinutes(10))) != consumer)
            {
                throw new TimeoutException($"{truth.Count} of {options.Messages} results did not come within 10 minutes");
            }

            await consumer;
            var figures = score.Figures.Trim() + string.Create(CultureInfo.InvariantCulture, $" false_alarm_rate={falseAlarms / Math.Ceiling(options.Messages / 2.0):0.000}");
            Console.WriteLine($"quality: {figures}");
            Console.WriteLine($"quality: {score.Details} images={options.Messages} runs_per_s={options.Messages / clock.Elapsed.TotalSeconds:0.0}");
            Results.Record(options, $"bench/run.sh quality --messages {options.Messages}", figures,
                $"through TSP (standalone, the sample's workflows as shipped, CPU provider); anomaly model trained by the training workflow on {SurfaceImages.TrainingImages} good images; {options.Messages} held-out images (seeds {FirstSeed}+), half defective, steel and concrete, camera effects; {score.Details}");
            return 0;
        }
        finally
        {
            File.Delete(training);
            if (Directory.Exists(models))
            {
                Directory.Delete(models, recursive: true);
            }
        }
    }

    /// <summary>The demo's training run: a TrainingSet frame of the same 40 good images.</summary>
    private static async Task TrainAsync(BenchHost host, string trainingProject)
    {
        var system = host.Services.GetRequiredService<Akka.Actor.ActorSystem>();
        var (subscriber, results) = await ResultSubscriptions.SubscribeAsync(system, trainingProject, TimeSpan.FromSeconds(30));
        try
        {
            var accepted = await host.Submitter.SubmitAsync(new Frame { Project = trainingProject, SourceId = "training", Data = SurfaceImages.GoodTrainingSet().ToByteString() });
            using var patience = new CancellationTokenSource(TimeSpan.FromMinutes(5));
            TpResult result;
            while ((result = await results.ReadAsync(patience.Token)).RunId != accepted.RunId)
            {
            }

            if (result.Status != RunStatus.Succeeded)
            {
                throw new InvalidOperationException($"training failed: {result.Error}");
            }
        }
        finally
        {
            system.Stop(subscriber);
        }
    }

    private static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(Directory.GetCurrentDirectory());
        while (dir is not null && !Directory.Exists(Path.Combine(dir.FullName, "samples", "rail-inspection")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("samples/rail-inspection not found above the working directory; run from the repository");
    }
}
