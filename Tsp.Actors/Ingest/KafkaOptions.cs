namespace Tsp.Actors.Ingest;

/// <summary>Kafka ingest settings (section <c>Tsp:Kafka</c>).</summary>
public sealed class KafkaOptions
{
    /// <summary>Bootstrap servers, host:port[,host:port]. Empty: no Kafka ingest (standalone embeds a
    /// librdkafka mock cluster instead).</summary>
    public string? Bootstrap { get; set; }

    /// <summary>Runs per project that may be accepted and unfinished at once; past it, consumption pauses.</summary>
    public int MaxInFlightRuns { get; set; } = 256;

    /// <summary>Most records the source hands on at once: what the consumer has fetched, up to this
    /// many, becomes one batch — its frames one pipelined Redis write, its starts one message and one
    /// journal write per run host.</summary>
    public int BatchSize { get; set; } = 1024;

    /// <summary>A batch also ends once its records' values reach this many bytes (large images).</summary>
    public long BatchBytes { get; set; } = 8L << 20;

    /// <summary>Batches per project being turned into runs at once. Offsets are still committed in
    /// record order.</summary>
    public int Parallelism { get; set; } = 4;

    /// <summary>Wait before retrying a message whose run could not be started (e.g. ask timeout).</summary>
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Also publish every dead-lettered record, as it came, to <c>tsp.{project}.dead</c> with
    /// headers <c>tsp-dead-reason</c> and <c>tsp-dead-source</c> (topic/partition/offset).</summary>
    public bool DeadLetterTopic { get; set; }

    /// <summary>Extra librdkafka consumer settings, e.g. security.protocol.</summary>
    public Dictionary<string, string> Consumer { get; set; } = new(StringComparer.Ordinal);
}
