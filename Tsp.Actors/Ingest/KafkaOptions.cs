namespace Tsp.Actors.Ingest;

/// <summary>Kafka ingest settings (section <c>Tsp:Kafka</c>).</summary>
public sealed class KafkaOptions
{
    /// <summary>Bootstrap servers, host:port[,host:port]. Empty: no Kafka ingest (standalone embeds a
    /// librdkafka mock cluster instead).</summary>
    public string? Bootstrap { get; set; }

    /// <summary>Runs per project that may be accepted and unfinished at once; past it, consumption pauses.</summary>
    public int MaxInFlightRuns { get; set; } = 256;

    /// <summary>The default of <see cref="BatchSize"/>. A batch is split over every run host (64 by
    /// default), so what each host gets per batch — one frame string, one start message, one journal
    /// write — holds a 64th of it: at 1,024 records ~16 runs, and those per-host costs and the wait for
    /// the slowest of 64 answers decide the ingest rate. At 8,192 each host gets ~128 runs per batch and
    /// ingest with the runs executing reads 270k–360k records/s on 2 cores against 140k–220k at 1,024
    /// (bench/RESULTS.md). A batch is only what the consumer has already fetched, so a slow stream is
    /// not held back waiting for one to fill, and <see cref="BatchBytes"/> still ends one of large frames.</summary>
    public const int DefaultBatchSize = 8192;

    /// <summary>Most records the source hands on at once: what the consumer has fetched, up to this
    /// many, becomes one batch — its frames one pipelined Redis write, its starts one message and one
    /// journal write per run host.</summary>
    public int BatchSize { get; set; } = DefaultBatchSize;

    /// <summary>The default of <see cref="BatchBytes"/>.</summary>
    public const long DefaultBatchBytes = 8L << 20;

    /// <summary>A batch also ends once its records' values reach this many bytes (large images).</summary>
    public long BatchBytes { get; set; } = DefaultBatchBytes;

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
