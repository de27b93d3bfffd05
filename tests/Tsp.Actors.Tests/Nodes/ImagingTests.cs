using Google.Protobuf;
using Tsp.Actors.Nodes;
using Tsp.Actors.Nodes.Imaging;
using Tsp.Actors.Nodes.Onnx;
using Tsp.Actors.Protocol;
using Tsp.ServiceDefaults.Samples;

namespace Tsp.Actors.Tests.Nodes;

public sealed class ImagingTests : NodeTests
{
    private static async Task<TensorSet> Normalize(byte[] image, Dictionary<string, string> parameters) =>
        TensorSet.Parser.ParseFrom((await new ImageNormalizeProcessor().ProcessAsync(Invocation("pre", parameters, ("frame", image)), CancellationToken.None)).Data.Span);

    [Fact]
    public async Task An_image_becomes_an_NCHW_tensor_normalized_per_channel_and_tiles_become_the_batch()
    {
        var png = SurfaceImages.Generate(7, defective: false).Png;
        var whole = await Normalize(png, new() { ["width"] = "64", ["height"] = "32", ["mean"] = "0.5,0.5,0.5", ["std"] = "0.25,0.25,0.25" });
        var tensor = Assert.Single(whole.Tensors);
        Assert.Equal(("x", 256, 256), (tensor.Name, whole.SourceWidth, whole.SourceHeight));
        Assert.Equal([1L, 3, 32, 64], tensor.Dims);
        var values = TensorSets.Values(tensor);
        Assert.All(values, v => Assert.InRange(v, -2f, 2f));
        // A grey steel surface: around the mean, so around 0 after normalization, not all equal.
        Assert.InRange(values.Average(), -0.6, 0.6);
        Assert.True(values.Distinct().Count() > 50);

        var tiled = await Normalize(png, new() { ["width"] = "64", ["height"] = "64", ["tiles"] = "2x3", ["channels"] = "1", ["tensor"] = "tiles" });
        Assert.Equal([6L, 1, 64, 64], tiled.Tensors[0].Dims);
        Assert.Equal(("tiles", 2, 3), (tiled.Tensors[0].Name, tiled.TileRows, tiled.TileCols));
    }

    public static TheoryData<string, string> BadImages => new()
    {
        { "garbage", "is not a decodable PNG or JPEG (11 bytes, starting 6E6F74" },
        { "empty", "image is empty" },
        { "truncated", "is truncated" },
        { "oversized", "exceeds the maximum of 10,000 pixels (parameter max_pixels)" },
    };

    [Theory]
    [MemberData(nameof(BadImages))]
    public async Task A_corrupt_or_oversized_image_is_a_clear_input_error(string kind, string message)
    {
        var png = SurfaceImages.Generate(3, defective: false).Png;
        var (data, parameters) = kind switch
        {
            "garbage" => ("not an image"u8.ToArray()[..11], new Dictionary<string, string>()),
            "empty" => ([], new Dictionary<string, string>()),
            "truncated" => (png[..(png.Length / 2)], new Dictionary<string, string>()),
            _ => (png, new Dictionary<string, string> { ["max_pixels"] = "10000" }),
        };

        var error = await Assert.ThrowsAsync<NodeInputException>(() => new ImageNormalizeProcessor().ProcessAsync(Invocation("pre", parameters, ("frame", data)), CancellationToken.None));
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Regions_are_8_connected_above_the_threshold_and_suppression_keeps_the_best_box()
    {
        var map = new float[10 * 10];
        foreach (var (x, y) in new[] { (1, 1), (2, 2), (3, 3), (7, 7), (8, 7) })
        {
            map[(y * 10) + x] = 0.9f;
        }

        map[(2 * 10) + 2] = 0.95f;
        var regions = Regions.Find(map, 10, 10, threshold: 0.5f, minArea: 2);
        Assert.Equal(2, regions.Count);
        Assert.Equal(new Region(1, 1, 3, 3, 0.95f, 3), regions[0] with { Mean = 0 });
        Assert.Equal(0.9167f, regions[0].Mean, 0.0001f);
        Assert.Equal(new Region(7, 7, 2, 1, 0.9f, 2, 0.9f), regions[1]);

        Detection D(float x, float score, string label = "defect") => new() { Label = label, Score = score, Box = new Box { X = x, Y = 0, Width = 10, Height = 10 } };
        var kept = Regions.Suppress([D(0, 0.6f), D(1, 0.9f), D(30, 0.5f), D(2, 0.7f, "text")], iou: 0.3f, maxDetections: 10);
        Assert.Equal([0.9f, 0.7f, 0.5f], kept.Select(k => k.Score));
    }

    [Fact]
    public async Task The_pretrained_text_detector_finds_the_stamped_serial_on_the_CPU_provider()
    {
        var repository = new ModelRepository(ModelRoot);
        await PretrainedModels.EnsureTextDetectorAsync(repository);
        using var models = new OnnxModels(repository, new OnnxOptions { ExecutionProvider = "cpu" }, preferCuda: false);
        var image = SurfaceImages.Generate(11, defective: true);

        var tensors = await new ImageNormalizeProcessor().ProcessAsync(
            Invocation("text-pre", new Dictionary<string, string> { ["width"] = "320", ["height"] = "320", ["mean"] = "0.485,0.456,0.406", ["std"] = "0.229,0.224,0.225" }, ("frame", image.Png)),
            CancellationToken.None);
        var map = await new OnnxProcessor(models).ProcessAsync(
            Invocation("text", new Dictionary<string, string> { ["model"] = PretrainedModels.TextDetector }, ("text-pre", tensors.Data.ToArray())), CancellationToken.None);
        var found = await new MapRegionsProcessor().ProcessAsync(
            Invocation("serials", new Dictionary<string, string> { ["threshold"] = "0.3", ["label"] = "serial" }, ("text", map.Data.ToArray())), CancellationToken.None);

        Assert.Equal((PretrainedModels.TextDetector, "1"), (map.ModelName, map.ModelVersion));
        var plate = new Box { X = 8, Y = 8, Width = 104, Height = 30 };
        var serial = Assert.Single(found.Detections, d => Regions.IntersectionOverUnion(d.Box, plate) > 0.2);
        Assert.Equal("serial", serial.Label);
        Assert.InRange(serial.Score, 0.3f, 1f);
    }
}
