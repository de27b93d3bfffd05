using SkiaSharp;
using Tsp.Actors.Protocol;

namespace Tsp.ServiceDefaults.Samples;

public enum SurfaceKind
{
    Steel,
    Concrete,
}

/// <summary>A drawn defect: where it is, what kind, and how visible (<see cref="Severity"/> from 0.25,
/// barely above the texture's grain, to 1, obvious).</summary>
public sealed record SurfaceDefect(Box Box, string Kind, float Severity)
{
    /// <summary>faint (below 0.5), moderate (below 0.75) or strong: the bands quality is reported in.</summary>
    public string Band => Severity < 0.5f ? "faint" : Severity < 0.75f ? "moderate" : "strong";
}

/// <summary>One generated inspection image, its ground truth, and the serial number stamped on it.</summary>
public sealed record SurfaceImage(byte[] Png, byte[] MaskPng, IReadOnlyList<SurfaceDefect> Defects, string Serial, SurfaceKind Kind)
{
    public bool Defective => Defects.Count > 0;
}

/// <summary>
/// Deterministic surface images for the rail-inspection sample: brushed steel or concrete texture,
/// a stamped serial number on a plate in the top-left corner, and — for defective ones — scratches,
/// cracks and spots from a few pixels to a quarter of the image, faint to obvious, with a
/// ground-truth mask and boxes. Then what a camera does: the view turned up to 3°, a lighting
/// gradient, slight blur and sensor noise. The same seed gives the same image on every machine.
/// </summary>
public static class SurfaceImages
{
    public const int Size = 256;

    /// <summary>How many good images the sample's anomaly model is trained on.</summary>
    public const int TrainingImages = 40;

    /// <summary>The sample's mix: every third image concrete, the others steel.</summary>
    public static SurfaceKind KindOf(int index) => index % 3 == 2 ? SurfaceKind.Concrete : SurfaceKind.Steel;

    /// <summary>The sample's training run frame: good images of seeds 1 to <paramref name="images"/>,
    /// which no image the demo or the quality bench inspects uses.</summary>
    public static TrainingSet GoodTrainingSet(int images = TrainingImages)
    {
        var set = new TrainingSet();
        set.Images.AddRange(Enumerable.Range(1, images).Select(i => Google.Protobuf.ByteString.CopyFrom(Generate(i, defective: false, KindOf(i)).Png)));
        return set;
    }

    public static SurfaceImage Generate(int seed, bool defective, SurfaceKind kind = SurfaceKind.Steel)
    {
        var random = new Random(seed);
        var info = new SKImageInfo(Size, Size, SKColorType.Rgba8888, SKAlphaType.Premul);
        using var scene = new SKBitmap(info);
        using var sceneMask = new SKBitmap(info);
        Texture(scene, random, kind);
        var drawn = new List<DrawnDefect>();
        string serial;
        using (var canvas = new SKCanvas(scene))
        using (var maskCanvas = new SKCanvas(sceneMask))
        {
            maskCanvas.Clear(SKColors.Black);
            serial = StampSerial(canvas, random);
            if (defective)
            {
                var count = 1 + random.Next(2);
                for (var i = 0; i < count; i++)
                {
                    drawn.Add(DrawDefect(canvas, maskCanvas, random));
                }
            }
        }

        using var image = new SKBitmap(info);
        using var mask = new SKBitmap(info);
        var view = Camera(scene, sceneMask, image, mask, random);
        var defects = drawn.Select(d =>
        {
            using var path = new SKPath(d.Path);
            path.Transform(view);
            var bounds = path.Bounds;
            bounds.Inflate(d.Stroke / 2, d.Stroke / 2);
            bounds.Intersect(SKRect.Create(Size, Size));
            d.Path.Dispose();
            return d.Defect with { Box = new Box { X = bounds.Left, Y = bounds.Top, Width = bounds.Width, Height = bounds.Height } };
        }).ToList();
        return new SurfaceImage(Encode(image), Encode(mask), defects, serial, kind);
    }

    /// <summary>Films the scene: turned up to 3° about the centre (zoomed 6 % so no corner is empty),
    /// blurred by up to σ 0.8 px, lit by a gradient of up to ±25 % across the image, with Gaussian sensor
    /// noise of σ 1.5–4 levels. The mask goes through the same view, unblurred.</summary>
    /// <returns>The view: where a point of the scene lands in the image.</returns>
    private static SKMatrix Camera(SKBitmap scene, SKBitmap sceneMask, SKBitmap image, SKBitmap mask, Random random)
    {
        var degrees = (float)((random.NextDouble() - 0.5) * 6);
        var view = SKMatrix.CreateRotationDegrees(degrees, Size / 2f, Size / 2f).PostConcat(SKMatrix.CreateScale(1.06f, 1.06f, Size / 2f, Size / 2f));
        var sigma = (float)(random.NextDouble() * 0.8);
        using (var canvas = new SKCanvas(image))
        using (var source = SKImage.FromBitmap(scene))
        using (var blur = sigma > 0.05f ? SKImageFilter.CreateBlur(sigma, sigma) : null)
        using (var paint = new SKPaint { ImageFilter = blur })
        {
            canvas.SetMatrix(view);
            canvas.DrawImage(source, 0, 0, new SKSamplingOptions(SKFilterMode.Linear, SKMipmapMode.None), paint);
        }

        using (var canvas = new SKCanvas(mask))
        using (var source = SKImage.FromBitmap(sceneMask))
        {
            canvas.Clear(SKColors.Black);
            canvas.SetMatrix(view);
            canvas.DrawImage(source, 0, 0, new SKSamplingOptions(SKFilterMode.Nearest, SKMipmapMode.None));
        }

        var pixels = image.GetPixelSpan().ToArray();
        var direction = random.NextDouble() * Math.PI * 2;
        var (gx, gy) = ((float)Math.Cos(direction), (float)Math.Sin(direction));
        var strength = (float)(random.NextDouble() * 0.5);
        var noise = 1.5 + (random.NextDouble() * 2.5);
        for (var y = 0; y < Size; y++)
        {
            for (var x = 0; x < Size; x++)
            {
                var light = 1 + (strength * ((((x - (Size / 2f)) * gx) + ((y - (Size / 2f)) * gy)) / Size));
                var o = ((y * Size) + x) * 4;
                for (var c = 0; c < 3; c++)
                {
                    pixels[o + c] = Clamp((pixels[o + c] * light) + (float)(Gaussian(random) * noise));
                }
            }
        }

        System.Runtime.InteropServices.Marshal.Copy(pixels, 0, image.GetPixels(), pixels.Length);
        return view;
    }

    private static double Gaussian(Random random) =>
        Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());

    private static byte[] Encode(SKBitmap bitmap)
    {
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    private static void Texture(SKBitmap bitmap, Random random, SurfaceKind kind)
    {
        var pixels = new byte[Size * Size * 4];
        var (baseR, baseG, baseB) = kind == SurfaceKind.Steel ? (132, 136, 142) : (150, 146, 136);
        var tone = random.Next(-8, 9);
        // Low-frequency shading: a coarse grid of random offsets, bilinearly interpolated.
        const int cells = 8;
        var coarse = new float[(cells + 1) * (cells + 1)];
        for (var i = 0; i < coarse.Length; i++)
        {
            coarse[i] = (float)(random.NextDouble() - 0.5) * (kind == SurfaceKind.Steel ? 10 : 18);
        }

        var rowStreak = new float[Size];
        for (var y = 0; y < Size; y++)
        {
            rowStreak[y] = kind == SurfaceKind.Steel ? (float)(random.NextDouble() - 0.5) * 10 : 0;
        }

        for (var y = 0; y < Size; y++)
        {
            for (var x = 0; x < Size; x++)
            {
                var (gx, gy) = (x * cells / (float)Size, y * cells / (float)Size);
                var (cx, cy) = ((int)gx, (int)gy);
                var (fx, fy) = (gx - cx, gy - cy);
                var shade = Lerp(Lerp(coarse[(cy * (cells + 1)) + cx], coarse[(cy * (cells + 1)) + cx + 1], fx),
                    Lerp(coarse[((cy + 1) * (cells + 1)) + cx], coarse[((cy + 1) * (cells + 1)) + cx + 1], fx), fy);
                var grain = (float)(random.NextDouble() - 0.5) * (kind == SurfaceKind.Steel ? 14 : 22);
                var pore = kind == SurfaceKind.Concrete && random.NextDouble() < 0.004 ? -35 : 0;
                var v = tone + shade + grain + rowStreak[y] + pore;
                var o = ((y * Size) + x) * 4;
                pixels[o] = Clamp(baseR + v);
                pixels[o + 1] = Clamp(baseG + v);
                pixels[o + 2] = Clamp(baseB + v);
                pixels[o + 3] = 255;
            }
        }

        System.Runtime.InteropServices.Marshal.Copy(pixels, 0, bitmap.GetPixels(), pixels.Length);
    }

    private static float Lerp(float a, float b, float t) => a + ((b - a) * t);

    private static byte Clamp(float v) => (byte)Math.Clamp((int)MathF.Round(v), 0, 255);

    /// <summary>The plate the serial is stamped on, in image pixels: the text detector's target.</summary>
    public static readonly SKRect Plate = SKRect.Create(8, 8, 104, 30);

    /// <summary>A serial like "4821-07" stamped in a monospace bold face on a light plate: each
    /// character a little off the line and unevenly inked, the plate grainy, with a few dents.</summary>
    private static string StampSerial(SKCanvas canvas, Random random)
    {
        var serial = $"{random.Next(1000, 10000)}-{random.Next(0, 100):00}";
        using var plate = new SKPaint { Color = new SKColor(214, 210, 196), IsAntialias = true };
        canvas.DrawRect(Plate, plate);
        using var font = new SKFont(SampleFont.Serial, 17 + (float)random.NextDouble() * 2) { Edging = SKFontEdging.Antialias };
        var advance = font.MeasureText("0");
        var x = Plate.Left + ((Plate.Width - (advance * serial.Length)) / 2);
        var baseline = Plate.MidY + (font.Size * 0.36f);
        using var ink = new SKPaint { IsAntialias = true };
        foreach (var c in serial)
        {
            var shade = (byte)random.Next(20, 60);
            ink.Color = new SKColor(shade, shade, (byte)(shade + 6));
            canvas.DrawText(c.ToString(), x, baseline + (float)((random.NextDouble() - 0.5) * 2), SKTextAlign.Left, font, ink);
            x += advance;
        }

        // Stamping marks: small dents and scuffs, dark or light.
        using var mark = new SKPaint { IsAntialias = true, StrokeCap = SKStrokeCap.Round, StrokeWidth = 1 };
        for (var i = random.Next(3, 7); i > 0; i--)
        {
            var (mx, my) = (Plate.Left + (float)(random.NextDouble() * Plate.Width), Plate.Top + (float)(random.NextDouble() * Plate.Height));
            var grey = (byte)(random.Next(2) == 0 ? random.Next(90, 140) : random.Next(230, 250));
            mark.Color = new SKColor(grey, grey, grey);
            canvas.DrawLine(mx, my, mx + (float)((random.NextDouble() - 0.5) * 6), my + (float)((random.NextDouble() - 0.5) * 3), mark);
        }

        // Grain over the plate and its text, like the surface around it.
        using var speck = new SKPaint();
        for (var i = 0; i < 220; i++)
        {
            var v = (byte)random.Next(256);
            speck.Color = new SKColor(v, v, v, 40);
            canvas.DrawRect(SKRect.Create(Plate.Left + (float)Math.Floor(random.NextDouble() * Plate.Width), Plate.Top + (float)Math.Floor(random.NextDouble() * Plate.Height), 1, 1), speck);
        }

        return serial;
    }

    private sealed record DrawnDefect(SurfaceDefect Defect, SKPath Path, float Stroke);

    private static DrawnDefect DrawDefect(SKCanvas canvas, SKCanvas mask, Random random)
    {
        var kind = random.Next(3);
        // How visible it is: from faint (barely above the texture's grain) to obvious.
        var severity = 0.25f + (0.75f * (float)random.NextDouble());
        byte Shade(int from, int to) => (byte)Math.Clamp(from + ((to - from) * severity), 0, 255);
        // Away from the serial plate.
        var (cx, cy) = (60 + (float)(random.NextDouble() * 170), 60 + (float)(random.NextDouble() * 170));
        using var paint = new SKPaint { IsAntialias = true, StrokeCap = SKStrokeCap.Round, Style = SKPaintStyle.Stroke };
        using var maskPaint = new SKPaint { Color = SKColors.White, IsAntialias = false, StrokeCap = SKStrokeCap.Round, Style = SKPaintStyle.Stroke };
        using var builder = new SKPathBuilder();
        switch (kind)
        {
            case 0: // scratch: a straight bright or dark line
            {
                var angle = random.NextDouble() * Math.PI;
                var length = 8 + (random.NextDouble() * 82);
                var (dx, dy) = ((float)(Math.Cos(angle) * length / 2), (float)(Math.Sin(angle) * length / 2));
                builder.MoveTo(cx - dx, cy - dy);
                builder.LineTo(cx + dx, cy + dy);
                paint.Color = random.Next(2) == 0 ? new SKColor(Shade(138, 222), Shade(140, 226), Shade(146, 232)) : new SKColor(Shade(128, 52), Shade(130, 54), Shade(136, 58));
                paint.StrokeWidth = maskPaint.StrokeWidth = 2 + random.Next(2);
                break;
            }

            case 1: // crack: a dark random walk
            {
                var (x, y) = (cx, cy);
                var heading = random.NextDouble() * Math.PI * 2;
                builder.MoveTo(x, y);
                for (var i = 3 + random.Next(12); i > 0; i--)
                {
                    heading += (random.NextDouble() - 0.5) * 1.2;
                    x = Math.Clamp(x + (float)(Math.Cos(heading) * 5), 40, 250);
                    y = Math.Clamp(y + (float)(Math.Sin(heading) * 5), 40, 250);
                    builder.LineTo(x, y);
                }

                paint.Color = new SKColor(Shade(126, 34), Shade(128, 30), Shade(130, 28));
                paint.StrokeWidth = maskPaint.StrokeWidth = 2.5f;
                break;
            }

            default: // spot: a rust-coloured blot
            {
                var radius = 1.5f + (float)(random.NextDouble() * 12.5);
                builder.AddCircle(cx, cy, radius);
                paint.Style = maskPaint.Style = SKPaintStyle.Fill;
                paint.Color = new SKColor(Shade(136, 118), Shade(136, 62), Shade(136, 34));
                break;
            }
        }

        var path = builder.Detach();
        canvas.DrawPath(path, paint);
        mask.DrawPath(path, maskPaint);
        return new DrawnDefect(new SurfaceDefect(new Box(), kind switch { 0 => "scratch", 1 => "crack", _ => "spot" }, severity), path, maskPaint.StrokeWidth);
    }
}
