using System.Globalization;

namespace Tsp.Actors.Workflows;

/// <summary>
/// Run ids of the form <c>{prefix}{offset}</c>, where the prefix ends in '-' and the offset is a
/// non-negative decimal without leading zeros: a Kafka record's run (<c>{topic}-{partition}-{offset}</c>).
/// Runs of one partition can then travel and wait as a prefix and an array of offsets
/// (<see cref="Protocol.RunsStarted.RunIdPrefix"/>) instead of a string each.
/// </summary>
public static class SeriesRunId
{
    public static string Of(string prefix, long offset) => string.Concat(prefix, offset.ToString(CultureInfo.InvariantCulture));

    /// <summary>Splits a run id into its prefix (up to and including the last '-') and offset; false
    /// when it is not of that form, or its offset is not written the one way <see cref="Of"/> writes it
    /// (so that a run id and its (prefix, offset) name each other one to one).</summary>
    public static bool TryParse(ReadOnlySpan<char> runId, out ReadOnlySpan<char> prefix, out long offset)
    {
        prefix = default;
        offset = 0;
        var dash = runId.LastIndexOf('-');
        var digits = runId[(dash + 1)..];
        if (dash < 0 || digits.IsEmpty || digits.Length > 18 || (digits[0] == '0' && digits.Length > 1))
        {
            return false;
        }

        foreach (var c in digits)
        {
            if (c is < '0' or > '9')
            {
                return false;
            }

            offset = (offset * 10) + (c - '0');
        }

        prefix = runId[..(dash + 1)];
        return true;
    }

    /// <summary>The UTF-8 bytes of <see cref="Of"/> written into <paramref name="destination"/> after the
    /// prefix's bytes, which it already holds (<paramref name="prefixLength"/> of them): for hashing a
    /// run id without building it.</summary>
    public static int WriteUtf8(Span<byte> destination, int prefixLength, long offset)
    {
        if (!offset.TryFormat(destination[prefixLength..], out var written, default, CultureInfo.InvariantCulture))
        {
            throw new ArgumentException("the buffer is too small for the run id", nameof(destination));
        }

        return prefixLength + written;
    }
}
