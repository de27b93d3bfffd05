using System.Diagnostics.Metrics;

namespace Tsp.Actors.Telemetry;

/// <summary>
/// Every instrument of the platform, on one <see cref="Meter"/> named <see cref="MeterName"/>; a host
/// chooses the exporter (Prometheus on its HTTP port). Names are the exported ones less the suffixes
/// the Prometheus exporter adds: <c>_total</c> for a counter, <c>_seconds</c> for the unit <c>s</c>.
/// Labels: <c>project</c>, <c>queue</c>, <c>node</c>, <c>model</c>, <c>version</c>, <c>status</c>
/// where each applies.
/// </summary>
public static class TspMetrics
{
    public const string MeterName = "Tsp";

    /// <summary>From a millisecond (a Redis round trip) to five minutes (a training step).</summary>
    private static readonly double[] SecondsBuckets =
        [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

    private static readonly int[] BatchSizeBuckets = [1, 2, 4, 8, 16, 32, 64, 128];

    private static readonly Meter Meter = new(MeterName);

    public static readonly Counter<long> RunsStarted = Meter.CreateCounter<long>(
        "tsp_runs_started", description: "Runs accepted, once durable (a redelivered run that is known does not count).");

    public static readonly Counter<long> RunsCompleted = Meter.CreateCounter<long>(
        "tsp_runs_completed", description: "Runs finished and published, by status (succeeded, failed).");

    public static readonly Histogram<double> RunDuration = Seconds(
        "tsp_run_duration", "From a run's acceptance to its result in the results log.");

    public static readonly Histogram<double> NodeDuration = Seconds(
        "tsp_node_duration", "One node task on the worker that ran it: inputs read, processor, output written; by status (ok, failed).");

    public static readonly Counter<long> NodeRetries = Meter.CreateCounter<long>(
        "tsp_node_retries", description: "Node tasks sent again after a failure, a timeout or a lost worker.");

    public static readonly Counter<long> DeadLetters = Meter.CreateCounter<long>(
        "tsp_dead_letters", description: "Dead-letter records written, by origin (run, kafka).");

    public static readonly Counter<long> ModelInferences = Meter.CreateCounter<long>(
        "tsp_model_inferences", description: "Requests a model version answered (a request is one node task's input).");

    public static readonly Counter<long> ModelFailures = Meter.CreateCounter<long>(
        "tsp_model_failures", description: "Requests a model version failed (their input was rejected, or the run failed).");

    public static readonly Counter<long> ModelBatches = Meter.CreateCounter<long>(
        "tsp_model_batches", description: "Batches a model version ran.");

    public static readonly Histogram<int> ModelBatchSize = Meter.CreateHistogram(
        "tsp_model_batch_size", unit: null, description: "Rows per batch a model version ran.", tags: null,
        advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = BatchSizeBuckets });

    public static readonly Histogram<double> ModelQueueTime = Seconds(
        "tsp_model_queue", "How long a request waited in its model's queue before its batch ran.");

    public static readonly Histogram<double> ModelComputeTime = Seconds(
        "tsp_model_compute", "ONNX Runtime's time for one batch.");

    public static readonly Histogram<double> JournalWrite = Seconds(
        "tsp_journal_write", "One journal write of a run host (a batch of events), from hand-off to durable.");

    /// <summary>Per queue on the orchestrator that holds it: tasks waiting for a routee.</summary>
    public static readonly GaugeFamily QueueDepth = new(Meter, "tsp_queue_depth", "Node tasks waiting in a queue for a free routee slot.");

    /// <summary>Per queue: tasks handed to routees and not yet answered.</summary>
    public static readonly GaugeFamily QueueInFlight = new(Meter, "tsp_queue_in_flight", "Node tasks handed to routees and not answered yet.");

    /// <summary>Per queue: routee slots free for a task now (draining and unreachable routees give none).</summary>
    public static readonly GaugeFamily QueueFreeCredits = new(Meter, "tsp_queue_free_credits", "Routee slots free for a task now.");

    /// <summary>Per queue: routees and their slots, whether free or not.</summary>
    public static readonly GaugeFamily QueueRoutees = new(Meter, "tsp_queue_routees", "Routees serving a queue.");

    public static readonly GaugeFamily KafkaLag = new(Meter, "tsp_kafka_lag", "Records of an assigned partition not consumed yet (end offset at the last fetch minus the next offset).");

    public static readonly GaugeFamily Subscribers = new(Meter, "tsp_subscribers", "Open result subscriptions (gRPC and Akka remote) served by this process.");

    public static readonly GaugeFamily SubscriberLag = new(Meter, "tsp_subscriber_lag", "Results in a subscriber's buffer not yet sent to it (the largest per project); the feed ends at the buffer's size.");

    public static readonly GaugeFamily ActiveRuns = new(Meter, "tsp_runs_active", "Runs held by this process's run hosts: started, or waiting for a turn.");

    public static readonly GaugeFamily WorkerSlots = new(Meter, "tsp_worker_slots", "A worker's slots for a queue: shared by the routees every orchestrator deploys on it.");

    public static readonly GaugeFamily WorkerTasks = new(Meter, "tsp_worker_tasks", "Tasks of a queue this worker runs now.");

    public static readonly GaugeFamily WorkerTasksPeak = new(Meter, "tsp_worker_tasks_peak", "The most tasks of a queue this worker has run at once since it started.");

    public static readonly GaugeFamily ModelsLoaded = new(Meter, "tsp_models_loaded", "Model versions loaded in this process (1 per model, version and execution provider).");

    private static Histogram<double> Seconds(string name, string description) =>
        Meter.CreateHistogram(name, unit: "s", description: description, tags: null,
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = SecondsBuckets });
}
