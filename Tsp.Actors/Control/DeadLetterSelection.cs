using System.Globalization;

namespace Tsp.Actors.Control;

/// <summary>Which dead letters a redrive takes: <c>all</c>, one id <c>N</c>, or an inclusive range
/// <c>N-M</c> of ids (<see cref="Protocol.DeadLetter.Id"/>).</summary>
public readonly record struct DeadLetterSelection(long From, long To)
{
    public static readonly DeadLetterSelection All = new(1, long.MaxValue);

    public bool Contains(long id) => id >= From && id <= To;

    /// <exception cref="FormatException">Naming the text and what is expected.</exception>
    public static DeadLetterSelection Parse(string text)
    {
        var trimmed = text.Trim();
        if (trimmed.Equals("all", StringComparison.OrdinalIgnoreCase))
        {
            return All;
        }

        var dash = trimmed.IndexOf('-', StringComparison.Ordinal);
        var (first, last) = dash < 0 ? (trimmed, trimmed) : (trimmed[..dash], trimmed[(dash + 1)..]);
        if (!long.TryParse(first, NumberStyles.None, CultureInfo.InvariantCulture, out var from) || !long.TryParse(last, NumberStyles.None, CultureInfo.InvariantCulture, out var to) || from < 1 || to < from)
        {
            throw new FormatException($"'{text}' is not a dead-letter selection: expected all, an id N, or a range N-M with 1 <= N <= M");
        }

        return new DeadLetterSelection(from, to);
    }
}
