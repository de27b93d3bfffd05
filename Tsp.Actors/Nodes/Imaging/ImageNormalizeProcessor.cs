using Google.Protobuf;
using System.Globalization;
using SkiaSharp;
using Tsp.Actors.Protocol;

namespace Tsp.Actors.Nodes.Imaging;

/// <summary>
/// <c>image.normalize</c>: decodes the run's frame (PNG or JPEG, via SkiaSharp), optionally cuts it
/// into a grid of tiles, resizes each to <c>width</c>×<c>height</c> and writes an NCHW float tensor
/// (<c>(pixel/255 − mean) / std</c> per channel) — the batch dimension holds the tiles.
/// Parameters: width, height (256), channels (3, or 1 for gray), mean, std ("0.485,0.456,0.406"
/// style; default 0 and 1), tensor (its name, "x"), tiles ("2x3"; default one), max_pixels (64e6).
/// </summary>
public sealed class ImageNormalizeProcessor : INodeProcessor, INodeContract
{
    public const string ProcessorName = "image.normalize";

    public string Name => ProcessorName;

    public (IReadOnlyList<TensorSpec>? Outputs, IReadOnlyList<string> Errors) Check(NodeSettings node, IReadOnlyList<NodeInputSpec> inputs)
    {
        try
        {
            var settings = ImageSettings.From(node.Parameters, node.Id);
            return ([new TensorSpec(settings.TensorName, settings.Dims)], []);
        }
        catch (NodeInputException e)
        {
            return (null, [e.Message.Replace($"node '{node.Id}': ", "", StringComparison.Ordinal)]);
        }
    }

    public Task<NodeOutput> ProcessAsync(NodeInvocation invocation, CancellationToken cancellationToken)
    {
        var settings = ImageSettings.From(invocation.Parameters, invocation.NodeId);
        var frame = invocation.Inputs.FirstOrDefault(i => i.NodeId == Storage.RedisKeys.FrameNodeId) ?? (invocation.Inputs.Count > 0 ? invocation.Inputs[0] : null)
            ?? throw new NodeInputException($"node '{invocation.NodeId}' has no input image");
        using var image = Decode(frame.Data, settings.MaxPixels);
        var set = settings.ToTensorSet(image);
        var output = new NodeOutput { Data = set.ToByteArray() };
        output.Metrics["image_width"] = image.Width;
        output.Metrics["image_height"] = image.Height;
        return Task.FromResult(output);
    }

    /// <exception cref="NodeInputException">Not a decodable PNG/JPEG, or more pixels than allowed.</exception>
    public static SKBitmap Decode(ReadOnlyMemory<byte> data, long maxPixels)
    {
        if (data.IsEmpty)
        {
            throw new NodeInputException("image is empty (0 bytes)");
        }

        using var skData = SKData.CreateCopy(data.Span);
        using var codec = SKCodec.Create(skData)
            ?? throw new NodeInputException($"image is not a decodable PNG or JPEG ({data.Length} bytes, starting {Convert.ToHexString(data.Span[..Math.Min(8, data.Length)])})");
        var (width, height) = (codec.Info.Width, codec.Info.Height);
        if ((long)width * height > maxPixels)
        {
            throw new NodeInputException($"image of {width}×{height} pixels ({(long)width * height:N0}) exceeds the maximum of {maxPixels:N0} pixels (parameter max_pixels)");
        }

        var info = new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var bitmap = new SKBitmap(info);
        var result = codec.GetPixels(info, bitmap.GetPixels());
        if (result is not (SKCodecResult.Success or SKCodecResult.IncompleteInput) || (result == SKCodecResult.IncompleteInput && data.Length < 64))
        {
            bitmap.Dispose();
            throw new NodeInputException($"image ({codec.EncodedFormat}, {width}×{height}) is corrupt: {result}");
        }

        if (result == SKCodecResult.IncompleteInput)
        {
            bitmap.Dispose();
            throw new NodeInputException($"image ({codec.EncodedFormat}, {width}×{height}) is truncated: its data ends before its last row");
        }

        return bitmap;
    }
}

/// <summary>How an image becomes a tensor; shared by the imaging node and training.</summary>
public sealed record ImageSettings(int Width, int Height, int Channels, float[] Mean, float[] Std, string TensorName, int TileRows, int TileCols, long MaxPixels)
{
    public static ImageSettings From(IReadOnlyDictionary<string, string> parameters, string nodeId)
    {
        int Int(string name, int fallback, int min, int max)
        {
            if (!parameters.TryGetValue(name, out var text))
            {
                return fallback;
            }

            return int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max
                ? value
                : throw new NodeInputException($"node '{nodeId}': parameter '{name}' = '{text}' is not a whole number from {min} to {max}");
        }

        var channels = Int("channels", 3, 1, 3);
        if (channels == 2)
        {
            throw new NodeInputException($"node '{nodeId}': parameter 'channels' must be 1 (gray) or 3 (RGB)");
        }

        float[] Floats(string name, float fallback)
        {
            if (!parameters.TryGetValue(name, out var text))
            {
                return Enumerable.Repeat(fallback, channels).ToArray();
            }

            var parts = text.Split(',', StringSplitOptions.TrimEntries);
            var values = parts.Select(p => float.TryParse(p, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : float.NaN).ToArray();
            return values.Length == channels && values.All(float.IsFinite) && (name != "std" || values.All(v => v > 0))
                ? values
                : throw new NodeInputException($"node '{nodeId}': parameter '{name}' = '{text}' needs {channels} numbers{(name == "std" ? " above 0" : "")}, comma-separated");
        }

        var (rows, cols) = (1, 1);
        if (parameters.TryGetValue("tiles", out var tiles))
        {
            var parts = tiles.Split('x', StringSplitOptions.TrimEntries);
            if (parts.Length != 2 || !int.TryParse(parts[0], CultureInfo.InvariantCulture, out rows) || !int.TryParse(parts[1], CultureInfo.InvariantCulture, out cols) || rows is < 1 or > 16 || cols is < 1 or > 16)
            {
                throw new NodeInputException($"node '{nodeId}': parameter 'tiles' = '{tiles}' is not ROWSxCOLS (1 to 16 each)");
            }
        }

        var maxPixels = parameters.TryGetValue("max_pixels", out var mp) && double.TryParse(mp, NumberStyles.Float, CultureInfo.InvariantCulture, out var m) && m >= 1
            ? (long)m
            : parameters.ContainsKey("max_pixels") ? throw new NodeInputException($"node '{nodeId}': parameter 'max_pixels' = '{mp}' is not a positive number") : 64_000_000L;
        return new ImageSettings(Int("width", 256, 8, 8192), Int("height", 256, 8, 8192), channels, Floats("mean", 0), Floats("std", 1),
            parameters.TryGetValue("tensor", out var name) && name.Length > 0 ? name : "x", rows, cols, maxPixels);
    }

    /// <summary>The tensor's shape: [tiles, channels, height, width].</summary>
    public long[] Dims => [TileRows * TileCols, Channels, Height, Width];

    public TensorSet ToTensorSet(SKBitmap image)
    {
        var values = new float[TileRows * TileCols * Channels * Height * Width];
        var tileWidth = image.Width / (float)TileCols;
        var tileHeight = image.Height / (float)TileRows;
        using var target = new SKBitmap(new SKImageInfo(Width, Height, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        using var canvas = new SKCanvas(target);
        using var paint = new SKPaint();
        using var source = SKImage.FromBitmap(image);
        var sampling = new SKSamplingOptions(SKFilterMode.Linear, SKMipmapMode.Linear);
        for (var tile = 0; tile < TileRows * TileCols; tile++)
        {
            var (row, col) = (tile / TileCols, tile % TileCols);
            var sourceRect = SKRect.Create(col * tileWidth, row * tileHeight, tileWidth, tileHeight);
            canvas.Clear(SKColors.Black);
            canvas.DrawImage(source, sourceRect, SKRect.Create(0, 0, Width, Height), sampling, paint);
            canvas.Flush();
            Normalize(target.GetPixelSpan(), values.AsSpan(tile * Channels * Height * Width, Channels * Height * Width));
        }

        var set = new TensorSet
        {
            SourceWidth = image.Width,
            SourceHeight = image.Height,
            TileRows = TileRows * TileCols > 1 ? TileRows : 0,
            TileCols = TileRows * TileCols > 1 ? TileCols : 0,
        };
        set.Tensors.Add(TensorSets.Create(TensorName, Dims, values));
        return set;
    }

    private void Normalize(ReadOnlySpan<byte> rgba, Span<float> chw)
    {
        var plane = Height * Width;
        for (var p = 0; p < plane; p++)
        {
            var (r, g, b) = (rgba[p * 4] / 255f, rgba[(p * 4) + 1] / 255f, rgba[(p * 4) + 2] / 255f);
            if (Channels == 1)
            {
                chw[p] = ((0.299f * r) + (0.587f * g) + (0.114f * b) - Mean[0]) / Std[0];
            }
            else
            {
                chw[p] = (r - Mean[0]) / Std[0];
                chw[plane + p] = (g - Mean[1]) / Std[1];
                chw[(2 * plane) + p] = (b - Mean[2]) / Std[2];
            }
        }
    }
}
