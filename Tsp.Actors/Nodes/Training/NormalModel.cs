using Microsoft.ML.OnnxRuntime;
using Tsp.Actors.Nodes.Onnx;

namespace Tsp.Actors.Nodes.Training;

/// <summary>
/// A normal-appearance model of local statistics. Per cell of a <c>pool</c>×<c>pool</c> grid, its
/// features are, per channel, the cell's contrast to its background (the mean of the
/// <see cref="BackgroundCells"/>² cells around it) and its variance, both relative to the background's
/// brightness — so a lighting gradient or a darker exposure changes neither. Training records, per
/// cell and feature, their mean and spread over good images; the exported ONNX model scores a cell by
/// how far its features lie from normal (root mean square of z-scores) and divides by the highest
/// score seen on the training images, so 1.0 is "as unusual as the most unusual good image" and the
/// anomaly map [N,1,H/pool,W/pool] is comparable across models. The map is not smoothed: a 3×3 blur
/// spread every blob by a cell a side, and boxes from it matched few small defects at IoU 0.3.
/// </summary>
public sealed record NormalModel(int Height, int Width, int Channels, int Pool, float[] Mean, float[] Spread, float Calibration)
{
    public const string Input = "x";
    public const string Output = "anomaly_map";

    public int FeatureCount => Channels * 2;

    public int MapHeight => Height / Pool;

    public int MapWidth => Width / Pool;

    /// <summary>Fits on good images, given as NCHW float tensors of <paramref name="height"/>×<paramref name="width"/>.</summary>
    public static NormalModel Fit(IReadOnlyList<float[]> images, int channels, int height, int width, int pool)
    {
        if (images.Count < 2)
        {
            throw new NodeInputException($"training needs at least 2 good images (got {images.Count})");
        }

        if (height % pool != 0 || width % pool != 0)
        {
            throw new NodeInputException($"image size {width}×{height} is not a multiple of pool {pool}");
        }

        var shape = new NormalModel(height, width, channels, pool, [], [], 1f);
        var features = Run(FeatureGraph(shape), images, shape, "features");
        var cells = shape.FeatureCount * shape.MapHeight * shape.MapWidth;
        var mean = new double[cells];
        var squares = new double[cells];
        foreach (var f in features)
        {
            for (var i = 0; i < cells; i++)
            {
                mean[i] += f[i];
                squares[i] += (double)f[i] * f[i];
            }
        }

        var n = features.Count;
        var spread = new float[cells];
        for (var i = 0; i < cells; i++)
        {
            mean[i] /= n;
            spread[i] = (float)Math.Sqrt(Math.Max(0, (squares[i] / n) - (mean[i] * mean[i])));
        }

        // A floor per feature: where good images hardly vary, a tiny spread would turn noise into alarms.
        var plane = shape.MapHeight * shape.MapWidth;
        for (var feature = 0; feature < shape.FeatureCount; feature++)
        {
            var slice = spread.AsSpan(feature * plane, plane);
            var floor = (0.5f * Average(slice)) + 1e-4f;
            for (var i = 0; i < slice.Length; i++)
            {
                slice[i] = Math.Max(slice[i], floor);
            }
        }

        var uncalibrated = shape with { Mean = mean.Select(m => (float)m).ToArray(), Spread = spread };
        var maps = Run(uncalibrated.ToOnnx(), images, uncalibrated, Output);
        var highest = maps.Max(m => m.Max());
        return uncalibrated with { Calibration = Math.Max(1e-6f, highest * 1.05f) };
    }

    private static float Average(ReadOnlySpan<float> values)
    {
        double sum = 0;
        foreach (var v in values)
        {
            sum += v;
        }

        return (float)(sum / values.Length);
    }

    /// <summary>The scoring model, as ONNX.</summary>
    public byte[] ToOnnx() =>
        Features(new OnnxGraph("normal-appearance"))
            .Output(Output, -1, 1, MapHeight, MapWidth)
            .Constant("mean", [1, FeatureCount, MapHeight, MapWidth], Mean)
            .Constant("spread", [1, FeatureCount, MapHeight, MapWidth], Spread)
            .Constant("calibration", [1], [Calibration])
            .Node("Sub", ["features", "mean"], ["centered"])
            .Node("Div", ["centered", "spread"], ["z"])
            .Node("Mul", ["z", "z"], ["z2"])
            .Node("ReduceMean", ["z2"], ["msz"], ("axes", new long[] { 1 }), ("keepdims", 1))
            .Node("Sqrt", ["msz"], ["rms"])
            .Node("Div", ["rms", "calibration"], [Output])
            .ToModel(new Dictionary<string, string> { ["tsp.kind"] = "normal-appearance", ["tsp.pool"] = Pool.ToString(System.Globalization.CultureInfo.InvariantCulture) });

    private static byte[] FeatureGraph(NormalModel shape) =>
        shape.Features(new OnnxGraph("features")).Output("features", -1, shape.FeatureCount, shape.MapHeight, shape.MapWidth).ToModel();

    /// <summary>Cells around a cell whose mean is its background (odd): wider than most defects, narrow
    /// enough that a lighting gradient is nearly linear across it.</summary>
    public const int BackgroundCells = 7;

    private OnnxGraph Features(OnnxGraph graph) =>
        graph.Input(Input, -1, Channels, Height, Width)
            .Constant("floor", [1], [0.05f])
            .Node("AveragePool", [Input], ["local_mean"], ("kernel_shape", new long[] { Pool, Pool }), ("strides", new long[] { Pool, Pool }))
            .Node("Mul", [Input, Input], ["squared"])
            .Node("AveragePool", ["squared"], ["local_square"], ("kernel_shape", new long[] { Pool, Pool }), ("strides", new long[] { Pool, Pool }))
            .Node("Mul", ["local_mean", "local_mean"], ["mean_squared"])
            .Node("Sub", ["local_square", "mean_squared"], ["local_variance"])
            .Node("AveragePool", ["local_mean"], ["background_mean"], ("kernel_shape", new long[] { BackgroundCells, BackgroundCells }), ("strides", new long[] { 1, 1 }), ("pads", new long[] { BackgroundCells / 2, BackgroundCells / 2, BackgroundCells / 2, BackgroundCells / 2 }), ("count_include_pad", 0))
            .Node("Max", ["background_mean", "floor"], ["background"])
            .Node("Sub", ["local_mean", "background"], ["detail"])
            .Node("Div", ["detail", "background"], ["contrast"])
            .Node("Mul", ["background", "background"], ["background_squared"])
            .Node("Div", ["local_variance", "background_squared"], ["texture"])
            .Node("Concat", ["contrast", "texture"], ["features"], ("axis", 1));

    private static List<float[]> Run(byte[] model, IReadOnlyList<float[]> images, NormalModel shape, string output)
    {
        using var options = new SessionOptions();
        using var session = new InferenceSession(model, options);
        using var run = new RunOptions();
        var results = new List<float[]>(images.Count);
        foreach (var image in images)
        {
            using var input = OrtValue.CreateTensorValueFromMemory(image, [1, shape.Channels, shape.Height, shape.Width]);
            using var outputs = session.Run(run, [Input], [input], [output]);
            results.Add(outputs[0].GetTensorDataAsSpan<float>().ToArray());
        }

        return results;
    }
}
