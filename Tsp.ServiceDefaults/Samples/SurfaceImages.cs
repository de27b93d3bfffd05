using SkiaSharp;
using Tsp.Actors.Protocol;

namespace Tsp.ServiceDefaults.Samples;

public enum SurfaceKind
{
    Steel,
    Concrete,
}

/// <summary>One generated inspection image, its ground truth, and the serial number stamped on it.</summary>
public sealed record SurfaceImage(byte[] Png, byte[] MaskPng, IReadOnlyList<Box> Defects, string Serial, SurfaceKind Kind)
{
    public bool Defective => Defects.Count > 0;
}

/// <summary>
/// Deterministic surface images for the rail-inspection sample: brushed steel or concrete texture,
/// a stamped serial number on a plate in the top-left corner, and — for defective ones — scratches,
/// cracks and spots, with a ground-truth mask and boxes. The same seed gives the same image.
/// </summary>
public static class SurfaceImages
{
    public const int Size = 256;

    public static SurfaceImage Generate(int seed, bool defective, SurfaceKind kind = SurfaceKind.Steel)
    {
        var random = new Random(seed);
        var info = new SKImageInfo(Size, Size, SKColorType.Rgba8888, SKAlphaType.Premul);
        using var image = new SKBitmap(info);
        using var mask = new SKBitmap(info);
        Texture(image, random, kind);
        using var canvas = new SKCanvas(image);
        using var maskCanvas = new SKCanvas(mask);
        maskCanvas.Clear(SKColors.Black);
        var serial = StampSerial(canvas, random);
        var defects = new List<Box>();
        if (defective)
        {
            var count = 1 + random.Next(2);
            for (var i = 0; i < count; i++)
            {
                defects.Add(DrawDefect(canvas, maskCanvas, random));
            }
        }

        canvas.Flush();
        maskCanvas.Flush();
        return new SurfaceImage(Encode(image), Encode(mask), defects, serial, kind);
    }

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

    /// <summary>A serial like "4821-07" in seven-segment strokes on a light plate (no font needed).</summary>
    private static string StampSerial(SKCanvas canvas, Random random)
    {
        var serial = $"{random.Next(1000, 10000)}-{random.Next(0, 100):00}";
        using var plate = new SKPaint { Color = new SKColor(214, 210, 196), IsAntialias = true };
        canvas.DrawRect(SKRect.Create(8, 8, 104, 30), plate);
        using var ink = new SKPaint { Color = new SKColor(28, 28, 34), StrokeWidth = 2.5f, IsAntialias = true, StrokeCap = SKStrokeCap.Round };
        var x = 14f;
        foreach (var c in serial)
        {
            DrawGlyph(canvas, ink, c, x, 13, 9, 20);
            x += 13;
        }

        return serial;
    }

    // Segments a..g of a seven-segment digit.
    private static readonly Dictionary<char, string> Segments = new()
    {
        ['0'] = "abcdef", ['1'] = "bc", ['2'] = "abged", ['3'] = "abgcd", ['4'] = "fgbc",
        ['5'] = "afgcd", ['6'] = "afgedc", ['7'] = "abc", ['8'] = "abcdefg", ['9'] = "abcdfg", ['-'] = "g",
    };

    private static void DrawGlyph(SKCanvas canvas, SKPaint ink, char c, float x, float y, float w, float h)
    {
        var mid = y + (h / 2);
        foreach (var segment in Segments[c])
        {
            var (x1, y1, x2, y2) = segment switch
            {
                'a' => (x, y, x + w, y),
                'b' => (x + w, y, x + w, mid),
                'c' => (x + w, mid, x + w, y + h),
                'd' => (x, y + h, x + w, y + h),
                'e' => (x, mid, x, y + h),
                'f' => (x, y, x, mid),
                _ => (x, mid, x + w, mid),
            };
            canvas.DrawLine(x1, y1, x2, y2, ink);
        }
    }

    private static Box DrawDefect(SKCanvas canvas, SKCanvas mask, Random random)
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
                var length = 30 + (random.NextDouble() * 60);
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
                for (var i = 0; i < 14; i++)
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
                var radius = 3 + (float)(random.NextDouble() * 11);
                builder.AddCircle(cx, cy, radius);
                paint.Style = maskPaint.Style = SKPaintStyle.Fill;
                paint.Color = new SKColor(Shade(136, 118), Shade(136, 62), Shade(136, 34));
                break;
            }
        }

        using var path = builder.Detach();
        canvas.DrawPath(path, paint);
        mask.DrawPath(path, maskPaint);
        var bounds = path.Bounds;
        bounds.Inflate(maskPaint.StrokeWidth / 2, maskPaint.StrokeWidth / 2);
        return new Box { X = bounds.Left, Y = bounds.Top, Width = bounds.Width, Height = bounds.Height };
    }
}
