using SkiaSharp;

namespace Tsp.Actors.Nodes.Imaging;

/// <summary>
/// Four-cornered regions (text lines at any angle): the minimum-area rectangle around a set of
/// points, DB's unclipping, and the perspective transform that cuts a quad out as an upright
/// rectangle. Corners are always in the order top-left, top-right, bottom-right, bottom-left.
/// </summary>
public static class Quads
{
    /// <summary>The convex hull, counter-clockwise (Andrew's monotone chain); fewer than three points come back as they are.</summary>
    public static List<SKPoint> ConvexHull(IEnumerable<SKPoint> points)
    {
        var sorted = points.Distinct().OrderBy(p => p.X).ThenBy(p => p.Y).ToList();
        if (sorted.Count < 3)
        {
            return sorted;
        }

        static float Cross(SKPoint o, SKPoint a, SKPoint b) => ((a.X - o.X) * (b.Y - o.Y)) - ((a.Y - o.Y) * (b.X - o.X));
        var hull = new List<SKPoint>(sorted.Count + 1);
        foreach (var pass in new[] { sorted, Enumerable.Reverse(sorted).ToList() })
        {
            var start = hull.Count;
            foreach (var p in pass)
            {
                while (hull.Count >= start + 2 && Cross(hull[^2], hull[^1], p) <= 0)
                {
                    hull.RemoveAt(hull.Count - 1);
                }

                hull.Add(p);
            }

            hull.RemoveAt(hull.Count - 1);
        }

        return hull;
    }

    /// <summary>The smallest rectangle holding every point (one of its sides lies on a hull edge), ordered.</summary>
    public static SKPoint[] MinAreaRect(IReadOnlyCollection<SKPoint> points)
    {
        var hull = ConvexHull(points);
        if (hull.Count < 3)
        {
            var (minX, minY) = (hull.Min(p => p.X), hull.Min(p => p.Y));
            var (maxX, maxY) = (hull.Max(p => p.X), hull.Max(p => p.Y));
            return [new(minX, minY), new(maxX, minY), new(maxX, maxY), new(minX, maxY)];
        }

        var best = (Area: float.MaxValue, Corners: Array.Empty<SKPoint>());
        for (var i = 0; i < hull.Count; i++)
        {
            var edge = hull[(i + 1) % hull.Count] - hull[i];
            var length = edge.Length;
            if (length == 0)
            {
                continue;
            }

            var u = new SKPoint(edge.X / length, edge.Y / length);
            var v = new SKPoint(-u.Y, u.X);
            var (minU, maxU, minV, maxV) = (float.MaxValue, float.MinValue, float.MaxValue, float.MinValue);
            foreach (var p in hull)
            {
                var (pu, pv) = ((p.X * u.X) + (p.Y * u.Y), (p.X * v.X) + (p.Y * v.Y));
                (minU, maxU, minV, maxV) = (Math.Min(minU, pu), Math.Max(maxU, pu), Math.Min(minV, pv), Math.Max(maxV, pv));
            }

            var area = (maxU - minU) * (maxV - minV);
            if (area < best.Area - 1e-3f)
            {
                SKPoint At(float a, float b) => new((u.X * a) + (v.X * b), (u.Y * a) + (v.Y * b));
                best = (area, [At(minU, minV), At(maxU, minV), At(maxU, maxV), At(minU, maxV)]);
            }
        }

        return Order(best.Corners);
    }

    /// <summary>Top-left, top-right, bottom-right, bottom-left: of the two leftmost corners the upper is
    /// top-left, of the two rightmost the upper is top-right (PaddleOCR's order).</summary>
    public static SKPoint[] Order(IReadOnlyList<SKPoint> corners)
    {
        var byX = corners.OrderBy(p => p.X).ThenBy(p => p.Y).ToArray();
        var (topLeft, bottomLeft) = byX[0].Y <= byX[1].Y ? (byX[0], byX[1]) : (byX[1], byX[0]);
        var (topRight, bottomRight) = byX[2].Y <= byX[3].Y ? (byX[2], byX[3]) : (byX[3], byX[2]);
        return [topLeft, topRight, bottomRight, bottomLeft];
    }

    public static float Width(IReadOnlyList<SKPoint> quad) => Math.Max(SKPoint.Distance(quad[0], quad[1]), SKPoint.Distance(quad[3], quad[2]));

    public static float Height(IReadOnlyList<SKPoint> quad) => Math.Max(SKPoint.Distance(quad[0], quad[3]), SKPoint.Distance(quad[1], quad[2]));

    /// <summary>DB's unclip of a rectangle: each side moves out by area × ratio / perimeter. A detector
    /// trained on shrunk text kernels finds a line's core; this restores the whole line.</summary>
    public static SKPoint[] Unclip(IReadOnlyList<SKPoint> rect, float ratio)
    {
        var (width, height) = (SKPoint.Distance(rect[0], rect[1]), SKPoint.Distance(rect[0], rect[3]));
        if (width == 0 || height == 0)
        {
            return [.. rect];
        }

        var distance = width * height * ratio / (2 * (width + height));
        var u = new SKPoint((rect[1].X - rect[0].X) / width * distance, (rect[1].Y - rect[0].Y) / width * distance);
        var v = new SKPoint((rect[3].X - rect[0].X) / height * distance, (rect[3].Y - rect[0].Y) / height * distance);
        return [rect[0] - u - v, rect[1] + u - v, rect[2] + u + v, rect[3] - u + v];
    }

    /// <summary>The axis-aligned bounds of a quad, clipped to <paramref name="width"/>×<paramref name="height"/>.</summary>
    public static SKRect Bounds(IReadOnlyList<SKPoint> quad, float width, float height) =>
        new(Math.Clamp(quad.Min(p => p.X), 0, width), Math.Clamp(quad.Min(p => p.Y), 0, height), Math.Clamp(quad.Max(p => p.X), 0, width), Math.Clamp(quad.Max(p => p.Y), 0, height));

    /// <summary>The projective transform taking the four points <paramref name="from"/> onto <paramref name="to"/>
    /// (OpenCV's getPerspectiveTransform).</summary>
    /// <exception cref="ArgumentException">Three of the points lie on one line.</exception>
    public static SKMatrix Perspective(IReadOnlyList<SKPoint> from, IReadOnlyList<SKPoint> to)
    {
        // a·x + b·y + c − g·x·u − h·y·u = u and d·x + e·y + f − g·x·v − h·y·v = v, for each pair.
        var m = new double[8, 9];
        for (var i = 0; i < 4; i++)
        {
            var (x, y, u, v) = ((double)from[i].X, (double)from[i].Y, (double)to[i].X, (double)to[i].Y);
            double[] row1 = [x, y, 1, 0, 0, 0, -x * u, -y * u, u];
            double[] row2 = [0, 0, 0, x, y, 1, -x * v, -y * v, v];
            for (var j = 0; j < 9; j++)
            {
                m[2 * i, j] = row1[j];
                m[(2 * i) + 1, j] = row2[j];
            }
        }

        for (var column = 0; column < 8; column++)
        {
            var pivot = column;
            for (var row = column + 1; row < 8; row++)
            {
                if (Math.Abs(m[row, column]) > Math.Abs(m[pivot, column]))
                {
                    pivot = row;
                }
            }

            if (Math.Abs(m[pivot, column]) < 1e-9)
            {
                throw new ArgumentException($"no perspective transform from {string.Join(" ", from)}: three points are on one line");
            }

            for (var j = 0; j < 9; j++)
            {
                (m[column, j], m[pivot, j]) = (m[pivot, j], m[column, j]);
            }

            for (var row = 0; row < 8; row++)
            {
                if (row != column)
                {
                    var factor = m[row, column] / m[column, column];
                    for (var j = column; j < 9; j++)
                    {
                        m[row, j] -= factor * m[column, j];
                    }
                }
            }
        }

        float H(int i) => (float)(m[i, 8] / m[i, i]);
        return new SKMatrix(H(0), H(1), H(2), H(3), H(4), H(5), H(6), H(7), 1);
    }

    /// <summary>The quad as a flat list x0,y0,…,x3,y3 (the TP polygon).</summary>
    public static float[] Flatten(IReadOnlyList<SKPoint> quad) => quad.SelectMany(p => new[] { p.X, p.Y }).ToArray();

    /// <summary>A TP polygon of four corners, or null when it has not exactly four.</summary>
    public static SKPoint[]? FromPolygon(IReadOnlyList<float> polygon) =>
        polygon.Count == 8 ? [new(polygon[0], polygon[1]), new(polygon[2], polygon[3]), new(polygon[4], polygon[5]), new(polygon[6], polygon[7])] : null;
}
