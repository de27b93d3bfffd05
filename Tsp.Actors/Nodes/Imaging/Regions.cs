using Google.Protobuf;
using SkiaSharp;
using Tsp.Actors.Protocol;

namespace Tsp.Actors.Nodes.Imaging;

/// <summary>A found region: its box (in the map's own cells), its highest and mean value, and — when
/// asked for — its cells (indices into the map).</summary>
public readonly record struct Region(float X, float Y, float Width, float Height, float Score, int Area, float Mean = 0, int[]? Cells = null);

/// <summary>Postprocessing of score maps: threshold → connected regions → boxes → non-maximum suppression.</summary>
public static class Regions
{
    /// <summary>8-connected regions of cells ≥ <paramref name="threshold"/> with at least <paramref name="minArea"/> cells.</summary>
    public static List<Region> Find(ReadOnlySpan<float> map, int width, int height, float threshold, int minArea, bool withCells = false)
    {
        var cells = withCells ? new List<int>() : null;
        var regions = new List<Region>();
        var seen = new bool[map.Length];
        var stack = new Stack<int>();
        for (var start = 0; start < map.Length; start++)
        {
            if (seen[start] || !(map[start] >= threshold))
            {
                continue;
            }

            var (minX, minY, maxX, maxY, area, score) = (int.MaxValue, int.MaxValue, -1, -1, 0, float.MinValue);
            var sum = 0.0;
            cells?.Clear();
            seen[start] = true;
            stack.Push(start);
            while (stack.Count > 0)
            {
                var cell = stack.Pop();
                var (x, y) = (cell % width, cell / width);
                (minX, minY, maxX, maxY) = (Math.Min(minX, x), Math.Min(minY, y), Math.Max(maxX, x), Math.Max(maxY, y));
                area++;
                score = Math.Max(score, map[cell]);
                sum += map[cell];
                cells?.Add(cell);
                for (var dy = -1; dy <= 1; dy++)
                {
                    for (var dx = -1; dx <= 1; dx++)
                    {
                        var (nx, ny) = (x + dx, y + dy);
                        if (nx < 0 || ny < 0 || nx >= width || ny >= height)
                        {
                            continue;
                        }

                        var next = (ny * width) + nx;
                        if (!seen[next] && map[next] >= threshold)
                        {
                            seen[next] = true;
                            stack.Push(next);
                        }
                    }
                }
            }

            if (area >= minArea)
            {
                regions.Add(new Region(minX, minY, maxX - minX + 1, maxY - minY + 1, score, area, (float)(sum / area), cells?.ToArray()));
            }
        }

        return regions;
    }

    /// <summary>The region with its box narrowed to the cells of at least <paramref name="fraction"/> of
    /// its peak: cells a defect only touches score lower than those it fills, and on a smoothed map a
    /// blob's support is wider than the blob.</summary>
    public static Region Core(Region region, ReadOnlySpan<float> map, int width, float fraction)
    {
        var level = region.Score * fraction;
        var (minX, minY, maxX, maxY) = (int.MaxValue, int.MaxValue, -1, -1);
        foreach (var cell in region.Cells!)
        {
            if (map[cell] >= level)
            {
                var (x, y) = (cell % width, cell / width);
                (minX, minY, maxX, maxY) = (Math.Min(minX, x), Math.Min(minY, y), Math.Max(maxX, x), Math.Max(maxY, y));
            }
        }

        return region with { X = minX, Y = minY, Width = maxX - minX + 1, Height = maxY - minY + 1 };
    }

    public static float IntersectionOverUnion(Box a, Box b)
    {
        var x1 = Math.Max(a.X, b.X);
        var y1 = Math.Max(a.Y, b.Y);
        var x2 = Math.Min(a.X + a.Width, b.X + b.Width);
        var y2 = Math.Min(a.Y + a.Height, b.Y + b.Height);
        var intersection = Math.Max(0, x2 - x1) * Math.Max(0, y2 - y1);
        var union = (a.Width * a.Height) + (b.Width * b.Height) - intersection;
        return union <= 0 ? 0 : intersection / union;
    }

    /// <summary>Greedy non-maximum suppression per label: keeps the highest-scoring box of each group
    /// that overlaps by more than <paramref name="iou"/>.</summary>
    public static List<Detection> Suppress(IEnumerable<Detection> detections, float iou, int maxDetections)
    {
        var kept = new List<Detection>();
        foreach (var candidate in detections.OrderByDescending(d => d.Score))
        {
            if (kept.Count >= maxDetections)
            {
                break;
            }

            if (!kept.Any(k => k.Label == candidate.Label && IntersectionOverUnion(k.Box, candidate.Box) > iou))
            {
                kept.Add(candidate);
            }
        }

        return kept;
    }
}

/// <summary>
/// <c>map.regions</c>: turns a score map ([N,1,H,W] or [N,H,W], N = tiles) — an anomaly map or a
/// detector's probability map — into detections in image pixels: threshold, 8-connected regions of
/// at least <c>min_area</c> cells, boxes scaled to the source image (tiles placed where they were
/// cut), then non-maximum suppression. Parameters: tensor, threshold (0.5), min_area (4), label
/// ("defect"), iou (0.3), max_detections (100), min_peak (a region's least highest score;
/// threshold), box_fraction (0; else the box holds only the cells ≥ fraction × the region's peak),
/// box_threshold (a region's least mean score; 0),
/// unclip (0: axis-aligned boxes of the cells; a ratio such as DB's 1.5: each region's minimum-area
/// rectangle at any angle, grown by area × ratio / perimeter — a text detector's shrunk line kernel
/// back to the whole line — given as the detection's polygon, its box being the polygon's bounds),
/// min_side (a rotated box's least shorter side, in map cells; 0). Metrics: max_score (the
/// image-level score), regions.
/// </summary>
public sealed class MapRegionsProcessor : INodeProcessor, INodeContract
{
    public const string ProcessorName = "map.regions";

    public string Name => ProcessorName;

    public (IReadOnlyList<TensorSpec>? Outputs, IReadOnlyList<string> Errors) Check(NodeSettings node, IReadOnlyList<NodeInputSpec> inputs)
    {
        var from = node.Parameters.GetValueOrDefault("from");
        var input = from is null ? (inputs.Count == 1 ? inputs[0] : null) : inputs.FirstOrDefault(i => i.Parent == from);
        if (input?.Tensors is not { } tensors)
        {
            return (null, input is null ? [$"takes one score map: name its parent with parameter 'from' (parents: {string.Join(", ", inputs.Select(i => i.Parent))})"] : []);
        }

        var name = node.Parameters.GetValueOrDefault("tensor");
        var map = name is null ? (tensors.Count == 1 ? tensors[0] : null) : tensors.FirstOrDefault(t => t.Name == name);
        if (map is null)
        {
            return (null, [$"no tensor {(name is null ? "chosen" : $"'{name}'")} among {string.Join(", ", tensors)} from '{input.Parent}'; name one with parameter 'tensor'"]);
        }

        return map.Shape.Count is 3 || (map.Shape.Count == 4 && map.Shape[1] is 1 or -1)
            ? (null, [])
            : (null, [$"tensor {map} from '{input.Parent}' is not a score map ([N,1,H,W] or [N,H,W])"]);
    }

    public Task<NodeOutput> ProcessAsync(NodeInvocation invocation, CancellationToken cancellationToken)
    {
        var set = TensorSets.Read(invocation, invocation.Parameters.GetValueOrDefault("from"));
        var tensor = TensorSets.Find(set, invocation.Parameters.GetValueOrDefault("tensor"), invocation.NodeId);
        var dims = tensor.Dims;
        if (dims.Count is not (3 or 4) || (dims.Count == 4 && dims[1] != 1))
        {
            throw new NodeInputException($"node '{invocation.NodeId}': tensor '{tensor.Name}' has shape {TensorSets.Shape(dims)}; a score map is [N,1,H,W] or [N,H,W]");
        }

        var (tiles, height, width) = ((int)dims[0], (int)dims[^2], (int)dims[^1]);
        var (rows, cols) = set.TileRows > 0 ? (set.TileRows, set.TileCols) : (1, 1);
        if (rows * cols != tiles)
        {
            throw new NodeInputException($"node '{invocation.NodeId}': {tiles} maps for a {rows}×{cols} tiling");
        }

        var threshold = (float)invocation.Parameter("threshold", 0.5);
        var minArea = (int)invocation.Parameter("min_area", 4);
        var boxThreshold = (float)invocation.Parameter("box_threshold", 0);
        var unclip = (float)invocation.Parameter("unclip", 0);
        var minSide = (float)invocation.Parameter("min_side", 0);
        var boxFraction = (float)invocation.Parameter("box_fraction", 0);
        var minPeak = (float)invocation.Parameter("min_peak", threshold);
        var label = invocation.Parameter("label", "defect");
        var values = TensorSets.Values(tensor);
        var (sourceWidth, sourceHeight) = (set.SourceWidth > 0 ? set.SourceWidth : width * cols, set.SourceHeight > 0 ? set.SourceHeight : height * rows);
        var (tileWidth, tileHeight) = (sourceWidth / (float)cols, sourceHeight / (float)rows);
        var found = new List<Detection>();
        var maxScore = float.MinValue;
        for (var tile = 0; tile < tiles; tile++)
        {
            var map = values.AsSpan(tile * width * height, width * height);
            foreach (var v in map)
            {
                maxScore = Math.Max(maxScore, v);
            }

            var (offsetX, offsetY) = (tile % cols * tileWidth, tile / cols * tileHeight);
            var (scaleX, scaleY) = (tileWidth / width, tileHeight / height);
            foreach (var candidate in Regions.Find(map, width, height, threshold, minArea, withCells: unclip > 0 || boxFraction > 0))
            {
                var region = boxFraction > 0 && unclip == 0 ? Regions.Core(candidate, map, width, boxFraction) : candidate;
                if (region.Mean < boxThreshold || region.Score < minPeak)
                {
                    continue;
                }

                if (unclip > 0)
                {
                    var rect = Quads.MinAreaRect(region.Cells!.SelectMany(c => Corners(c % width, c / width)).ToList());
                    if (Math.Min(Quads.Width(rect), Quads.Height(rect)) < minSide)
                    {
                        continue;
                    }

                    var quad = Quads.Unclip(rect, unclip).Select(p => new SKPoint(offsetX + (p.X * scaleX), offsetY + (p.Y * scaleY))).ToArray();
                    foreach (ref var corner in quad.AsSpan())
                    {
                        corner = new SKPoint(Math.Clamp(corner.X, 0, sourceWidth), Math.Clamp(corner.Y, 0, sourceHeight));
                    }

                    var bounds = Quads.Bounds(quad, sourceWidth, sourceHeight);
                    var rotated = new Detection
                    {
                        Label = label,
                        Score = region.Mean,
                        NodeId = invocation.NodeId,
                        Box = new Box { X = bounds.Left, Y = bounds.Top, Width = bounds.Width, Height = bounds.Height },
                    };
                    rotated.Polygon.AddRange(Quads.Flatten(quad));
                    found.Add(rotated);
                    continue;
                }

                found.Add(new Detection
                {
                    Label = label,
                    Score = region.Score,
                    NodeId = invocation.NodeId,
                    Box = new Box
                    {
                        X = offsetX + (region.X * scaleX),
                        Y = offsetY + (region.Y * scaleY),
                        Width = region.Width * scaleX,
                        Height = region.Height * scaleY,
                    },
                });
            }
        }

        static IEnumerable<SKPoint> Corners(int x, int y) => [new(x, y), new(x + 1, y), new(x, y + 1), new(x + 1, y + 1)];

        var kept = Regions.Suppress(found, (float)invocation.Parameter("iou", 0.3), (int)invocation.Parameter("max_detections", 100));
        var output = new NodeOutput { Data = new DetectionList { Detections = { kept } }.ToByteArray() };
        output.Detections.AddRange(kept);
        output.Metrics["max_score"] = maxScore;
        output.Metrics["regions"] = kept.Count;
        return Task.FromResult(output);
    }
}
