using Google.Protobuf;
using SkiaSharp;
using Tsp.Actors.Nodes;
using Tsp.Actors.Nodes.Imaging;
using Tsp.Actors.Nodes.Onnx;
using Tsp.Actors.Protocol;
using Tsp.ServiceDefaults.Samples;
using Xunit.Abstractions;

namespace Tsp.Actors.Tests.Nodes;

/// <summary>Reading text: rotated line boxes (map.regions with unclip), upright crops out of the frame
/// (text.crops), the recogniser as an onnx node, CTC decoding (text.ctc-decode) — in parts, and whole
/// with the sample's pretrained PP-OCRv4 models on generated plates, straight and turned.</summary>
public sealed class TextReadingTests(ITestOutputHelper output) : NodeTests
{
    private static SKPoint[] Turned(float cx, float cy, float width, float height, float degrees)
    {
        var (cos, sin) = (MathF.Cos(degrees * MathF.PI / 180), MathF.Sin(degrees * MathF.PI / 180));
        SKPoint At(float u, float v) => new(cx + (u * cos) - (v * sin), cy + (u * sin) + (v * cos));
        return [At(-width / 2, -height / 2), At(width / 2, -height / 2), At(width / 2, height / 2), At(-width / 2, height / 2)];
    }

    [Fact]
    public void The_minimum_area_rectangle_of_a_turned_rectangle_is_that_rectangle_in_reading_order()
    {
        var corners = Turned(50, 40, 60, 12, 10);
        var inside = Enumerable.Range(0, 400).Select(i => new SKPoint(corners[0].X + ((corners[1].X - corners[0].X) * (i % 20) / 19f) + ((corners[3].X - corners[0].X) * (i / 20) / 19f),
            corners[0].Y + ((corners[1].Y - corners[0].Y) * (i % 20) / 19f) + ((corners[3].Y - corners[0].Y) * (i / 20) / 19f))).ToList();

        var rect = Quads.MinAreaRect(inside);

        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(corners[i].X, rect[i].X, 0.01f);
            Assert.Equal(corners[i].Y, rect[i].Y, 0.01f);
        }

        Assert.Equal((60f, 12f), (Quads.Width(rect), Quads.Height(rect)), new ToleranceComparer(0.01f));
        // DB's unclip: each side out by area × ratio / perimeter = 720 × 1.5 / 144 = 7.5.
        var grown = Quads.Unclip(rect, 1.5f);
        Assert.Equal((75f, 27f), (Quads.Width(grown), Quads.Height(grown)), new ToleranceComparer(0.01f));
    }

    [Fact]
    public void The_perspective_transform_takes_each_corner_onto_its_target()
    {
        SKPoint[] from = [new(10, 12), new(90, 20), new(85, 50), new(5, 40)];
        SKPoint[] to = [new(0, 0), new(320, 0), new(320, 48), new(0, 48)];

        var matrix = Quads.Perspective(from, to);

        for (var i = 0; i < 4; i++)
        {
            var mapped = matrix.MapPoint(from[i]);
            Assert.Equal(to[i].X, mapped.X, 0.01f);
            Assert.Equal(to[i].Y, mapped.Y, 0.01f);
        }

        Assert.Throws<ArgumentException>(() => Quads.Perspective([new(0, 0), new(1, 1), new(2, 2), new(0, 5)], to));
    }

    [Fact]
    public async Task With_unclip_a_region_becomes_its_turned_rectangle_grown_as_a_polygon_in_image_pixels()
    {
        // A 40×6 bar turned 20° on a 100×100 map of a 200×200 image; a weak blob elsewhere.
        var map = new float[100 * 100];
        var bar = Turned(50, 50, 40, 6, 20);
        var toBar = Quads.Perspective(bar, [new(0, 0), new(40, 0), new(40, 6), new(0, 6)]);
        for (var y = 0; y < 100; y++)
        {
            for (var x = 0; x < 100; x++)
            {
                var p = toBar.MapPoint(new SKPoint(x + 0.5f, y + 0.5f));
                map[(y * 100) + x] = p.X is >= 0 and < 40 && p.Y is >= 0 and < 6 ? 0.9f : (x - 15) * (x - 15) + ((y - 85) * (y - 85)) < 4 ? 0.35f : 0f;
            }
        }

        var set = new TensorSet { SourceWidth = 200, SourceHeight = 200 };
        set.Tensors.Add(TensorSets.Create("map", [1, 1, 100, 100], map));
        var found = await new MapRegionsProcessor().ProcessAsync(
            Invocation("serials", new Dictionary<string, string> { ["threshold"] = "0.3", ["box_threshold"] = "0.6", ["unclip"] = "1.5", ["label"] = "serial" }, ("text", set.ToByteArray())),
            CancellationToken.None);

        var line = Assert.Single(found.Detections);
        var quad = Quads.FromPolygon(line.Polygon)!;
        // 40×6 cells grown by 40·6·1.5/92 ≈ 3.9 a side, doubled into image pixels: about 96×28, turned 20°.
        Assert.InRange(Quads.Width(quad), 90, 102);
        Assert.InRange(Quads.Height(quad), 24, 34);
        Assert.InRange(MathF.Atan2(quad[1].Y - quad[0].Y, quad[1].X - quad[0].X) * 180 / MathF.PI, 17, 23);
        Assert.Equal(quad.Min(p => p.X), line.Box.X, 0.01f);
        Assert.Equal(quad.Max(p => p.Y), line.Box.Y + line.Box.Height, 0.01f);
        Assert.InRange(line.Score, 0.6f, 0.9f);
    }

    [Fact]
    public async Task Box_fraction_narrows_a_smoothed_blob_to_its_core_and_min_peak_drops_weak_regions()
    {
        var map = new float[20 * 20];
        for (var y = 4; y < 12; y++)
        {
            for (var x = 4; x < 12; x++)
            {
                map[(y * 20) + x] = x is >= 6 and < 10 && y is >= 6 and < 10 ? 4f : 1.2f;
            }
        }

        map[(16 * 20) + 16] = map[(16 * 20) + 17] = 1.2f;
        var set = new TensorSet { SourceWidth = 20, SourceHeight = 20 };
        set.Tensors.Add(TensorSets.Create("map", [1, 1, 20, 20], map));
        async Task<List<Detection>> Find(Dictionary<string, string> parameters) =>
            (await new MapRegionsProcessor().ProcessAsync(Invocation("defects", parameters, ("anomaly", set.ToByteArray())), CancellationToken.None)).Detections;

        var plain = await Find(new() { ["threshold"] = "1.0", ["min_area"] = "2" });
        var refined = await Find(new() { ["threshold"] = "1.0", ["min_area"] = "2", ["box_fraction"] = "0.6", ["min_peak"] = "1.3" });

        Assert.Equal(2, plain.Count);
        Assert.Equal(new Box { X = 4, Y = 4, Width = 8, Height = 8 }, plain.Single(d => d.Score == 4f).Box);
        var core = Assert.Single(refined);
        Assert.Equal(new Box { X = 6, Y = 6, Width = 4, Height = 4 }, core.Box);
    }

    private string Labels(params string[] labels)
    {
        var repository = new ModelRepository(ModelRoot);
        Directory.CreateDirectory(Path.Combine(repository.Root, "rec"));
        File.WriteAllLines(Path.Combine(repository.Root, "rec", "keys.txt"), labels);
        File.WriteAllText(Path.Combine(repository.Root, "rec", ModelRepository.ConfigFile), """
            inputs: [{ name: x, shape: [-1, 3, 48, -1] }]
            outputs: [{ name: y, shape: [-1, -1, -1] }]
            labels: keys.txt
            """);
        return repository.Root;
    }

    private static byte[] Steps(IReadOnlyList<Detection> regions, int classes, params int[][] lines)
    {
        var steps = lines.Max(l => l.Length);
        var values = new float[lines.Length * steps * classes];
        for (var line = 0; line < lines.Length; line++)
        {
            for (var step = 0; step < steps; step++)
            {
                var best = step < lines[line].Length ? lines[line][step] : 0;
                for (var c = 0; c < classes; c++)
                {
                    values[(((line * steps) + step) * classes) + c] = c == best ? 0.8f : 0.2f / (classes - 1);
                }
            }
        }

        var set = new TensorSet { Regions = { regions } };
        set.Tensors.Add(TensorSets.Create("y", [lines.Length, steps, classes], values));
        return set.ToByteArray();
    }

    [Fact]
    public async Task CTC_decoding_merges_repeats_drops_blanks_and_gives_each_text_its_region()
    {
        var decoder = new CtcDecodeProcessor(new ModelRepository(Labels("1", "2", "-")));
        Detection Region(float x) => new() { Label = "serial", Score = 0.7f, Box = new Box { X = x, Y = 5, Width = 40, Height = 10 }, Polygon = { x, 5, x + 40, 5, x + 40, 15, x, 15 } };
        var regions = new[] { Region(0), Region(50) };
        // Classes: 0 blank, 1 "1", 2 "2", 3 "-", 4 space. "1 1 _ 1 2 - _ 2" reads "11 2-2"? no: repeats merge, a blank splits them.
        var input = Steps(regions, 5, [1, 1, 0, 1, 2, 3, 3, 0, 2], [0, 2, 4, 2, 0]);

        var read = await decoder.ProcessAsync(Invocation("serial", new Dictionary<string, string> { ["model"] = "rec" }, ("read", input)), CancellationToken.None);

        Assert.Equal(["112-2", "2 2"], read.Detections.Select(d => d.Text));
        Assert.Equal(regions.Select(r => r.Box), read.Detections.Select(d => d.Box));
        Assert.Equal(regions[1].Polygon, read.Detections[1].Polygon);
        Assert.All(read.Detections, d => Assert.Equal((0.8f, "serial", "serial"), (d.Score, d.Label, d.NodeId)));
        Assert.Equal(2, read.Metrics["texts"]);
        Assert.Equal(2, DetectionList.Parser.ParseFrom(read.Data.Span).Detections.Count);

        var unsure = await decoder.ProcessAsync(Invocation("serial", new Dictionary<string, string> { ["model"] = "rec", ["min_score"] = "0.9" }, ("read", input)), CancellationToken.None);
        Assert.Empty(unsure.Detections);
    }

    [Fact]
    public async Task CTC_decoding_names_a_class_count_or_region_count_that_does_not_fit()
    {
        var decoder = new CtcDecodeProcessor(new ModelRepository(Labels("1", "2", "-")));
        var region = new Detection { Label = "serial", Box = new Box { Width = 1, Height = 1 } };

        var classes = await Assert.ThrowsAsync<NodeInputException>(() => decoder.ProcessAsync(
            Invocation("serial", new Dictionary<string, string> { ["model"] = "rec" }, ("read", Steps([region], 7, [1, 2]))), CancellationToken.None));
        var regions = await Assert.ThrowsAsync<NodeInputException>(() => decoder.ProcessAsync(
            Invocation("serial", new Dictionary<string, string> { ["model"] = "rec" }, ("read", Steps([], 5, [1, 2]))), CancellationToken.None));
        var labels = await Assert.ThrowsAsync<NodeInputException>(() => decoder.ProcessAsync(
            Invocation("serial", new Dictionary<string, string> { ["model"] = "nothing" }, ("read", Steps([region], 5, [1]))), CancellationToken.None));

        Assert.Equal("node 'serial': tensor 'y' has 7 classes, but model 'rec' names 5 (blank, 4 labels and space)", classes.Message);
        Assert.Equal("node 'serial': 1 lines but 0 regions in the input from 'read'; its lines must come from text.crops", regions.Message);
        Assert.Contains("model 'nothing' is not in the repository", labels.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Crops_are_upright_lines_of_one_padded_width_in_score_order_and_need_the_frame()
    {
        using var bitmap = new SKBitmap(new SKImageInfo(200, 100, SKColorType.Rgba8888, SKAlphaType.Premul));
        using (var canvas = new SKCanvas(bitmap))
        {
            canvas.Clear(SKColors.White);
            using var black = new SKPaint { Color = SKColors.Black };
            canvas.DrawRect(SKRect.Create(20, 20, 10, 10), black);
        }

        var png = bitmap.Encode(SKEncodedImageFormat.Png, 100).ToArray();
        Detection Line(float x, float width, float score) => new() { Label = "serial", Score = score, Box = new Box { X = x, Y = 20, Width = width, Height = 10 } };
        var found = new DetectionList { Detections = { Line(20, 10, 0.6f), Line(40, 150, 0.9f), new Detection { Label = "other", Score = 1, Box = new Box { Width = 5, Height = 5 } } } };

        var crops = await new TextCropsProcessor().ProcessAsync(
            Invocation("crops", new Dictionary<string, string> { ["label"] = "serial" }, ("frame", png), ("serials", found.ToByteArray())), CancellationToken.None);

        var set = TensorSet.Parser.ParseFrom(crops.Data.Span);
        var tensor = Assert.Single(set.Tensors);
        // The 150×10 line is 720 wide at height 48 (rounded to 736); the 10×10 one is 48 wide, then padding.
        Assert.Equal([2L, 3, 48, 736], tensor.Dims);
        Assert.Equal([0.9f, 0.6f], set.Regions.Select(r => r.Score));
        var values = TensorSets.Values(tensor);
        var plane = 48 * 736;
        Assert.Equal(-1f, values[(3 * plane) + (24 * 736) + 24], 0.05f); // the black square fills the second line
        Assert.Equal(0f, values[(3 * plane) + (24 * 736) + 200]); // padding
        Assert.Equal(1f, values[(24 * 736) + 300], 0.05f); // white page in the first

        var noFrame = await Assert.ThrowsAsync<NodeInputException>(() => new TextCropsProcessor().ProcessAsync(
            Invocation("crops", new Dictionary<string, string>(), ("serials", found.ToByteArray())), CancellationToken.None));
        Assert.Equal("node 'crops' has no frame input: list 'frame' in its 'after'", noFrame.Message);
        var (_, errors) = new TextCropsProcessor().Check(new NodeSettings("crops", new Dictionary<string, string>()), [new NodeInputSpec("serials", null)]);
        Assert.Contains("needs the run's frame: list 'frame' in its 'after'", errors);
    }

    [Fact]
    public async Task The_pretrained_models_read_the_stamped_serials_straight_and_turned()
    {
        var repository = new ModelRepository(ModelRoot);
        await PretrainedModels.EnsureTextDetectorAsync(repository);
        await PretrainedModels.EnsureTextRecognizerAsync(repository);
        using var models = new OnnxModels(repository, new OnnxOptions { ExecutionProvider = "cpu" }, preferCuda: false);
        var onnx = new OnnxProcessor(models);
        var decoder = new CtcDecodeProcessor(repository);
        var (read, images) = (0, 16);
        for (var seed = 500; seed < 500 + images; seed++)
        {
            var image = SurfaceImages.Generate(seed, defective: seed % 2 == 0);
            // Every second image turned 4-8° about the plate, as a camera slightly off square sees it.
            var degrees = seed % 2 == 0 ? 0 : (seed % 4 == 1 ? 1 : -1) * (4 + (seed % 5));
            var png = degrees == 0 ? image.Png : Turn(image.Png, degrees, SurfaceImages.Plate.MidX, SurfaceImages.Plate.MidY);
            var texts = await ReadAsync(png, onnx, decoder);
            output.WriteLine($"{image.Serial} turned {degrees}°: {string.Join(" | ", texts.Select(t => $"{t.Text} {t.Score:0.00} [{string.Join(",", t.Polygon.Select(v => v.ToString("0", System.Globalization.CultureInfo.InvariantCulture)))}]"))}");
            read += texts.Any(t => t.Text == image.Serial) ? 1 : 0;
        }

        Assert.True(read >= images - 1, $"read {read} of {images} serials");

        // No text at all: an empty batch goes through the recogniser node and reads nothing.
        using var blank = new SKBitmap(new SKImageInfo(64, 64, SKColorType.Rgba8888, SKAlphaType.Premul));
        blank.Erase(SKColors.Gray);
        Assert.Empty(await ReadAsync(blank.Encode(SKEncodedImageFormat.Png, 100).ToArray(), onnx, decoder));
    }

    private static byte[] Turn(byte[] png, float degrees, float cx, float cy)
    {
        using var source = SKBitmap.Decode(png);
        using var turned = new SKBitmap(source.Info);
        using (var canvas = new SKCanvas(turned))
        {
            canvas.Clear(new SKColor(132, 136, 142));
            canvas.RotateDegrees(degrees, cx, cy);
            using var image = SKImage.FromBitmap(source);
            canvas.DrawImage(image, 0, 0, new SKSamplingOptions(SKFilterMode.Linear, SKMipmapMode.None));
        }

        return turned.Encode(SKEncodedImageFormat.Png, 100).ToArray();
    }

    private static async Task<IReadOnlyList<Detection>> ReadAsync(byte[] png, OnnxProcessor onnx, CtcDecodeProcessor decoder)
    {
        var tensors = await new ImageNormalizeProcessor().ProcessAsync(
            Invocation("text-pre", new Dictionary<string, string> { ["width"] = "320", ["height"] = "320", ["mean"] = "0.485,0.456,0.406", ["std"] = "0.229,0.224,0.225" }, ("frame", png)),
            CancellationToken.None);
        var map = await onnx.ProcessAsync(Invocation("text", new Dictionary<string, string> { ["model"] = PretrainedModels.TextDetector }, ("text-pre", tensors.Data.ToArray())), CancellationToken.None);
        var found = await new MapRegionsProcessor().ProcessAsync(
            Invocation("serials", new Dictionary<string, string> { ["threshold"] = "0.3", ["box_threshold"] = "0.6", ["unclip"] = "1.5", ["min_side"] = "3", ["label"] = "serial" }, ("text", map.Data.ToArray())), CancellationToken.None);
        var crops = await new TextCropsProcessor().ProcessAsync(Invocation("crops", new Dictionary<string, string>(), ("frame", png), ("serials", found.Data.ToArray())), CancellationToken.None);
        var lines = await onnx.ProcessAsync(Invocation("read", new Dictionary<string, string> { ["model"] = PretrainedModels.TextRecognizer }, ("crops", crops.Data.ToArray())), CancellationToken.None);
        return (await decoder.ProcessAsync(Invocation("serial", new Dictionary<string, string> { ["model"] = PretrainedModels.TextRecognizer }, ("read", lines.Data.ToArray())), CancellationToken.None)).Detections;
    }

    private sealed class ToleranceComparer(float tolerance) : IEqualityComparer<(float, float)>
    {
        public bool Equals((float, float) x, (float, float) y) => Math.Abs(x.Item1 - y.Item1) <= tolerance && Math.Abs(x.Item2 - y.Item2) <= tolerance;

        public int GetHashCode((float, float) obj) => 0;
    }
}
