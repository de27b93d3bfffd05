using System.Globalization;
using Google.Protobuf;
using Tsp.Actors.Nodes;
using Tsp.Actors.Nodes.Imaging;
using Tsp.Actors.Nodes.Onnx;
using Tsp.Actors.Nodes.Training;
using Tsp.Actors.Protocol;
using Tsp.ServiceDefaults.Samples;

namespace Tsp.Bench;

/// <summary>
/// <c>quality</c>: the rail-inspection anomaly path (image.normalize → onnx → map.regions, the
/// sample's parameters) trained on 40 good images and scored on --messages held-out generated
/// images, half defective, steel and concrete. Figures: image-level AUROC (score = the anomaly map's
/// maximum), region recall (ground-truth defects overlapped by a box), false alarms (good images with
/// a box).
/// </summary>
internal static class QualityScenario
{
    public static async Task<int> RunAsync(BenchOptions options)
    {
        var root = Path.Combine(Path.GetTempPath(), $"tsp-bench-quality-{Environment.ProcessId}");
        var repository = new ModelRepository(root);
        var image = new Dictionary<string, string> { ["width"] = "256", ["height"] = "256" };
        NodeInvocation Call(string node, IReadOnlyDictionary<string, string> parameters, byte[] input) =>
            new("bench", "quality", node, 1, parameters, [new NodeBlob("in", "key", input)]);
        SurfaceKind Kind(int i) => i % 3 == 2 ? SurfaceKind.Concrete : SurfaceKind.Steel;

        var training = new TrainingSet();
        training.Images.AddRange(Enumerable.Range(1, 40).Select(i => ByteString.CopyFrom(SurfaceImages.Generate(i, false, Kind(i)).Png)));
        var fit = await new FitNormalProcessor().ProcessAsync(Call("fit", image, training.ToByteArray()), CancellationToken.None);
        await new ExportOnnxProcessor(repository).ProcessAsync(Call("export", new Dictionary<string, string> { ["model"] = "rail-anomaly" }, fit.Data.ToArray()), CancellationToken.None);
        using var models = new OnnxModels(repository, new OnnxOptions { ExecutionProvider = "cpu" }, preferCuda: false);
        var (normalize, onnx, regions) = (new ImageNormalizeProcessor(), new OnnxProcessor(models), new MapRegionsProcessor());

        var scores = new List<(bool Defective, double Score)>();
        var (defects, found, falseAlarms) = (0, 0, 0);
        for (var i = 0; i < options.Messages; i++)
        {
            var sample = SurfaceImages.Generate(1_000_000 + i, defective: i % 2 == 0, Kind(i));
            var tensors = await normalize.ProcessAsync(Call("pre", image, sample.Png), CancellationToken.None);
            var map = await onnx.ProcessAsync(Call("anomaly", new Dictionary<string, string> { ["model"] = "rail-anomaly" }, tensors.Data.ToArray()), CancellationToken.None);
            var boxes = await regions.ProcessAsync(Call("defects", new Dictionary<string, string> { ["threshold"] = "1.0", ["min_area"] = "2" }, map.Data.ToArray()), CancellationToken.None);
            scores.Add((sample.Defective, boxes.Metrics["max_score"]));
            defects += sample.Defects.Count;
            found += sample.Defects.Count(d => boxes.Detections.Any(b => Regions.IntersectionOverUnion(b.Box, d.Box) > 0));
            falseAlarms += !sample.Defective && boxes.Detections.Count > 0 ? 1 : 0;
        }

        var figures = string.Create(CultureInfo.InvariantCulture,
            $"auroc={Metrics.Auroc(scores):0.000} recall={found / (double)defects:0.000} false_alarm_rate={falseAlarms / (options.Messages / 2.0):0.000}");
        Console.WriteLine($"quality: {figures} images={options.Messages} defects={defects}");
        Results.Record(options, $"bench/run.sh quality --messages {options.Messages}", figures,
            $"trained on 40 good images; {options.Messages} held-out images, half defective ({defects} defects), steel and concrete; threshold 1.0");
        Directory.Delete(root, recursive: true);
        return 0;
    }
}
