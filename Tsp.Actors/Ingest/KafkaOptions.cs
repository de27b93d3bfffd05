namespace Tsp.Actors.Ingest;

/// <summary>Kafka ingest settings (section <c>Tsp:Kafka</c>).</summary>
public sealed class KafkaOptions
{
    /// <summary>Bootstrap servers, host:port[,host:port]. Empty: no Kafka ingest (standalone embeds a
    /// librdkafka mock cluster instead).</summary>
    public string? Bootstrap { get; set; }

    /// <summary>Runs per project that may be accepted and unfinished at once; past it, consumption pauses.</summary>
    public int MaxInFlightRuns { get; set; } = 256;

    /// <summary>Messages per project being turned into runs at once (frame to Redis, run persisted).
    /// Run hosts write the starts that arrive together as one journal entry, so more at once means
    /// fewer, larger writes: bench ingest 3,430 records/s at 32, 7,518 at 128, 11,166 at 512.</summary>
    public int Parallelism { get; set; } = 256;

    /// <summary>Wait before retrying a message whose run could not be started (e.g. ask timeout).</summary>
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Also publish every dead-lettered record, as it came, to <c>tsp.{project}.dead</c> with
    /// headers <c>tsp-dead-reason</c> and <c>tsp-dead-source</c> (topic/partition/offset).</summary>
    public bool DeadLetterTopic { get; set; }

    /// <summary>Extra librdkafka consumer settings, e.g. security.protocol.</summary>
    public Dictionary<string, string> Consumer { get; set; } = new(StringComparer.Ordinal);
}
