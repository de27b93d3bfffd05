using System.Globalization;
using Tsp.Actors.Nodes.Imaging;
using Tsp.Actors.Protocol;

namespace Tsp.ServiceDefaults.Samples;

/// <summary>
/// How well the rail-inspection project did on generated images, from its TP results against the
/// generator's ground truth — the demo's and the quality bench's figures, computed one way:
/// <list type="bullet">
/// <item>auroc: image level, the anomaly map's maximum (metric max_score of the node drawing "defect" boxes);</item>
/// <item>recall: ground-truth defects matched by a "defect" box at IoU ≥ 0.3 (also at 0.5, and per severity band);</item>
/// <item>precision: "defect" boxes that match a ground-truth defect at IoU ≥ 0.3, over all of them;</item>
/// <item>serial_accuracy: images whose most confident "serial" text is exactly the stamped serial.</item>
/// </list>
/// A failed or missing result counts as a miss for every figure but AUROC (which has no score for it).
/// Thread-safe.
/// </summary>
public sealed class InspectionScore
{
    public const float MatchIou = 0.3f;
    public const float StrictIou = 0.5f;

    private static readonly string[] Bands = ["faint", "moderate", "strong"];

    private readonly object _gate = new();
    private readonly List<(bool Defective, double Score)> _scores = [];
    private readonly Dictionary<string, (int Defects, int Found)> _bands = new(StringComparer.Ordinal);
    private int _images;
    private int _defects;
    private int _found;
    private int _foundStrict;
    private int _boxes;
    private int _matchingBoxes;
    private int _serialsRead;

    /// <summary>Scores one image; <paramref name="result"/> null or not succeeded: the run failed.</summary>
    public void Add(SurfaceImage truth, TpResult? result)
    {
        var succeeded = result is { Status: RunStatus.Succeeded };
        var boxes = succeeded ? result!.Detections.Where(d => d.Label == "defect").ToList() : [];
        var scored = succeeded ? ImageScore(result!) : null;
        var serial = succeeded
            ? result!.Detections.Where(d => d.Label == "serial" && d.Text.Length > 0).OrderByDescending(d => d.Score).FirstOrDefault()?.Text
            : null;
        lock (_gate)
        {
            _images++;
            if (scored is { } score)
            {
                _scores.Add((truth.Defective, score));
            }

            foreach (var defect in truth.Defects)
            {
                var best = boxes.Select(b => Regions.IntersectionOverUnion(b.Box, defect.Box)).DefaultIfEmpty(0).Max();
                _defects++;
                _found += best >= MatchIou ? 1 : 0;
                _foundStrict += best >= StrictIou ? 1 : 0;
                var band = _bands.GetValueOrDefault(defect.Band);
                _bands[defect.Band] = (band.Defects + 1, band.Found + (best >= MatchIou ? 1 : 0));
            }

            _boxes += boxes.Count;
            _matchingBoxes += boxes.Count(b => truth.Defects.Any(d => Regions.IntersectionOverUnion(b.Box, d.Box) >= MatchIou));
            _serialsRead += serial == truth.Serial ? 1 : 0;
        }
    }

    /// <summary>The image-level anomaly score: max_score of the node that draws "defect" boxes (or of a
    /// node named "defects" when no box was drawn).</summary>
    private static double? ImageScore(TpResult result)
    {
        var node = result.Nodes.FirstOrDefault(n => n.Metrics.ContainsKey("max_score") && result.Detections.Any(d => d.NodeId == n.NodeId && d.Label == "defect"))
            ?? result.Nodes.FirstOrDefault(n => n.NodeId == "defects" && n.Metrics.ContainsKey("max_score"));
        return node?.Metrics["max_score"];
    }

    public int Images
    {
        get
        {
            lock (_gate)
            {
                return _images;
            }
        }
    }

    public double Auroc
    {
        get
        {
            lock (_gate)
            {
                return Metrics.Auroc(_scores);
            }
        }
    }

    public double Recall => Ratio(() => (_found, _defects));

    public double StrictRecall => Ratio(() => (_foundStrict, _defects));

    public double Precision => Ratio(() => (_matchingBoxes, _boxes));

    public double SerialAccuracy => Ratio(() => (_serialsRead, _images));

    /// <summary>The summary figures: " auroc=… recall=… precision=… serial_accuracy=…".</summary>
    public string Figures => string.Create(CultureInfo.InvariantCulture, $" auroc={Auroc:0.000} recall={Recall:0.000} precision={Precision:0.000} serial_accuracy={SerialAccuracy:0.000}");

    /// <summary>The details: recall at IoU 0.5, recall per severity band, counts.</summary>
    public string Details
    {
        get
        {
            lock (_gate)
            {
                var bands = string.Join(' ', Bands
                    .Where(_bands.ContainsKey)
                    .Select(b => string.Create(CultureInfo.InvariantCulture, $"recall_{b}={_bands[b].Found / (double)_bands[b].Defects:0.000} ({_bands[b].Found}/{_bands[b].Defects})")));
                return string.Create(CultureInfo.InvariantCulture,
                    $"recall@0.5={(_defects == 0 ? double.NaN : _foundStrict / (double)_defects):0.000} {bands} defects={_defects} boxes={_boxes} serials_read={_serialsRead}/{_images}");
            }
        }
    }

    private double Ratio(Func<(int Part, int Whole)> read)
    {
        lock (_gate)
        {
            var (part, whole) = read();
            return whole == 0 ? double.NaN : part / (double)whole;
        }
    }
}
