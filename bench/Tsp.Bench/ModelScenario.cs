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
using Tsp.ServiceDefaults.Samples;
using Tsp.Actors.Storage;

namespace Tsp.Bench;

/// <summary>
/// <c>model</c>: the sample's pretrained text detector (PP-OCRv4 det, 320×320) on the same
/// preprocessed images, (1) in a bare ONNX Runtime loop that runs batches of B, and (2) through TSP
/// standalone — each image a durable run of a one-node workflow (onnx), its tensor claim-checked in
/// Redis, 4·B runs in flight — with dynamic batching of at most B and again with batching off.
/// The machine's speed drifts by ±30 % over minutes (a shared VM), so the two are measured in pairs:
/// bare, then TSP, <c>--repeats</c> times on the same warm TSP host, each pair giving a ratio; the
/// figures are medians of the pairs. The pairs without batching compare TSP with a bare loop that
/// also runs single images. Batching's gain is TSP's rate with batches over its rate without, beside
/// the bare loop's own gain: on a CPU, batches may well be slower than single images.
/// <c>--instances N</c> gives the model N sessions on both sides: TSP's config.yaml <c>instances</c>,
/// and N bare loops side by side, each session with its share of the cores.
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
        using var bare = new BareLoop(repository, images, batch, options.Cuda, options.Instances);
        using var bareSingle = new BareLoop(repository, images, 1, options.Cuda, options.Instances);
        var batched = await PairsAsync(options, root, images, batch, bare, adaptive: false);
        var unbatched = await PairsAsync(options, root, images, 1, bareSingle, adaptive: false);
        // The batcher choosing for itself, up to B, against the better of the two fixed settings.
        var adaptive = await PairsAsync(options, root, images, batch, bareSingle, adaptive: true);
        var (b, t, ratio) = (Median(batched.Select(p => p.Bare)), Median(batched.Select(p => p.Tsp)), Median(batched.Select(p => p.Tsp / p.Bare)));
        var (b1, t1, unbatchedRatio) = (Median(unbatched.Select(p => p.Bare)), Median(unbatched.Select(p => p.Tsp)), Median(unbatched.Select(p => p.Tsp / p.Bare)));
        // Where the gap is: ONNX Runtime's own time per full batch inside TSP against the bare loop's.
        var figures = string.Create(CultureInfo.InvariantCulture, $"bare_per_s={b:0.0} tsp_per_s={t:0.0} ratio={ratio:0.00} bare_unbatched_per_s={b1:0.0} tsp_unbatched_per_s={t1:0.0} unbatched_ratio={unbatchedRatio:0.00} batching_gain={t / t1:0.00} bare_batching_gain={b / b1:0.00} bare_batch_ms={1000 * batch * options.Instances / b:0.0} tsp_inference_batch_ms={Median(batched.Select(p => p.InferenceMs)):0.0} ratio_range={batched.Min(p => p.Tsp / p.Bare):0.00}-{batched.Max(p => p.Tsp / p.Bare):0.00} adaptive_per_s={Median(adaptive.Select(p => p.Tsp)):0.0} adaptive_vs_best_fixed={Median(adaptive.Select(p => p.Tsp)) / Math.Max(t, t1):0.00} adaptive_batch_limit={adaptive[^1].Limit} adaptive_ms_per_row={adaptive[^1].Costs}");
        var instances = options.Instances > 1 ? $" --instances {options.Instances}" : string.Empty;
        Console.WriteLine($"model: {figures} images={options.Messages} batch={batch} instances={options.Instances} provider={bare.Provider}");
        Results.Record(options, $"bench/run.sh model --messages {options.Messages} --batch {batch}{instances} --repeats {options.Repeats}{(options.Cuda ? " --cuda" : "")}", figures,
            $"PP-OCRv4 det 320×320, {bare.Provider}; {options.Instances} session(s) of {bare.ThreadsPerSession} thread(s) on both sides; {options.Repeats} pairs (bare, then TSP on one warm host), medians; TSP: SQLite journal, redis-server, {4 * batch * options.Instances} runs in flight");
        Directory.Delete(root, recursive: true);
        return 0;
    }

    /// <param name="Limit">The batch limit most results of TSP's last pass ran under.</param>
    /// <param name="Costs">The batcher's measured compute ms per row by batch size, after the pass.</param>
    private sealed record Pair(double Bare, double Tsp, double InferenceMs, int Limit, string Costs = "");

    /// <summary>One TSP host with batches of at most <paramref name="batch"/> (always up to it, or
    /// chosen while serving when <paramref name="adaptive"/>); <c>--repeats</c> pairs of (bare loop,
    /// TSP) over <c>--messages</c> images each, after an uncounted warm-up of both.</summary>
    private static async Task<List<Pair>> PairsAsync(BenchOptions options, string models, List<TensorSet> images, int batch, BareLoop bare, bool adaptive)
    {
        var pairs = new List<Pair>();
        await using var tsp = await TspModelHost.StartAsync(options, models, images, batch, options.Instances, adaptive);
        bare.Rate(Math.Max(32, 4 * bare.Batch));
        await tsp.MeasureAsync(Math.Max(32, 4 * batch));
        for (var repeat = 0; repeat < options.Repeats; repeat++)
        {
            var bareRate = bare.Rate(options.Messages);
            var (rate, inferenceMs, limit) = await tsp.MeasureAsync(options.Messages);
            pairs.Add(new Pair(bareRate, rate, inferenceMs, limit, tsp.BatchCosts()));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  batch {batch}{(adaptive ? " adaptive" : "")}, pair {repeat + 1}: bare={bareRate:0.0} tsp={rate:0.0} images/s ratio={rate / bareRate:0.00} tsp_inference_batch_ms={inferenceMs:0.0} batch_limit={limit}"));
        }

        return pairs;
    }

    private static TensorSet Preprocess(byte[] png)
    {
        var settings = ImageSettings.From(new Dictionary<string, string> { ["width"] = "320", ["height"] = "320", ["mean"] = "0.485,0.456,0.406", ["std"] = "0.229,0.224,0.225" }, "bench");
        using var bitmap = ImageNormalizeProcessor.Decode(png, settings.MaxPixels);
        return settings.ToTensorSet(bitmap);
    }

    /// <summary>The same model on the same images in a loop of ONNX Runtime calls, default session
    /// settings, batches of B: what TSP is compared with. With N instances, N such loops side by side,
    /// each on its own session with its share of the cores (as TSP splits them).</summary>
    private sealed class BareLoop : IDisposable
    {
        private readonly List<(SessionOptions Options, InferenceSession Session, RunOptions Run)> _sessions = [];
        private readonly List<float[]> _values;

        public BareLoop(ModelRepository repository, List<TensorSet> images, int batch, bool cuda, int instances)
        {
            Batch = batch;
            ThreadsPerSession = instances > 1 ? Math.Max(1, Environment.ProcessorCount / instances) : Environment.ProcessorCount;
            for (var i = 0; i < instances; i++)
            {
                var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
                if (instances > 1)
                {
                    options.IntraOpNumThreads = ThreadsPerSession;
                }

                if (cuda)
                {
                    options.AppendExecutionProvider_CUDA(0);
                    Provider = "CUDA:0";
                }

                _sessions.Add((options, new InferenceSession(repository.ModelPath(PretrainedModels.TextDetector, 1), options), new RunOptions()));
            }

            _values = images.Select(i => TensorSets.Values(i.Tensors[0])).ToList();
        }

        public int Batch { get; }

        public int ThreadsPerSession { get; }

        public string Provider { get; } = "CPU";

        /// <returns>Images/s over <paramref name="count"/> images.</returns>
        public double Rate(int count)
        {
            var batches = (count + Batch - 1) / Batch;
            var clock = Stopwatch.StartNew();
            var loops = _sessions.Select((session, loop) => new Thread(() =>
            {
                for (var b = loop; b < batches; b += _sessions.Count)
                {
                    RunBatch(session.Session, session.Run, b * Batch);
                }
            })).ToList();
            loops.ForEach(t => t.Start());
            loops.ForEach(t => t.Join());
            return batches * Batch / clock.Elapsed.TotalSeconds;
        }

        private void RunBatch(InferenceSession session, RunOptions run, int first)
        {
            var imageSize = _values[0].Length;
            var data = new float[Batch * imageSize];
            for (var i = 0; i < Batch; i++)
            {
                _values[(first + i) % _values.Count].CopyTo(data, i * imageSize);
            }

            using var input = OrtValue.CreateTensorValueFromMemory(data, [Batch, 3, 320, 320]);
            using var output = session.Run(run, ["x"], [input], [PretrainedModels.TextDetectorOutput]);
        }

        public void Dispose()
        {
            foreach (var (options, session, run) in _sessions)
            {
                session.Dispose();
                run.Dispose();
                options.Dispose();
            }
        }
    }

    /// <summary>TSP standalone in this process with the one-node workflow; a model config whose
    /// batching allows at most B.</summary>
    private sealed class TspModelHost : IAsyncDisposable
    {
        private readonly IHost _host;
        private readonly string _workflow;
        private readonly string _project;
        private readonly int _batch;
        private readonly int _inFlight;
        private readonly RunSubmitter _submitter;
        private readonly Akka.Actor.IActorRef _subscriber;
        private readonly System.Threading.Channels.ChannelReader<TpResult> _results;
        private readonly List<ByteString> _frames;

        private TspModelHost(IHost host, string workflow, string project, int batch, int inFlight, RunSubmitter submitter, Akka.Actor.IActorRef subscriber, System.Threading.Channels.ChannelReader<TpResult> results, List<ByteString> frames)
        {
            (_host, _workflow, _project, _batch, _inFlight, _submitter, _subscriber, _results, _frames) = (host, workflow, project, batch, inFlight, submitter, subscriber, results, frames);
        }

        public static async Task<TspModelHost> StartAsync(BenchOptions options, string models, List<TensorSet> images, int batch, int instances, bool adaptive)
        {
            var project = $"bench-model-{Guid.NewGuid():N}"[..20];
            var configPath = Path.Combine(models, PretrainedModels.TextDetector, ModelRepository.ConfigFile);
            var config = await File.ReadAllTextAsync(configPath);
            config = System.Text.RegularExpressions.Regex.Replace(config, @"\ninstances: .*", string.Empty);
            await File.WriteAllTextAsync(configPath, System.Text.RegularExpressions.Regex.Replace(config, @"batching: .*", $"batching: {{ max_batch_size: {batch}, max_queue_delay_ms: 2, adaptive: {(adaptive ? "true" : "false")} }}\ninstances: {instances}"));
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
                Queues = { ["gpu-bench"] = new QueueOptions { Role = TspRoles.Gpu, RouteesPerMember = 1, SlotsPerRoutee = 4 * batch * instances } },
            };
            var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
            builder.Services.AddTspServices(tsp);
            builder.Services.AddAkka(TspHostingExtensions.SystemName, (akka, _) =>
            {
                akka.ConfigureLoggers(l => l.LogLevel = Akka.Event.LogLevel.WarningLevel);
                akka.AddTsp(tsp);
            });
            var host = builder.Build();
            await host.StartAsync();
            await host.Services.GetRequiredService<NodeQueues>().WaitForRouteesAsync(TimeSpan.FromSeconds(30));
            var system = host.Services.GetRequiredService<Akka.Actor.ActorSystem>();
            var (subscriber, results) = await ResultSubscriptions.SubscribeAsync(system, project, TimeSpan.FromSeconds(30));
            var frames = images.Select(i => ByteString.CopyFrom(i.ToByteArray())).ToList();
            return new TspModelHost(host, workflow, project, batch, 4 * batch * instances, host.Services.GetRequiredService<RunSubmitter>(), subscriber, results, frames);
        }

        /// <summary>Runs <paramref name="count"/> images, 4·B per instance in flight, submitted concurrently (a
        /// submission waits for its run to be durable).</summary>
        /// <returns>Images/s, the median time ONNX Runtime took per full batch, and the batch limit
        /// most results of the second half ran under.</returns>
        public async Task<(double Rate, double InferenceMs, int Limit)> MeasureAsync(int count)
        {
            var inference = new List<double>();
            var limits = new List<int>();
            var clock = Stopwatch.StartNew();
            using var slots = new SemaphoreSlim(_inFlight);
            var consumer = Task.Run(async () =>
            {
                for (var received = 0; received < count; received++)
                {
                    var result = await _results.ReadAsync();
                    slots.Release();
                    if (result.Status != RunStatus.Succeeded)
                    {
                        throw new InvalidOperationException($"run {result.RunId} failed: {result.Error}");
                    }

                    if (received >= count / 2)
                    {
                        limits.Add((int)result.Nodes[0].Metrics.GetValueOrDefault("batch_limit"));
                    }

                    if (result.Nodes[0].Metrics.GetValueOrDefault("batch") == _batch)
                    {
                        inference.Add(result.Nodes[0].Metrics["inference_ms"]);
                    }
                }
            });
            var submissions = new List<Task>(count);
            for (var i = 0; i < count; i++)
            {
                await slots.WaitAsync();
                submissions.Add(_submitter.SubmitAsync(new Frame { Project = _project, Data = _frames[i % _frames.Count] }));
            }

            await Task.WhenAll(submissions);
            await consumer;
            return (count / clock.Elapsed.TotalSeconds, inference.Count > 0 ? Median(inference) : double.NaN, limits.GroupBy(l => l).MaxBy(g => g.Count())?.Key ?? 0);
        }

        /// <summary>The batcher's compute ms per row by batch size, e.g. <c>1:14.2/2:15.0/4:15.3</c>.</summary>
        public string BatchCosts() =>
            _host.Services.GetRequiredService<OnnxModels>().Loaded is [{ Batching: { } batching }, ..]
                ? string.Join('/', batching.Costs.Select(c => string.Create(CultureInfo.InvariantCulture, $"{c.Rows}:{c.MsPerRow:0.0}")))
                : "";

        public async ValueTask DisposeAsync()
        {
            var redis = _host.Services.GetRequiredService<TspOptions>().Redis;
            _host.Services.GetRequiredService<Akka.Actor.ActorSystem>().Stop(_subscriber);
            await _host.StopAsync();
            _host.Dispose();
            File.Delete(_workflow);
            await BenchRedis.DeleteProjectAsync(redis, _project);
        }
    }

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted[sorted.Count / 2];
    }
}
