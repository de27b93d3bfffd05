using Microsoft.Extensions.Logging;
using Tsp.Actors.Nodes;
using Tsp.Actors.Nodes.Onnx;

namespace Tsp.Actors.Tests.Nodes;

/// <summary>Real ONNX Runtime (CPU provider) on models written by <see cref="OnnxGraph"/>.</summary>
public sealed class OnnxModelsTests : NodeTests
{
    /// <summary>y = x · scale + 1 on [N,4]; each version a different scale, so results tell versions apart.</summary>
    /// <param name="adaptive">Whether the batch size is chosen while serving; off by default here, so that
    /// tests of batching itself get the batches their load makes.</param>
    internal static void WriteAffineModel(string root, string name, int version, float scale, int maxBatch = 8, int delayMs = 5, int instances = 1, bool adaptive = false)
    {
        var folder = Path.Combine(root, name, version.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(root, name, ModelRepository.ConfigFile), $$"""
            inputs: [{ name: x, shape: [-1, 4] }]
            outputs: [{ name: y, shape: [-1, 4] }]
            batching: { max_batch_size: {{maxBatch}}, max_queue_delay_ms: {{delayMs}}, adaptive: {{(adaptive ? "true" : "false")}} }
            instances: {{instances}}
            """);
        var model = new OnnxGraph(name)
            .Input("x", -1, 4)
            .Output("y", -1, 4)
            .Constant("scale", [1], [scale])
            .Constant("one", [1], [1f])
            .Node("Mul", ["x", "scale"], ["scaled"])
            .Node("Add", ["scaled", "one"], ["y"])
            .ToModel();
        // Written beside, then moved: a reader never sees half a model.
        File.WriteAllBytes(Path.Combine(folder, "model.tmp"), model);
        File.Move(Path.Combine(folder, "model.tmp"), Path.Combine(folder, ModelRepository.ModelFile));
    }

    private static Dictionary<string, TensorData> Input(int rows, float start) =>
        new() { ["x"] = new TensorData([rows, 4], Enumerable.Range(0, rows * 4).Select(i => start + i).ToArray()) };

    [Fact]
    public async Task A_model_runs_on_the_CPU_provider_and_records_its_version()
    {
        WriteAffineModel(ModelRoot, "affine", 1, scale: 2);
        using var models = new OnnxModels(new ModelRepository(ModelRoot), new OnnxOptions { ExecutionProvider = "cpu" }, preferCuda: false);

        var result = await models.InferAsync("affine", null, Input(2, 0), CancellationToken.None);

        Assert.Equal(("affine", 1, "CPU"), (result.Model, result.Version, result.Provider));
        Assert.True(result.InferenceMs > 0, "the batch's inference time is measured");
        Assert.Equal([2L, 4], result.Outputs["y"].Dims);
        Assert.Equal(Enumerable.Range(0, 8).Select(i => (i * 2f) + 1), result.Outputs["y"].Values);
    }

    private static Tsp.Actors.Protocol.ModelRule Rule(string model, int pin = 0, bool unloaded = false) =>
        new() { Model = model, PinnedVersion = pin, Unloaded = unloaded, ChangedBy = "ops" };

    [Fact]
    public async Task An_operators_rules_pin_unload_and_load_a_model_and_the_index_says_why_each_version_is_or_is_not_served()
    {
        WriteAffineModel(ModelRoot, "ruled", 1, scale: 2);
        WriteAffineModel(ModelRoot, "ruled", 2, scale: 3);
        // No timer pass during the test: each rule takes effect through the pass ApplyRules runs.
        using var models = new OnnxModels(new ModelRepository(ModelRoot), new OnnxOptions { ExecutionProvider = "cpu", ReloadInterval = TimeSpan.FromHours(1) }, preferCuda: false);
        async Task<int> ServedAsync() => (await models.InferAsync("ruled", null, Input(1, 0), CancellationToken.None)).Version;
        Tsp.Actors.Protocol.ModelVersionStatus At(int version) => models.Index().Single(v => v.Model == "ruled" && v.Version == version);

        Assert.Equal(2, await ServedAsync());
        Assert.Equal(Tsp.Actors.Protocol.ModelVersionState.Ready, At(2).State);
        Assert.Equal("CPU", At(2).Provider);
        Assert.Equal((Tsp.Actors.Protocol.ModelVersionState.Unavailable, "not served: the latest version is served"), (At(1).State, At(1).Reason));

        await models.ApplyRules([Rule("ruled", pin: 1)]);
        Assert.Equal(1, await ServedAsync());
        Assert.Equal("not served: version 1 is pinned by ops", At(2).Reason);

        // A broken version pinned never replaces the served one, and the index says why.
        Directory.CreateDirectory(Path.Combine(ModelRoot, "ruled", "3"));
        File.WriteAllBytes(Path.Combine(ModelRoot, "ruled", "3", ModelRepository.ModelFile), [1, 2, 3, 4]);
        await models.ApplyRules([Rule("ruled", pin: 3)]);
        Assert.Equal(1, await ServedAsync());
        Assert.Equal(Tsp.Actors.Protocol.ModelVersionState.Unavailable, At(3).State);
        Assert.Contains("version 3", At(3).Reason, StringComparison.Ordinal);
        Assert.Contains("does not load", At(3).Reason, StringComparison.Ordinal);

        await models.ApplyRules([Rule("ruled", pin: 1, unloaded: true)]);
        var unloaded = await Assert.ThrowsAsync<ModelRepositoryException>(ServedAsync);
        Assert.Contains("'ruled' is unloaded (by ops)", unloaded.Message, StringComparison.Ordinal);
        Assert.Empty(models.Loaded);
        Assert.Equal("unloaded by ops", At(1).Reason);

        await models.ApplyRules([Rule("ruled", pin: 2)]);
        Assert.Equal(2, await ServedAsync());
    }

    [Fact]
    public async Task A_process_that_expects_rules_loads_nothing_before_they_arrive()
    {
        WriteAffineModel(ModelRoot, "waits", 1, scale: 2);
        WriteAffineModel(ModelRoot, "waits", 2, scale: 3);
        using var models = new OnnxModels(new ModelRepository(ModelRoot), new OnnxOptions { ExecutionProvider = "cpu", ReloadInterval = TimeSpan.FromHours(1) }, preferCuda: false);
        models.ExpectRules();

        var first = models.InferAsync("waits", null, Input(1, 0), CancellationToken.None);
        await models.ApplyRules([Rule("waits", pin: 1)]);

        Assert.Equal(1, (await first).Version);
        Assert.Equal([1], models.Loaded.Select(m => m.Version));
    }

    [Fact]
    public async Task Batched_outputs_equal_unbatched_ones()
    {
        WriteAffineModel(ModelRoot, "batched", 1, scale: 3, maxBatch: 16, delayMs: 50);
        WriteAffineModel(ModelRoot, "single", 1, scale: 3, maxBatch: 1, delayMs: 0);
        using var models = new OnnxModels(new ModelRepository(ModelRoot), new OnnxOptions { ExecutionProvider = "cpu" }, preferCuda: false);

        var requests = Enumerable.Range(0, 40).Select(i => Input(1 + (i % 3), i * 100)).ToList();
        var batched = await Task.WhenAll(requests.Select(r => models.InferAsync("batched", null, r, CancellationToken.None)));
        var single = await Task.WhenAll(requests.Select(r => models.InferAsync("single", null, r, CancellationToken.None)));

        for (var i = 0; i < requests.Count; i++)
        {
            Assert.Equal(single[i].Outputs["y"].Dims, batched[i].Outputs["y"].Dims);
            Assert.Equal(single[i].Outputs["y"].Values, batched[i].Outputs["y"].Values);
        }

        Assert.Contains(batched, r => r.BatchSize > 1);
        Assert.All(single, r => Assert.Equal(r.Outputs["y"].Batch, r.BatchSize));
    }

    [Fact]
    public async Task Adaptive_batching_measures_batch_sizes_under_load_reports_its_choice_and_keeps_every_batch_within_it()
    {
        WriteAffineModel(ModelRoot, "tuned", 1, scale: 3, maxBatch: 8, delayMs: 2, adaptive: true);
        using var models = new OnnxModels(new ModelRepository(ModelRoot), new OnnxOptions { ExecutionProvider = "cpu" }, preferCuda: false);

        var results = new List<InferenceResult>();
        for (var round = 0; round < 10; round++)
        {
            var requests = Enumerable.Range(0, 100).Select(i => Input(1, i)).ToList();
            var answers = await Task.WhenAll(requests.Select(r => Task.Run(() => models.InferAsync("tuned", null, r, CancellationToken.None))));
            for (var i = 0; i < requests.Count; i++)
            {
                Assert.Equal(requests[i]["x"].Values.Select(v => (v * 3f) + 1), answers[i].Outputs["y"].Values);
            }

            results.AddRange(answers);
        }

        Assert.All(results, r => Assert.InRange(r.BatchSize, 1, r.BatchLimit));
        var served = Assert.Single(models.Loaded);
        var choice = served.Batching!;
        Assert.True(choice.Adaptive);
        // A burst of 100 waiting requests lets every size be tried; the choice is the cheapest measured per row.
        Assert.Equal([1, 2, 4, 8], choice.Costs.Where(c => c.Samples >= BatchTuner.MinSamples).Select(c => c.Rows));
        var cheapest = choice.Costs.MinBy(c => c.MsPerRow)!;
        Assert.True(choice.Costs.Single(c => c.Rows == choice.Limit).MsPerRow <= cheapest.MsPerRow / 0.97, $"chose {choice.Limit} of {string.Join(", ", choice.Costs)}");
        Assert.Equal(choice.Limit > 1 ? TimeSpan.FromMilliseconds(2) : TimeSpan.Zero, choice.Delay);
    }

    [Fact]
    public async Task A_model_with_two_instances_runs_batches_on_both_and_answers_each_request_with_its_own_rows()
    {
        WriteAffineModel(ModelRoot, "twice", 1, scale: 3, maxBatch: 4, delayMs: 20, instances: 2);
        using var models = new OnnxModels(new ModelRepository(ModelRoot), new OnnxOptions { ExecutionProvider = "cpu" }, preferCuda: false);

        // Which idle session a request wakes is up to the scheduler (on a busy machine one session can
        // drain a whole burst), so bursts go in until both have answered, or the deadline fails it.
        var instances = new HashSet<int>();
        var batched = false;
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (instances.Count < 2 && DateTime.UtcNow < deadline)
        {
            var requests = Enumerable.Range(0, 200).Select(i => Input(1 + (i % 2), i * 10)).ToList();
            var results = await Task.WhenAll(requests.Select(r => Task.Run(() => models.InferAsync("twice", null, r, CancellationToken.None))));
            for (var i = 0; i < requests.Count; i++)
            {
                Assert.Equal(requests[i]["x"].Values.Select(v => (v * 3f) + 1), results[i].Outputs["y"].Values);
            }

            instances.UnionWith(results.Select(r => r.Instance));
            batched |= results.Any(r => r.BatchSize > 1);
        }

        // Both sessions took batches from the one queue.
        Assert.Equal([0, 1], instances.Order());
        Assert.True(batched, "requests were batched");
    }

    [Theory]
    [InlineData("0")]
    [InlineData("17")]
    [InlineData("two")]
    public async Task A_config_with_instances_out_of_range_is_refused_naming_the_line(string instances)
    {
        WriteAffineModel(ModelRoot, "wrong", 1, scale: 1);
        var config = Path.Combine(ModelRoot, "wrong", ModelRepository.ConfigFile);
        File.WriteAllText(config, File.ReadAllText(config).Replace("instances: 1", $"instances: {instances}", StringComparison.Ordinal));
        using var models = new OnnxModels(new ModelRepository(ModelRoot), new OnnxOptions { ExecutionProvider = "cpu" }, preferCuda: false);

        var error = await Assert.ThrowsAsync<ModelRepositoryException>(() => models.InferAsync("wrong", null, Input(1, 0), CancellationToken.None));

        Assert.Contains(config, error.Message, StringComparison.Ordinal);
        Assert.Contains($"line 4: instances '{instances}'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_bad_item_fails_alone_not_its_batch()
    {
        WriteAffineModel(ModelRoot, "affine", 1, scale: 2, maxBatch: 16, delayMs: 50);
        using var models = new OnnxModels(new ModelRepository(ModelRoot), new OnnxOptions { ExecutionProvider = "cpu" }, preferCuda: false);

        var good = Enumerable.Range(0, 6).Select(i => models.InferAsync("affine", null, Input(1, i), CancellationToken.None)).ToList();
        // Declares [1,4] but carries 3 values: ONNX Runtime refuses it.
        var bad = models.InferAsync("affine", null, new Dictionary<string, TensorData> { ["x"] = new([1, 4], [1f, 2f, 3f]) }, CancellationToken.None);

        var error = await Assert.ThrowsAnyAsync<Exception>(() => bad);
        Assert.Contains("affine", error.Message, StringComparison.Ordinal);
        Assert.All(await Task.WhenAll(good), r => Assert.Equal(4, r.Outputs["y"].Values.Length));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task A_new_version_is_loaded_and_switched_to_under_load_without_failing_a_request(int instances)
    {
        WriteAffineModel(ModelRoot, "live", 1, scale: 2, instances: instances);
        using var models = new OnnxModels(new ModelRepository(ModelRoot), new OnnxOptions { ExecutionProvider = "cpu", ReloadInterval = TimeSpan.FromMilliseconds(100) }, preferCuda: false);
        Assert.Equal(1, await models.ServedVersionAsync("live"));

        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var seen = new System.Collections.Concurrent.ConcurrentBag<(int Version, float First)>();
        var load = Enumerable.Range(0, 4).Select(_ => Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested && !seen.Any(s => s.Version == 2))
            {
                var result = await models.InferAsync("live", null, Input(1, 1), CancellationToken.None);
                seen.Add((result.Version, result.Outputs["y"].Values[0]));
            }
        })).ToList();

        // The new version lands only once the old one has answered under this load.
        while (!seen.Any(s => s.Version == 1) && !stop.IsCancellationRequested)
        {
            await Task.WhenAny(Task.WhenAll(load), Task.Delay(10));
        }

        WriteAffineModel(ModelRoot, "live", 2, scale: 10, instances: instances);
        await Task.WhenAll(load);

        Assert.Contains(seen, s => s.Version == 1);
        Assert.Contains(seen, s => s.Version == 2);
        // Each answer comes from the version it names: 1·2+1 from v1, 1·10+1 from v2.
        Assert.All(seen, s => Assert.Equal(s.Version == 1 ? 3f : 11f, s.First));
        Assert.Equal(2, await models.ServedVersionAsync("live"));
        Assert.Equal(1, await models.ServedVersionAsync("live", pinnedVersion: 1));
    }

    [Fact]
    public async Task A_broken_new_version_under_load_fails_no_request_is_reported_once_and_a_later_good_one_is_served()
    {
        WriteAffineModel(ModelRoot, "steady", 1, scale: 2);
        var log = new ListLogger();
        using var models = new OnnxModels(new ModelRepository(ModelRoot), new OnnxOptions { ExecutionProvider = "cpu", ReloadInterval = TimeSpan.FromMilliseconds(50) }, preferCuda: false, log);
        Assert.Equal(1, await models.ServedVersionAsync("steady"));

        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        var seen = new System.Collections.Concurrent.ConcurrentBag<(int Version, float First)>();
        var load = Enumerable.Range(0, 4).Select(_ => Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested && !seen.Any(s => s.Version == 3))
            {
                var result = await models.InferAsync("steady", null, Input(1, 1), CancellationToken.None);
                seen.Add((result.Version, result.Outputs["y"].Values[0]));
            }
        })).ToList();

        // Version 2 is not an ONNX model at all.
        var broken = Path.Combine(ModelRoot, "steady", "2");
        Directory.CreateDirectory(broken);
        File.WriteAllBytes(Path.Combine(broken, ModelRepository.ModelFile), [0x08, 0x07, 0xff, 0x00, 0x13, 0x37]);
        await WaitUntilAsync(() => Warnings(log).Any(w => w.Contains("keeping version 1", StringComparison.Ordinal)), stop.Token);
        var passes = models.ReloadPasses;
        await WaitUntilAsync(() => models.ReloadPasses >= passes + 5, stop.Token);
        Assert.Equal(1, await models.ServedVersionAsync("steady"));

        WriteAffineModel(ModelRoot, "steady", 3, scale: 10);
        await Task.WhenAll(load);

        // Not one request failed; each answer is from the version it names; the broken one was reported
        // once, naming its file, though it was seen on every pass until version 3 came.
        Assert.Contains(seen, s => s.Version == 1);
        Assert.All(seen, s => Assert.Equal(s.Version == 1 ? 3f : 11f, s.First));
        Assert.DoesNotContain(seen, s => s.Version == 2);
        var warning = Assert.Single(Warnings(log), w => w.Contains("keeping version 1", StringComparison.Ordinal));
        Assert.Contains(Path.Combine(broken, ModelRepository.ModelFile), warning, StringComparison.Ordinal);
        Assert.Equal(3, await models.ServedVersionAsync("steady"));
    }

    private static List<string> Warnings(ListLogger log)
    {
        lock (log.Warnings)
        {
            return [.. log.Warnings];
        }
    }

    private static async Task WaitUntilAsync(Func<bool> condition, CancellationToken deadline)
    {
        while (!condition())
        {
            deadline.ThrowIfCancellationRequested();
            await Task.Delay(10, deadline);
        }
    }

    [Fact]
    public async Task Without_CUDA_the_cuda_provider_falls_back_to_CPU_with_one_warning_naming_the_problem()
    {
        WriteAffineModel(ModelRoot, "affine", 1, scale: 2);
        var log = new ListLogger();
        using var models = new OnnxModels(new ModelRepository(ModelRoot), new OnnxOptions { ExecutionProvider = "cuda" }, preferCuda: true, log);

        var result = await models.InferAsync("affine", null, Input(1, 0), CancellationToken.None);
        WriteAffineModel(ModelRoot, "other", 1, scale: 2);
        await models.InferAsync("other", null, Input(1, 0), CancellationToken.None);

        // This machine has no GPU: the CUDA provider cannot load its libraries.
        Assert.Equal("CPU", result.Provider);
        Assert.Equal([1f, 3, 5, 7], result.Outputs["y"].Values);
        var warning = Assert.Single(log.Warnings);
        Assert.Contains("CUDA execution provider unavailable", warning, StringComparison.Ordinal);
        Assert.True(warning.Contains(".so", StringComparison.Ordinal), warning);
        Assert.NotNull(models.CudaProblem);
    }

    [Fact]
    public async Task A_config_that_does_not_describe_the_model_is_refused_with_both_shapes()
    {
        WriteAffineModel(ModelRoot, "mismatch", 1, scale: 2);
        File.WriteAllText(Path.Combine(ModelRoot, "mismatch", ModelRepository.ConfigFile), """
            inputs: [{ name: x, shape: [-1, 8] }]
            outputs: [{ name: y, shape: [-1, 4] }]
            """);
        using var models = new OnnxModels(new ModelRepository(ModelRoot), new OnnxOptions { ExecutionProvider = "cpu" }, preferCuda: false);

        var error = await Assert.ThrowsAsync<ModelRepositoryException>(() => models.InferAsync("mismatch", null, Input(1, 0), CancellationToken.None));
        Assert.Contains("config.yaml says input x [-1,8], the model has [-1,4]", error.Message, StringComparison.Ordinal);
        var missing = await Assert.ThrowsAsync<ModelRepositoryException>(() => models.InferAsync("absent", null, Input(1, 0), CancellationToken.None));
        Assert.Contains("model 'absent' is not in the repository", missing.Message, StringComparison.Ordinal);
    }

    private sealed class ListLogger : ILogger
    {
        public List<string> Warnings { get; } = [];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (logLevel == LogLevel.Warning)
            {
                lock (Warnings)
                {
                    Warnings.Add(formatter(state, exception));
                }
            }
        }
    }
}
