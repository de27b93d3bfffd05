using SkiaSharp;
using Tsp.Actors.Protocol;
using Tsp.ServiceDefaults.Samples;

namespace Tsp.Actors.Tests.Nodes;

/// <summary>The sample's quality figures and the ground truth they are scored against.</summary>
public sealed class InspectionScoreTests
{
    private static Box B(float x, float y, float w, float h) => new() { X = x, Y = y, Width = w, Height = h };

    private static SurfaceImage Truth(string serial, params SurfaceDefect[] defects) => new([], [], defects, serial, SurfaceKind.Steel);

    private static TpResult Result(double maxScore, params Detection[] detections)
    {
        var result = new TpResult { Status = RunStatus.Succeeded };
        var node = new NodeResult { NodeId = "defects" };
        node.Metrics["max_score"] = maxScore;
        result.Nodes.Add(node);
        result.Detections.AddRange(detections);
        return result;
    }

    private static Detection Defect(Box box) => new() { Label = "defect", Score = 2, Box = box, NodeId = "defects" };

    private static Detection Serial(string text, float score) => new() { Label = "serial", Score = score, Text = text, Box = B(8, 8, 80, 20), NodeId = "serial" };

    [Fact]
    public void Recall_and_precision_match_boxes_at_IoU_0_3_serials_must_match_exactly_and_a_failed_run_is_a_miss()
    {
        var score = new InspectionScore();
        // IoU 100/400 = 0.25: not a match at 0.3. IoU 16/28 ≈ 0.57 matches at 0.3 and 0.5. IoU 0.4: only at 0.3.
        score.Add(Truth("1234-56", new SurfaceDefect(B(0, 0, 10, 10), "spot", 0.3f), new SurfaceDefect(B(50, 50, 4, 4), "spot", 0.9f)),
            Result(3, Defect(B(0, 0, 20, 20)), Defect(B(50, 50, 4, 7)), Serial("1234-56", 0.9f), Serial("1284-56", 0.8f)));
        score.Add(Truth("2222-22", new SurfaceDefect(B(100, 100, 10, 10), "crack", 0.6f)),
            Result(2, Defect(B(100, 100, 10, 4)), Defect(B(200, 200, 5, 5)), Serial("2222-2", 0.99f)));
        score.Add(Truth("3333-33"), Result(0.5, Serial("3333-33", 0.9f)));
        score.Add(Truth("4444-44", new SurfaceDefect(B(10, 10, 5, 5), "scratch", 0.8f)), new TpResult { Status = RunStatus.Failed });

        Assert.Equal(4, score.Images);
        Assert.Equal(2 / 4.0, score.Recall, 3);
        Assert.Equal(1 / 4.0, score.StrictRecall, 3);
        Assert.Equal(2 / 4.0, score.Precision, 3);
        Assert.Equal(2 / 4.0, score.SerialAccuracy, 3);
        // Three scored images (the failed run has no score); both defective ones above the good one.
        Assert.Equal(1.0, score.Auroc, 3);
        Assert.Equal(" auroc=1.000 recall=0.500 precision=0.500 serial_accuracy=0.500", score.Figures);
        Assert.Equal("recall@0.5=0.250 recall_faint=0.000 (0/1) recall_moderate=1.000 (1/1) recall_strong=0.500 (1/2) defects=4 boxes=4 serials_read=2/4", score.Details);
    }

    [Fact]
    public void Generated_defect_boxes_hold_their_mask_after_the_camera_turns_the_view()
    {
        for (var seed = 10; seed < 30; seed++)
        {
            var image = SurfaceImages.Generate(seed, defective: true, SurfaceImages.KindOf(seed));
            using var mask = SKBitmap.Decode(image.MaskPng);
            var (marked, covered) = (0, 0);
            for (var y = 0; y < mask.Height; y++)
            {
                for (var x = 0; x < mask.Width; x++)
                {
                    if (mask.GetPixel(x, y).Red > 127)
                    {
                        marked++;
                        covered += image.Defects.Any(d => x + 0.5f >= d.Box.X - 1 && x + 0.5f <= d.Box.X + d.Box.Width + 1 && y + 0.5f >= d.Box.Y - 1 && y + 0.5f <= d.Box.Y + d.Box.Height + 1) ? 1 : 0;
                    }
                }
            }

            Assert.InRange(image.Defects.Count, 1, 2);
            Assert.True(marked > 0, $"seed {seed}: an empty mask");
            Assert.Equal(marked, covered);
            // Each box is where its own defect is: marked pixels along its middle row or column.
            foreach (var d in image.Defects)
            {
                var (midX, midY) = ((int)(d.Box.X + (d.Box.Width / 2)), (int)(d.Box.Y + (d.Box.Height / 2)));
                var across = Enumerable.Range((int)d.Box.X, (int)Math.Ceiling(d.Box.Width) + 1).Count(x => x < mask.Width && mask.GetPixel(x, Math.Min(midY, mask.Height - 1)).Red > 127)
                    + Enumerable.Range((int)d.Box.Y, (int)Math.Ceiling(d.Box.Height) + 1).Count(y => y < mask.Height && mask.GetPixel(Math.Min(midX, mask.Width - 1), y).Red > 127);
                Assert.True(across > 0, $"seed {seed}: nothing marked across box {d.Box}");
            }
        }

        Assert.Equal(SurfaceImages.Generate(7, defective: true).Png, SurfaceImages.Generate(7, defective: true).Png);
    }
}
