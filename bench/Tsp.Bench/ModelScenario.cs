using System.Diagnostics;
using System.Globalization;
using Akka.Hosting;
using Google.Protobuf;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.ML.OnnxRuntime;
using Tsp.Actors.Dispatch;
using Tsp.Actors.Hosting;
using Tsp.Actors.Ingest;
using Tsp.Actors.Nodes;
using Tsp.Actors.Nodes.Imaging;
using Tsp.Actors.Nodes.Onnx;
using Tsp.Actors.Northbound;
using Tsp.Actors.Protocol;
using Tsp.Actors.Samples;
using Tsp.Actors.Storage;

namespace Tsp.Bench;

/// <summary>
/// <c>model</c>: the sample's pretrained text detector (PP-OCRv4 det, 320×320) on the same
/// preprocessed images, (1) in a bare ONNX Runtime loop that runs batches of B, and (2) through TSP
/// standalone — each image a durable run of a one-node workflow (onnx), its tensor claim-checked in
/// Redis, 4·B runs in flight — with dynamic batching of at most B and again with batching off.
/// Figures: images/s for each, the ratio TSP/bare, and what batching buys (median of repeats).
/// </summary>
internal static class ModelScenario
{
    public static async Task<int> RunAsync(BenchOptions options)
    {
        var batch = options.Batch;
        var root = Path.Combine(Path.GetTempPath(), $"tsp-bench-models-{Environment.ProcessId}");
        var repository = new ModelRepository(root);
        await PretrainedModels.EnsureTextDetectorAsync(repository);
        var images = Enumerable.Range(0, 32).Select(i => Preprocess(SurfaceImages.Generate(i, defective: i % 2 == 0).Png)).ToList();
        var bare = new List<double>();
        var batched = new List<double>();
        var unbatched = new List<double>();
        var inferenceMs = new List<double>();
        var provider = "CPU";
        for (var repeat = 0; repeat < options.Repeats; repeat++)
        {
            bare.Add(BareLoop(repository, images, batch, options.Messages, options.Cuda, out provider));
            var (rate, batchMs) = await ThroughTspAsync(options, root, images, batch);
            batched.Add(rate);
            inferenceMs.Add(batchMs);
            unbatched.Add((await ThroughTspAsync(options, root, images, 1)).Rate);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  repeat {repeat + 1}: bare={bare[^1]:0.0} tsp={batched[^1]:0.0} tsp_unbatched={unbatched[^1]:0.0} images/s"));
        }

        var (b, t, u) = (Median(bare), Median(batched), Median(unbatched));
        // Where the gap is: ONNX Runtime's own time per full batch inside TSP against the bare loop's.
        var figures = string.Create(CultureInfo.InvariantCulture, $"bare_per_s={b:0.0} tsp_per_s={t:0.0} ratio={t / b:0.00} tsp_unbatched_per_s={u:0.0} batching_gain={t / u:0.00} bare_batch_ms={1000 * batch / b:0.0} tsp_inference_batch_ms={Median(inferenceMs):0.0}");
        Console.WriteLine($"model: {figures} images={options.Messages} batch={batch} provider={provider}");
        Results.Record(options, $"bench/run.sh model --messages {options.Messages} --batch {batch}{(options.Cuda ? " --cuda" : "")}", figures,
            $"PP-OCRv4 det 320×320, {provider}, median of {options.Repeats}; TSP: SQLite journal, redis-server, {4 * batch} runs in flight");
        Directory.Delete(root, recursive: true);
        return 0;
    }

    private static TensorSet Preprocess(byte[] png)
    {
        var settings = ImageSettings.From(new Dictionary<string, string> { ["width"] = "320", ["height"] = "320", ["mean"] = "0.485,0.456,0.406", ["std"] = "0.229,0.224,0.225" }, "bench");
        using var bitmap = ImageNormalizeProcessor.Decode(png, settings.MaxPixels);
        return settings.ToTensorSet(bitmap);
    }

    private static double BareLoop(ModelRepository repository, List<TensorSet> images, int batch, int count, bool cuda, out string provider)
    {
        using var sessionOptions = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        provider = "CPU";
        if (cuda)
        {
            sessionOptions.AppendExecutionProvider_CUDA(0);
            provider = "CUDA:0";
        }

        using var session = new InferenceSession(repository.ModelPath(PretrainedModels.TextDetector, 1), sessionOptions);
        using var run = new RunOptions();
        var values = images.Select(i => TensorSets.Values(i.Tensors[0])).ToList();
        var imageSize = values[0].Length;
        void Batch(int first)
        {
            var data = new float[batch * imageSize];
            for (var i = 0; i < batch; i++)
            {
                values[(first + i) % values.Count].CopyTo(data, i * imageSize);
            }

            using var input = OrtValue.CreateTensorValueFromMemory(data, [batch, 3, 320, 320]);
            using var output = session.Run(run, ["x"], [input], [PretrainedModels.TextDetectorOutput]);
        }

        Batch(0);
        var clock = Stopwatch.StartNew();
        for (var done = 0; done < count; done += batch)
        {
            Batch(done);
        }

        return count / clock.Elapsed.TotalSeconds;
    }

    /// <returns>Images/s, and the median time ONNX Runtime took per full batch.</returns>
    private static async Task<(double Rate, double InferenceMs)> ThroughTspAsync(BenchOptions options, string models, List<TensorSet> images, int batch)
    {
        var project = $"bench-model-{Guid.NewGuid():N}"[..20];
        var configPath = Path.Combine(models, PretrainedModels.TextDetector, ModelRepository.ConfigFile);
        var config = await File.ReadAllTextAsync(configPath);
        await File.WriteAllTextAsync(configPath, System.Text.RegularExpressions.Regex.Replace(config, @"batching: .*", $"batching: {{ max_batch_size: {batch}, max_queue_delay_ms: 2 }}"));
        var workflow = Path.Combine(Path.GetTempPath(), $"{project}.yaml");
        await File.WriteAllTextAsync(workflow, $"project: {project}\nnodes:\n  - {{ id: text, processor: onnx, role: gpu, queue: gpu-bench, params: {{ model: {PretrainedModels.TextDetector} }} }}\n");
        var tsp = new TspOptions
        {
            Redis = options.Redis,
            SqlitePath = Path.Combine(Path.GetTempPath(), $"{project}.db"),
            Workflows = [workflow],
            Roles = [.. TspRoles.All],
            Onnx = new OnnxOptions { Repository = models, ExecutionProvider = options.Cuda ? "cuda" : "cpu" },
            Storage = new StorageOptions { FinishedBlobTtl = TimeSpan.FromSeconds(10) },
            Queues = { ["gpu-bench"] = new QueueOptions { Role = TspRoles.Gpu, RouteesPerMember = 1, SlotsPerRoutee = 4 * batch } },
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
        try
        {
            await host.Services.GetRequiredService<NodeQueues>().WaitForRouteesAsync(TimeSpan.FromSeconds(30));
            var system = host.Services.GetRequiredService<Akka.Actor.ActorSystem>();
            var submitter = host.Services.GetRequiredService<RunSubmitter>();
            var (subscriber, results) = await ResultSubscriptions.SubscribeAsync(system, project, TimeSpan.FromSeconds(30));
            var frames = images.Select(i => ByteString.CopyFrom(i.ToByteArray())).ToList();
            var inference = new List<double>();
            // 4·B runs in flight, submitted concurrently (a submission waits for its run to be durable).
            async Task RunAsync(int count)
            {
                using var slots = new SemaphoreSlim(4 * batch);
                var consumer = Task.Run(async () =>
                {
                    for (var received = 0; received < count; received++)
                    {
                        var result = await results.ReadAsync();
                        slots.Release();
                        if (Environment.GetEnvironmentVariable("TSP_BENCH_DEBUG") is not null && received % 40 == 0)
                        {
                            Console.WriteLine($"    batch={result.Nodes[0].Metrics.GetValueOrDefault("batch")} inference_ms={result.Nodes[0].Metrics.GetValueOrDefault("inference_ms"):0.0} node_ms={result.Nodes[0].DurationUs / 1000.0:0.0} run_ms={result.CompletedAtUnixMs - result.AcceptedAtUnixMs}");
                        }
                        if (result.Status != RunStatus.Succeeded)
                        {
                            throw new InvalidOperationException($"run {result.RunId} failed: {result.Error}");
                        }

                        if (result.Nodes[0].Metrics.GetValueOrDefault("batch") == batch)
                        {
                            inference.Add(result.Nodes[0].Metrics["inference_ms"]);
                        }
                    }
                });
                var submissions = new List<Task>(count);
                for (var i = 0; i < count; i++)
                {
                    await slots.WaitAsync();
                    submissions.Add(submitter.SubmitAsync(new Frame { Project = project, Data = frames[i % frames.Count] }));
                }

                await Task.WhenAll(submissions);
                await consumer;
            }

            await RunAsync(Math.Max(32, 4 * batch));
            inference.Clear();
            var clock = Stopwatch.StartNew();
            await RunAsync(options.Messages);
            var rate = options.Messages / clock.Elapsed.TotalSeconds;
            system.Stop(subscriber);
            return (rate, inference.Count > 0 ? Median(inference) : double.NaN);
        }
        finally
        {
            await host.StopAsync();
            File.Delete(workflow);
        }
    }

    private static double Median(List<double> values) => values.Order().ToList()[values.Count / 2];
}
