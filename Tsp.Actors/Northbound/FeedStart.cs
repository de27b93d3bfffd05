using System.Globalization;

namespace Tsp.Actors.Northbound;

/// <summary>
/// Where a subscription starts, per project: the first position to deliver, or null for "latest"
/// (only results logged from now on). Positions start at 1; "earliest" is 1.
/// </summary>
public static class FeedStart
{
    public const string Latest = "latest";
    public const string Earliest = "earliest";

    /// <summary>Parses a subscriber's <c>from</c>: empty or "latest", "earliest", "N" (one project
    /// only), or "project=N,project=N" (projects not named start at latest).</summary>
    /// <exception cref="FormatException">The message names what is wrong.</exception>
    public static IReadOnlyDictionary<string, long?> Parse(string? from, IReadOnlyCollection<string> projects)
    {
        var text = (from ?? "").Trim();
        if (text.Length == 0 || text.Equals(Latest, StringComparison.OrdinalIgnoreCase))
        {
            return projects.ToDictionary(p => p, _ => (long?)null, StringComparer.Ordinal);
        }

        if (text.Equals(Earliest, StringComparison.OrdinalIgnoreCase))
        {
            return projects.ToDictionary(p => p, _ => (long?)1, StringComparer.Ordinal);
        }

        if (!text.Contains('=', StringComparison.Ordinal))
        {
            var position = ParsePosition(text, text);
            if (projects.Count != 1)
            {
                throw new FormatException($"from '{text}': a bare position needs exactly one project ({projects.Count} given); write project=position for each");
            }

            return new Dictionary<string, long?>(StringComparer.Ordinal) { [projects.First()] = position };
        }

        var starts = projects.ToDictionary(p => p, _ => (long?)null, StringComparer.Ordinal);
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries))
        {
            var pair = part.Split('=', 2, StringSplitOptions.TrimEntries);
            if (pair.Length != 2 || pair[0].Length == 0)
            {
                throw new FormatException($"from '{text}': '{part}' is not project=position");
            }

            if (!starts.ContainsKey(pair[0]))
            {
                throw new FormatException($"from '{text}': project '{pair[0]}' is not among the subscribed projects ({string.Join(", ", projects)})");
            }

            starts[pair[0]] = ParsePosition(pair[1], text);
        }

        return starts;
    }

    /// <summary>The <c>from</c> that resumes exactly after what was delivered.</summary>
    public static string Format(IReadOnlyDictionary<string, long> next) =>
        string.Join(',', next.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}={p.Value.ToString(CultureInfo.InvariantCulture)}"));

    private static long ParsePosition(string value, string text) =>
        long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var position) && position >= 1
            ? position
            : throw new FormatException($"from '{text}': position '{value}' is not a whole number ≥ 1 (or 'latest', 'earliest')");
}
