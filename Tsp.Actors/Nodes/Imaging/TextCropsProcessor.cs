using Google.Protobuf;
using SkiaSharp;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;

namespace Tsp.Actors.Nodes.Imaging;

/// <summary>
/// <c>text.crops</c>: cuts each text region a detector found out of the run's frame as an upright
/// line — a perspective-correct crop of its polygon (or box), turned when taller than wide — resizes
/// it to the recogniser's height keeping its aspect ratio, and pads the lines to one width: one batch
/// [N,3,height,W] for a recognition model, as PaddleOCR feeds its recogniser. W is the widest line,
/// at least <c>width</c>, rounded up to 32 so that lines of other runs usually share it and batch
/// together. The set's regions say which detection each line is.
/// The node lists <c>frame</c> and the detector's node in 'after'. Parameters: from (the detections'
/// node; default the only parent), label (only detections of this label), height (48), width (320),
/// max_width (1280), order (bgr, as PaddleOCR's models are trained, or rgb), max_crops (64),
/// max_pixels (as image.normalize). Pixels become (v/255 − 0.5) / 0.5; the padding is 0.
/// </summary>
public sealed class TextCropsProcessor : INodeProcessor, INodeContract
{
    public const string ProcessorName = "text.crops";
    public const string TensorName = "x";

    public string Name => ProcessorName;

    public (IReadOnlyList<TensorSpec>? Outputs, IReadOnlyList<string> Errors) Check(NodeSettings node, IReadOnlyList<NodeInputSpec> inputs)
    {
        var errors = new List<string>();
        if (!inputs.Any(i => i.Parent == RedisKeys.FrameNodeId))
        {
            errors.Add($"needs the run's frame: list '{RedisKeys.FrameNodeId}' in its 'after'");
        }

        var parents = inputs.Where(i => i.Parent != RedisKeys.FrameNodeId).ToList();
        var from = node.Parameters.GetValueOrDefault("from");
        if (from is null ? parents.Count != 1 : parents.All(p => p.Parent != from))
        {
            errors.Add($"takes the detections of one parent: name it with parameter 'from' (parents: {string.Join(", ", parents.Select(p => p.Parent))})");
        }

        try
        {
            var settings = Settings.From(node.Parameters, node.Id);
            return ([new TensorSpec(TensorName, [-1, 3, settings.Height, -1])], errors);
        }
        catch (NodeInputException e)
        {
            errors.Add(e.Message.Replace($"node '{node.Id}': ", "", StringComparison.Ordinal));
            return (null, errors);
        }
    }

    public Task<NodeOutput> ProcessAsync(NodeInvocation invocation, CancellationToken cancellationToken)
    {
        var settings = Settings.From(invocation.Parameters, invocation.NodeId);
        var frame = invocation.Inputs.FirstOrDefault(i => i.NodeId == RedisKeys.FrameNodeId)
            ?? throw new NodeInputException($"node '{invocation.NodeId}' has no frame input: list '{RedisKeys.FrameNodeId}' in its 'after'");
        var from = invocation.Parameters.GetValueOrDefault("from");
        var parent = invocation.Inputs.Where(i => i.NodeId != RedisKeys.FrameNodeId && (from is null || i.NodeId == from)).ToList() is { Count: 1 } one
            ? one[0]
            : throw new NodeInputException($"node '{invocation.NodeId}': no single detections input{(from is null ? "; name it with parameter 'from'" : $" from '{from}'")}");
        DetectionList found;
        try
        {
            found = DetectionList.Parser.ParseFrom(parent.Data.Span);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new NodeInputException($"node '{invocation.NodeId}': input from '{parent.NodeId}' is not a detection list: {e.Message}", e);
        }

        var label = invocation.Parameters.GetValueOrDefault("label");
        // A region thinner than a pixel has nothing to read (and no transform onto a line).
        var picked = found.Detections
            .Where(d => label is null || d.Label == label)
            .Select(d => (Region: d, Line: Upright(Quads.FromPolygon(d.Polygon) ?? Corners(d.Box))))
            .Where(c => Quads.Width(c.Line) >= 1 && Quads.Height(c.Line) >= 1)
            .OrderByDescending(c => c.Region.Score)
            .Take(settings.MaxCrops)
            .ToList();
        var (regions, lines) = (picked.Select(p => p.Region).ToList(), picked.Select(p => p.Line).ToList());
        using var image = ImageNormalizeProcessor.Decode(frame.Data, settings.MaxPixels);
        using var source = SKImage.FromBitmap(image);
        var widths = lines.Select(q => Math.Clamp((int)Math.Ceiling(settings.Height * Quads.Width(q) / Math.Max(1f, Quads.Height(q))), 1, settings.MaxWidth)).ToList();
        var batchWidth = Math.Min(settings.MaxWidth, RoundUp(Math.Max(settings.Width, widths.DefaultIfEmpty(0).Max()), 32));
        var plane = settings.Height * batchWidth;
        var values = new float[regions.Count * 3 * plane];
        using var line = new SKBitmap(new SKImageInfo(settings.MaxWidth, settings.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        using var canvas = new SKCanvas(line);
        using var paint = new SKPaint();
        var sampling = new SKSamplingOptions(SKFilterMode.Linear, SKMipmapMode.Linear);
        for (var i = 0; i < lines.Count; i++)
        {
            var width = widths[i];
            canvas.Clear(SKColors.Black);
            canvas.Save();
            canvas.SetMatrix(Quads.Perspective(lines[i], [new(0, 0), new(width, 0), new(width, settings.Height), new(0, settings.Height)]));
            canvas.DrawImage(source, 0, 0, sampling, paint);
            canvas.Restore();
            canvas.Flush();
            var pixels = line.GetPixelSpan();
            var chw = values.AsSpan(i * 3 * plane, 3 * plane);
            var (first, last) = settings.Bgr ? (2, 0) : (0, 2);
            for (var y = 0; y < settings.Height; y++)
            {
                for (var x = 0; x < width; x++)
                {
                    var o = ((y * settings.MaxWidth) + x) * 4;
                    var p = (y * batchWidth) + x;
                    chw[p] = (pixels[o + first] / 127.5f) - 1;
                    chw[plane + p] = (pixels[o + 1] / 127.5f) - 1;
                    chw[(2 * plane) + p] = (pixels[o + last] / 127.5f) - 1;
                }
            }
        }

        var set = new TensorSet { SourceWidth = image.Width, SourceHeight = image.Height };
        set.Tensors.Add(TensorSets.Create(TensorName, [regions.Count, 3, settings.Height, batchWidth], values));
        set.Regions.AddRange(regions);
        var output = new NodeOutput { Data = set.ToByteArray() };
        output.Metrics["crops"] = regions.Count;
        output.Metrics["crop_width"] = batchWidth;
        return Task.FromResult(output);
    }

    private static int RoundUp(int value, int step) => (value + step - 1) / step * step;

    private static SKPoint[] Corners(Box box) =>
        [new(box.X, box.Y), new(box.X + box.Width, box.Y), new(box.X + box.Width, box.Y + box.Height), new(box.X, box.Y + box.Height)];

    /// <summary>A line taller than 1.5 × its width is vertical text: read it turned a quarter to the
    /// left (its top-right corner first), as PaddleOCR does.</summary>
    private static SKPoint[] Upright(SKPoint[] quad) =>
        Quads.Height(quad) >= 1.5f * Quads.Width(quad) ? [quad[1], quad[2], quad[3], quad[0]] : quad;

    private sealed record Settings(int Height, int Width, int MaxWidth, bool Bgr, int MaxCrops, long MaxPixels)
    {
        public static Settings From(IReadOnlyDictionary<string, string> parameters, string nodeId)
        {
            int Int(string name, int fallback, int min, int max) =>
                !parameters.TryGetValue(name, out var text) ? fallback
                : int.TryParse(text, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var value) && value >= min && value <= max ? value
                : throw new NodeInputException($"node '{nodeId}': parameter '{name}' = '{text}' is not a whole number from {min} to {max}");

            var order = parameters.GetValueOrDefault("order") ?? "bgr";
            if (order is not ("bgr" or "rgb"))
            {
                throw new NodeInputException($"node '{nodeId}': parameter 'order' = '{order}' is not bgr or rgb");
            }

            var image = ImageSettings.From(parameters.Where(p => p.Key == "max_pixels").ToDictionary(), nodeId);
            var (height, width) = (Int("height", 48, 8, 256), Int("width", 320, 8, 4096));
            var maxWidth = Int("max_width", Math.Max(1280, width), width, 8192);
            return new Settings(height, width, maxWidth, order == "bgr", Int("max_crops", 64, 1, 1024), image.MaxPixels);
        }
    }
}
