using Google.Protobuf;
using Tsp.Actors.Nodes;
using Tsp.Actors.Nodes.Imaging;
using Tsp.Actors.Nodes.Onnx;
using Tsp.Actors.Nodes.Training;
using Tsp.Actors.Protocol;
using Tsp.ServiceDefaults.Samples;
using Xunit.Abstractions;

namespace Tsp.Actors.Tests.Nodes;

/// <summary>Training as nodes: fit on good generated images, export to the repository, serve it, and
/// check that it separates defective from good images it never saw.</summary>
public sealed class TrainingTests(ITestOutputHelper output) : NodeTests
{
    private static readonly Dictionary<string, string> Image = new() { ["width"] = "256", ["height"] = "256" };
    internal static async Task<int> TrainAsync(ModelRepository repository, string model, int images, int seed = 1000, string runId = "train-1")
    {
        var set = new TrainingSet();
        set.Images.AddRange(Enumerable.Range(seed, images).Select(i => ByteString.CopyFrom(SurfaceImages.Generate(i, defective: false).Png)));
        var fit = await new FitNormalProcessor().ProcessAsync(InvocationOf(runId, "fit", Image, ("frame", set.ToByteArray())), CancellationToken.None);
        var export = await new ExportOnnxProcessor(repository).ProcessAsync(InvocationOf(runId, "export", new Dictionary<string, string> { ["model"] = model }, ("fit", fit.Data.ToArray())), CancellationToken.None);
        return int.Parse(export.ModelVersion, System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task A_trained_model_separates_defective_from_good_images_it_never_saw()
    {
        var repository = new ModelRepository(ModelRoot);
        Assert.Equal(1, await TrainAsync(repository, "rail-anomaly", images: 40));
        using var models = new OnnxModels(repository, new OnnxOptions { ExecutionProvider = "cpu" }, preferCuda: false);
        var onnx = new OnnxProcessor(models);
        var regions = new MapRegionsProcessor();
        var normalize = new ImageNormalizeProcessor();

        var scored = new List<(bool Defective, double Score, bool Found)>();
        for (var i = 0; i < 60; i++)
        {
            var image = SurfaceImages.Generate(50_000 + i, defective: i % 2 == 0);
            var tensors = await normalize.ProcessAsync(Invocation("pre", Image, ("frame", image.Png)), CancellationToken.None);
            var map = await onnx.ProcessAsync(Invocation("anomaly", new Dictionary<string, string> { ["model"] = "rail-anomaly" }, ("pre", tensors.Data.ToArray())), CancellationToken.None);
            Assert.Equal(("rail-anomaly", "1"), (map.ModelName, map.ModelVersion));
            var found = await regions.ProcessAsync(Invocation("defects", new Dictionary<string, string> { ["threshold"] = "1.0", ["min_area"] = "2" }, ("anomaly", map.Data.ToArray())), CancellationToken.None);
            var hit = image.Defects.Count > 0 && image.Defects.All(d => found.Detections.Any(f => Regions.IntersectionOverUnion(f.Box, d.Box) > 0));
            scored.Add((image.Defective, found.Metrics["max_score"], hit));
        }

        var auroc = Metrics.Auroc(scored.Select(s => (s.Defective, s.Score)));
        var recall = scored.Where(s => s.Defective).Average(s => s.Found ? 1.0 : 0.0);
        output.WriteLine($"auroc={auroc:0.000} recall={recall:0.000}");
        Assert.True(auroc >= 0.9, $"AUROC {auroc:0.000} on held-out images");
        Assert.True(recall >= 0.7, $"region recall {recall:0.000}");

        // The same run exported again (a retry) reuses its version; another run adds one.
        Assert.Equal(1, await TrainAsync(repository, "rail-anomaly", images: 10, seed: 2000));
        Assert.Equal(2, await TrainAsync(repository, "rail-anomaly", images: 10, seed: 2000, runId: "train-2"));
        Assert.Equal([1, 2], repository.Versions("rail-anomaly"));
    }
}
