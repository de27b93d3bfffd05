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
}
