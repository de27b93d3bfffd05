using System.Globalization;

namespace Tsp.Actors.Protocol;

/// <summary>
/// The one definition of a Kafka record's run id: <c>{topic}-{partition}-{offset}</c>, so that the same
/// record, redelivered, is the same run. Split as <c>{prefix}{offset}</c> (the prefix ends in '-', the
/// offset is a non-negative decimal without leading zeros), the runs of one partition travel, are
/// journaled and wait as a prefix and an array of offsets (<see cref="RunsStarted.RunIdPrefix"/>)
/// instead of a string each. Ingest builds these ids; run hosts find queued runs by them.
/// </summary>
public static class KafkaRunId
{
    /// <summary>The run of a Kafka record.</summary>
    public static string Of(string topic, int partition, long offset) => Of(Prefix(topic, partition), offset);

    /// <summary>What the run ids of a partition's records start with.</summary>
    public static string Prefix(string topic, int partition) => string.Create(CultureInfo.InvariantCulture, $"{topic}-{partition}-");

    public static string Of(string prefix, long offset) => string.Concat(prefix, offset.ToString(CultureInfo.InvariantCulture));

    /// <summary>Splits a run id into its prefix (up to and including the last '-') and offset; false
    /// when it is not of that form, or its offset is not written the one way <see cref="Of(string, long)"/>
    /// writes it (so that a run id and its (prefix, offset) name each other one to one).</summary>
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

    /// <summary>The partition and offset of a run id of <paramref name="topic"/>'s records; false for any
    /// other run id.</summary>
    public static bool TryParse(string runId, string topic, out int partition, out long offset)
    {
        partition = 0;
        if (!TryParse(runId, out var prefix, out offset))
        {
            return false;
        }

        // prefix = "{topic}-{partition}-"
        var rest = prefix[..^1];
        var dash = rest.LastIndexOf('-');
        return dash == topic.Length
            && rest[..dash].SequenceEqual(topic)
            && int.TryParse(rest[(dash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out partition)
            && rest.Length - dash - 1 == partition.ToString(CultureInfo.InvariantCulture).Length;
    }

    /// <summary>The UTF-8 bytes of <see cref="Of(string, long)"/> written into <paramref name="destination"/>
    /// after the prefix's bytes, which it already holds (<paramref name="prefixLength"/> of them): for
    /// hashing a run id without building it.</summary>
    public static int WriteUtf8(Span<byte> destination, int prefixLength, long offset)
    {
        if (!offset.TryFormat(destination[prefixLength..], out var written, default, CultureInfo.InvariantCulture))
        {
            throw new ArgumentException("the buffer is too small for the run id", nameof(destination));
        }

        return prefixLength + written;
    }
}
