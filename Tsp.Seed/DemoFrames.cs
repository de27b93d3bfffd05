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

    /// <summary>How well the project did on the frames fed so far, where the frames have a ground
    /// truth; frames without a result count as misses. Null for frames without one.</summary>
    InspectionScore? Score();
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

    public InspectionScore? Score() => null;
}

/// <summary>
/// Generated surface images, half of them defective, whose ground truth the demo keeps until their
/// result comes, and scores with <see cref="InspectionScore"/>.
/// </summary>
internal sealed class InspectionFrames : IDemoFrames
{
    public const int FirstSeed = 100_000;
    private readonly Dictionary<string, SurfaceImage> _awaited = new(StringComparer.Ordinal);
    private readonly InspectionScore _score = new();

    public (byte[] Data, string SourceId) Frame(int index)
    {
        var image = SurfaceImages.Generate(FirstSeed + index, defective: index % 2 == 1, SurfaceImages.KindOf(index));
        var source = $"frame-{index}";
        lock (_awaited)
        {
            _awaited[source] = image;
        }

        return (image.Png, source);
    }

    public void Judge(TpResult result)
    {
        SurfaceImage? image;
        lock (_awaited)
        {
            _awaited.Remove(result.SourceId, out image);
        }

        if (image is not null)
        {
            _score.Add(image, result);
        }
    }

    public InspectionScore Score()
    {
        List<SurfaceImage> missing;
        lock (_awaited)
        {
            missing = [.. _awaited.Values];
            _awaited.Clear();
        }

        foreach (var image in missing)
        {
            _score.Add(image, null);
        }

        return _score;
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
