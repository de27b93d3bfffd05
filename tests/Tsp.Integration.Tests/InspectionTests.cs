using Akka.Actor;
using Google.Protobuf;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Tsp.Actors.Hosting;
using Tsp.Actors.Ingest;
using Tsp.Actors.Nodes.Onnx;
using Tsp.Actors.Northbound;
using Tsp.Actors.Protocol;
using Tsp.ServiceDefaults.Samples;
using Tsp.Tests.Shared;

namespace Tsp.Integration.Tests;

/// <summary>The AI path inside a whole TSP: training runs as a workflow, its model is served by
/// the inspection workflow's routees, and a retrained version replaces it while frames keep flowing.</summary>
[Collection(ClusterCollection.Name)]
public sealed class InspectionTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);
    private readonly string _project = TestServers.Unique("rail");
    private readonly string _models = Path.Combine(Path.GetTempPath(), "tsp-tests", TestServers.Unique("models"));
    private IHost _host = null!;

    private string Training => _project + "-train";

    public async Task InitializeAsync()
    {
        var inspection = TestServers.WriteWorkflow($$"""
            project: {{_project}}
            nodes:
              - { id: pre, processor: image.normalize, role: cpu, queue: cpu-short, params: { width: 256, height: 256 } }
              - { id: anomaly, processor: onnx, role: gpu, queue: gpu-models, after: [pre], params: { model: anomaly } }
              - { id: defects, processor: map.regions, role: cpu, queue: cpu-short, after: [anomaly], params: { threshold: "1.0", min_peak: "1.4", box_fraction: "0.6", min_area: 3 } }
            """);
        var training = TestServers.WriteWorkflow($$"""
            project: {{Training}}
            defaults: { timeout: 5m }
            nodes:
              - { id: fit, processor: train.fit-normal, role: cpu, queue: cpu-long, params: { width: 256, height: 256 } }
              - { id: export, processor: train.export-onnx, role: cpu, queue: cpu-long, after: [fit], params: { model: anomaly } }
            """);
        _host = await TestServers.StartHostAsync(new TspOptions
        {
            Redis = TestServers.Redis,
            SqlitePath = TestServers.TempSqlitePath(),
            Workflows = [inspection, training],
            Onnx = new OnnxOptions { Repository = _models, ExecutionProvider = "cpu", ReloadInterval = TimeSpan.FromMilliseconds(200) },
        });
    }

    public async Task DisposeAsync()
    {
        await _host.StopAsync();
        _host.Dispose();
    }

    private async Task<TpResult> TrainAsync(int firstSeed, int images)
    {
        var set = new TrainingSet();
        set.Images.AddRange(Enumerable.Range(firstSeed, images).Select(i => ByteString.CopyFrom(SurfaceImages.Generate(i, defective: false).Png)));
        var (subscriber, results) = await ResultSubscriptions.SubscribeAsync(_host.System(), Training, Timeout);
        try
        {
            var accepted = await _host.Services.GetRequiredService<RunSubmitter>().SubmitAsync(new Frame { Project = Training, Data = set.ToByteString() });
            Assert.Equal(StartOutcome.Accepted, accepted.Outcome);
            using var deadline = new CancellationTokenSource(Timeout);
            TpResult result;
            while ((result = await results.ReadAsync(deadline.Token)).RunId != accepted.RunId)
            {
            }

            return result;
        }
        finally
        {
            _host.System().Stop(subscriber);
        }
    }

    [Fact]
    public async Task A_model_trained_by_a_workflow_serves_inspection_and_a_retrained_version_takes_over_without_a_failed_run()
    {
        var first = await TrainAsync(1, 20);
        Assert.Equal(RunStatus.Succeeded, first.Status);
        Assert.Equal(("anomaly", "1"), (first.Nodes[1].ModelName, first.Nodes[1].ModelVersion));

        var (subscriber, results) = await ResultSubscriptions.SubscribeAsync(_host.System(), _project, Timeout);
        var submitter = _host.Services.GetRequiredService<RunSubmitter>();
        var submitted = new List<(string RunId, SurfaceImage Image)>();
        using var deadline = new CancellationTokenSource(Timeout);
        var seen = new Dictionary<string, TpResult>(StringComparer.Ordinal);
        Task<TpResult>? retrained = null;
        // Frames keep coming while version 2 is trained, exported, loaded and switched to.
        for (var i = 0; i < 400 && !(retrained is { IsCompleted: true } && seen.Values.Any(r => r.Nodes[1].ModelVersion == "2")); i++)
        {
            var image = SurfaceImages.Generate(10_000 + i, defective: i % 2 == 0);
            var accepted = await submitter.SubmitAsync(new Frame { Project = _project, SourceId = $"f{i}", Data = ByteString.CopyFrom(image.Png) });
            submitted.Add((accepted.RunId, image));
            if (i == 10)
            {
                retrained = TrainAsync(100, 20);
            }

            while (submitted.Count - seen.Count > 8)
            {
                var result = await results.ReadAsync(deadline.Token);
                seen[result.RunId] = result;
            }
        }

        while (seen.Count < submitted.Count)
        {
            var result = await results.ReadAsync(deadline.Token);
            seen[result.RunId] = result;
        }

        _host.System().Stop(subscriber);
        Assert.NotNull(retrained);
        Assert.Equal(RunStatus.Succeeded, (await retrained).Status);
        Assert.All(seen.Values, result => Assert.Equal(RunStatus.Succeeded, result.Status));
        var versions = seen.Values.Select(v => v.Nodes.Single(n => n.NodeId == "anomaly").ModelVersion).ToHashSet();
        Assert.Equal(["1", "2"], versions.Order());
        // Defective frames get defect boxes, good ones (mostly) none.
        var defective = submitted.Where(s => s.Image.Defective).Select(s => seen[s.RunId]).ToList();
        Assert.True(defective.Count(d => d.Detections.Any(x => x.Label == "defect")) >= defective.Count * 0.8);
        var good = submitted.Where(s => !s.Image.Defective).Select(s => seen[s.RunId]).ToList();
        Assert.True(good.Count(g => g.Detections.Count == 0) >= good.Count * 0.8);
    }
}
