namespace Tsp.Actors.Ingest;

/// <summary>The one place that names TSP's Kafka topics, groups and headers.</summary>
public static class KafkaTopics
{
    public const string TpFrameContentType = "application/x-tp-frame";
    public const string SourceIdHeader = "source-id";
    public const string ContentTypeHeader = "content-type";
    public const string CapturedAtHeader = "captured-at";

    public static string Frames(string project) => $"tsp.{project}.frames";

    public const string DeadReasonHeader = "tsp-dead-reason";
    public const string DeadSourceHeader = "tsp-dead-source";

    public static string DeadLetters(string project) => $"tsp.{project}.dead";

    public static string ConsumerGroup(string project) => $"tsp-ingest-{project}";

    /// <summary>The run of a Kafka message: the same message, redelivered, is the same run.</summary>
    public static string RunId(string topic, int partition, long offset) => Workflows.SeriesRunId.Of(RunIdPrefix(topic, partition), offset);

    /// <summary>What the run ids of a partition's records start with (<see cref="Workflows.SeriesRunId"/>).</summary>
    public static string RunIdPrefix(string topic, int partition) => $"{topic}-{partition}-";

    /// <summary>The partition and offset of a run id of <paramref name="topic"/>'s records; false for any
    /// other run id.</summary>
    public static bool TryParseRunId(string runId, string topic, out int partition, out long offset)
    {
        partition = 0;
        if (!Workflows.SeriesRunId.TryParse(runId, out var prefix, out offset))
        {
            return false;
        }

        // prefix = "{topic}-{partition}-"
        var rest = prefix[..^1];
        var dash = rest.LastIndexOf('-');
        return dash == topic.Length
            && rest[..dash].SequenceEqual(topic)
            && int.TryParse(rest[(dash + 1)..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out partition)
            && rest.Length - dash - 1 == partition.ToString(System.Globalization.CultureInfo.InvariantCulture).Length;
    }
}
