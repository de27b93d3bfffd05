using System.Globalization;

namespace Tsp.Actors.Protocol;

/// <summary>
/// The run id of a redriven dead letter: <c>{dead run id}.redrive-{dead letter id}</c>. The id names
/// what it was redriven from (a TP result's <c>redrive_of</c> is read back from it), and redriving the
/// same dead letter again is the same run, so it starts nothing twice.
/// </summary>
public static class Redrives
{
    private const string Marker = ".redrive-";

    public static string RunIdFor(string deadRunId, long deadLetterId) =>
        string.Concat(deadRunId, Marker, deadLetterId.ToString(CultureInfo.InvariantCulture));

    /// <returns>The dead run a redriven run came from; null for a run that is not a redrive.</returns>
    public static string? DeadRunOf(string runId)
    {
        var at = runId.LastIndexOf(Marker, StringComparison.Ordinal);
        if (at <= 0)
        {
            return null;
        }

        var number = runId.AsSpan(at + Marker.Length);
        return number.Length > 0 && long.TryParse(number, NumberStyles.None, CultureInfo.InvariantCulture, out _) ? runId[..at] : null;
    }
}
