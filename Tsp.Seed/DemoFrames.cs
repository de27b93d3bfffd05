using System.Globalization;
using Google.Protobuf;
using Tsp.Actors.Nodes.Imaging;
using Tsp.Actors.Nodes.Onnx;
using Tsp.Actors.Nodes.Training;
using Tsp.Actors.Protocol;
using Tsp.ServiceDefaults.Samples;
using Tsp.Actors.Workflows;

namespace Tsp.Seed;

/// <summary>What the demo feeds a project and how it judges the results.</summary>
internal interface IDemoFrames
{
    (byte[] Data, string SourceId) Frame(int index);

    void Judge(TpResult result);

    /// <summary>Extra figures for the summary line (e.g. " auroc=0.98 recall=0.95"), or "".</summary>
    string Figures { get; }

    (double? Auroc, double? Recall) Quality { get; }
}

/// <summary>Random bytes, for workflows of the built-in test processors.</summary>
internal sealed class RandomFrames(int size) : IDemoFrames
{
    private readonly Random _random = new(42);

    public (byte[] Data, string SourceId) Frame(int index)
    {
        var data = new byte[size];
        _random.NextBytes(data);
        return (data, $"camera-{index % 4}");
    }

    public void Judge(TpResult result)
    {
    }

    public string Figures => "";

    public (double? Auroc, double? Recall) Quality => (null, null);
}

/// <summary>
/// Generated surface images, half of them defective, whose ground truth the demo keeps: the image
/// score is the anomaly map's maximum (metric max_score of the node that draws defect boxes), a
/// defect counts as found when a "defect" box overlaps it.
/// </summary>
internal sealed class InspectionFrames : IDemoFrames
{
    public const int FirstSeed = 100_000;
    private readonly Dictionary<string, SurfaceImage> _truth = new(StringComparer.Ordinal);
    private readonly List<(bool Defective, double Score)> _scores = [];
    private int _defects;
    private int _found;

    public (byte[] Data, string SourceId) Frame(int index)
    {
        var image = SurfaceImages.Generate(FirstSeed + index, defective: index % 2 == 1, index % 3 == 2 ? SurfaceKind.Concrete : SurfaceKind.Steel);
        var source = $"frame-{index}";
        lock (_truth)
        {
            _truth[source] = image;
        }

        return (image.Png, source);
    }

    public void Judge(TpResult result)
    {
        SurfaceImage? image;
        lock (_truth)
        {
            _truth.TryGetValue(result.SourceId, out image);
        }

        var scored = result.Nodes.FirstOrDefault(n => n.Metrics.ContainsKey("max_score") && result.Detections.Any(d => d.NodeId == n.NodeId && d.Label == "defect"))
            ?? result.Nodes.FirstOrDefault(n => n.NodeId == "defects");
        if (image is null || result.Status != RunStatus.Succeeded || scored is null)
        {
            return;
        }

        lock (_scores)
        {
            _scores.Add((image.Defective, scored.Metrics["max_score"]));
            _defects += image.Defects.Count;
            _found += image.Defects.Count(d => result.Detections.Any(f => f.Label == "defect" && Regions.IntersectionOverUnion(f.Box, d) > 0));
        }
    }

    public (double? Auroc, double? Recall) Quality
    {
        get
        {
            lock (_scores)
            {
                return (Metrics.Auroc(_scores), _defects == 0 ? null : _found / (double)_defects);
            }
        }
    }

    public string Figures => Quality is ({ } auroc, { } recall)
        ? string.Create(CultureInfo.InvariantCulture, $" auroc={auroc:0.000} recall={recall:0.000}")
        : "";

    /// <summary>The training run's frame: good images the demo never feeds for inspection.</summary>
    public static TrainingSet TrainingSet(int images)
    {
        var set = new TrainingSet();
        set.Images.AddRange(Enumerable.Range(1, images).Select(i => ByteString.CopyFrom(SurfaceImages.Generate(i, defective: false, i % 3 == 2 ? SurfaceKind.Concrete : SurfaceKind.Steel).Png)));
        return set;
    }

    /// <summary>The training project that exports a model the inspection project uses, if deployed.</summary>
    public static (WorkflowDefinition Inspection, WorkflowDefinition Training, string Model)? Find(WorkflowCatalog catalog)
    {
        foreach (var training in catalog.All)
        {
            var export = training.Nodes.FirstOrDefault(n => n.Processor == ExportOnnxProcessor.ProcessorName);
            if (export?.Parameters.GetValueOrDefault("model") is not { } model)
            {
                continue;
            }

            var inspection = catalog.All.FirstOrDefault(w => w.Nodes.Any(n => n.Processor == OnnxProcessor.ProcessorName && n.Parameters.GetValueOrDefault("model") == model));
            if (inspection is not null)
            {
                return (inspection, training, model);
            }
        }

        return null;
    }
}
