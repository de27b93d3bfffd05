namespace Tsp.Actors.Nodes.Imaging;

/// <summary>Quality figures of a detector, for the demo summary and the benchmarks.</summary>
public static class Metrics
{
    /// <summary>Area under the ROC curve: the chance that a random positive scores above a random
    /// negative (ties count half). NaN without both classes.</summary>
    public static double Auroc(IEnumerable<(bool Positive, double Score)> scored)
    {
        var items = scored.ToList();
        var positives = items.Where(i => i.Positive).Select(i => i.Score).ToList();
        var negatives = items.Where(i => !i.Positive).Select(i => i.Score).ToList();
        if (positives.Count == 0 || negatives.Count == 0)
        {
            return double.NaN;
        }

        double wins = 0;
        foreach (var p in positives)
        {
            foreach (var n in negatives)
            {
                wins += p > n ? 1 : p == n ? 0.5 : 0;
            }
        }

        return wins / (positives.Count * (double)negatives.Count);
    }
}
