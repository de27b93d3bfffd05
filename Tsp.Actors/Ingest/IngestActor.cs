using System.Buffers;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Akka;
using Akka.Actor;
using Akka.Cluster.Tools.PublishSubscribe;
using Akka.Event;
using Akka.Streams;
using Akka.Streams.Dsl;
using Confluent.Kafka;
using Tsp.Actors.Northbound;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Actors.Telemetry;
using Tsp.Actors.Workflows;

namespace Tsp.Actors.Ingest;

/// <summary>Asks an ingest actor for its numbers.</summary>
public sealed record GetIngestStats
{
    public static readonly GetIngestStats Instance = new();
}

public sealed record IngestStats(string Project, int InFlightRuns, int MaxInFlightRuns, int PeakInFlightRuns, long Consumed, long Started, long DeadLettered, IReadOnlyList<KafkaPartitionState> Partitions, bool Paused = false, long BackpressurePauses = 0, long Assignments = 0);

/// <summary>
/// Kafka ingest of one project (role orchestrator): topic <c>tsp.{project}.frames</c>, group
/// <c>tsp-ingest-{project}</c>. Every record becomes exactly one run (run id from topic, partition and
/// offset); its offset is committed only once the run is persisted — or the record is dead-lettered.
/// A bad record is dead-lettered with its reason, committed, logged once, and never blocks its partition.
/// A run that cannot be started (the journal or an orchestrator is unavailable) is retried, not skipped.
/// While the project is paused (its control state, <see cref="ControlTopic"/>) no run is started and
/// nothing more is read: the lag grows and nothing is lost.
/// </summary>
public sealed class IngestActor : ReceiveActor, IDisposable, IWithTimers
{
    private const string AskControlTimer = "ask-control";
    private readonly string _project;
    private readonly KafkaOptions _options;
    private readonly RunSubmitter _submitter;
    private readonly RedisStore _store;
    private readonly InFlightRuns<(int Partition, long Offset)> _inFlight;
    private readonly string _topic;
    private readonly KafkaSourceProbe _probe = new();
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly CancellationTokenSource _stopping = new();
    private UniqueKillSwitch? _killSwitch;
    private IDisposable? _lagGauge;
    private IProducer<byte[]?, byte[]?>? _deadLetterProducer;
    private long _consumed;
    private long _started;
    private long _deadLettered;
    private int _stalledStarts;
    private long _stallSince;
    private long _lastStallLog;
    private readonly Dictionary<int, long> _lastOffsets = [];
    private readonly IActorRef? _projectControl;
    private readonly PauseGate _gate;
    private readonly RateLimits? _rateLimits;
    private bool _controlKnown;

    /// <param name="projectControl">Where the project's control state is asked for (the control
    /// entities' region); null: never paused.</param>
    /// <param name="rateLimits">The projects' limits on accepted frames (null: none).</param>
    public IngestActor(string project, KafkaOptions options, RunSubmitter submitter, RedisStore store, IActorRef? projectControl = null, RateLimits? rateLimits = null)
    {
        _projectControl = projectControl;
        _rateLimits = rateLimits;
        // Closed until the control state is known: a paused project stays paused across restarts.
        _gate = new PauseGate(open: projectControl is null);
        _project = project;
        _options = options;
        _submitter = submitter;
        _store = store;
        _inFlight = new(options.MaxInFlightRuns);
        _topic = KafkaTopics.Frames(project);

        Receive<TpResult>(result =>
        {
            // Other results of the project (runs submitted over gRPC) hold no slot here.
            if (KafkaRunId.TryParse(result.RunId, _topic, out var partition, out var offset))
            {
                _inFlight.Release((partition, offset));
            }
        });
        Receive<SubscribeAck>(_ => { });
        Receive<ProjectControlState>(OnControl);
        Receive<AskControl>(_ => _projectControl?.Tell(new GetProjectControlState { Project = _project }));
        Receive<GetIngestStats>(_ => Sender.Tell(new IngestStats(
            _project, _inFlight.Count, _inFlight.Max, _inFlight.Peak, Interlocked.Read(ref _consumed), Interlocked.Read(ref _started), Interlocked.Read(ref _deadLettered), _probe.Partitions, !_gate.IsOpen, _probe.Pauses, _probe.Assignments)));
        Receive<Status.Failure>(failure => throw new InvalidOperationException($"kafka ingest of '{_project}' failed", failure.Cause));
        Receive<Done>(_ => throw new InvalidOperationException($"kafka ingest of '{_project}' ended"));
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(string project, KafkaOptions options, RunSubmitter submitter, RedisStore store, IActorRef? projectControl = null, RateLimits? rateLimits = null) =>
        Akka.Actor.Props.Create(() => new IngestActor(project, options, submitter, store, projectControl, rateLimits));

    /// <summary>The pub-sub topic a project's control state is published on when it changes.</summary>
    public static string ControlTopic(string project) => $"tsp-control.{project}";

    /// <summary>The project's control state, asked for or published: pause or resume ingest. Asked
    /// every 5 s until the first answer, then every 30 s, in case a published change was lost.</summary>
    private void OnControl(ProjectControlState state)
    {
        if (!_controlKnown)
        {
            _controlKnown = true;
            Timers.StartPeriodicTimer(AskControlTimer, AskControl.Instance, TimeSpan.FromSeconds(30));
        }

        if (state.Paused && _gate.IsOpen)
        {
            _gate.Close();
            _log.Info("kafka ingest of '{0}': paused by {1}; runs in flight finish, nothing more is read", _project, state.ChangedBy);
        }
        else if (!state.Paused && !_gate.IsOpen)
        {
            _gate.Open();
            _log.Info("kafka ingest of '{0}': consuming", _project);
        }
    }

    protected override void PreStart()
    {
        _lagGauge = TspMetrics.KafkaLag.Observe(() => _probe.Partitions.Where(p => p.Lag >= 0).Select(p => new Measurement<long>(
            p.Lag,
            new KeyValuePair<string, object?>("project", _project),
            new KeyValuePair<string, object?>("topic", _topic),
            new KeyValuePair<string, object?>("partition", p.Partition))));
        DistributedPubSub.Get(Context.System).Mediator.Tell(new Subscribe(ResultPublisher.TopicFor(_project), Self));
        if (_projectControl is not null)
        {
            DistributedPubSub.Get(Context.System).Mediator.Tell(new Subscribe(ControlTopic(_project), Self));
            Self.Tell(AskControl.Instance);
            Timers.StartPeriodicTimer(AskControlTimer, AskControl.Instance, TimeSpan.FromSeconds(5));
        }

        var config = new ConsumerConfig(new Dictionary<string, string>(_options.Consumer))
        {
            BootstrapServers = _options.Bootstrap,
            GroupId = KafkaTopics.ConsumerGroup(_project),
            AutoOffsetReset = AutoOffsetReset.Earliest,
            AutoCommitIntervalMs = 500,
            // Bounded prefetch: with the partitions paused, this is all the memory ingest holds.
            QueuedMaxMessagesKbytes = 16 * 1024,
            // A project's topic may not exist yet when ingest starts: ask for it (brokers that allow
            // auto-creation create it) and notice new partitions within seconds, not minutes.
            AllowAutoCreateTopics = true,
            // An orchestrator that dies without leaving the group holds its partitions this long.
            SessionTimeoutMs = 10_000,
            HeartbeatIntervalMs = 2_000,
            TopicMetadataRefreshIntervalMs = 5000,
        };
        if (_options.DeadLetterTopic)
        {
            _deadLetterProducer = new ProducerBuilder<byte[]?, byte[]?>(new ProducerConfig
            {
                BootstrapServers = _options.Bootstrap,
                Acks = Acks.All,
                MessageMaxBytes = 64 * 1024 * 1024,
            }).Build();
        }

        var topic = _topic;
        var (killSwitch, done) = KafkaSourceStage.Create(config, topic, Math.Max(1, _options.BatchSize), Math.Max(1, _options.BatchBytes), _probe)
            .SelectAsync(Math.Max(1, _options.Parallelism), HandleBatchAsync)
            .ViaMaterialized(KillSwitches.Single<IReadOnlyList<KafkaMessage>>(), Keep.Right)
            .ToMaterialized(Sink.ForEach<IReadOnlyList<KafkaMessage>>(KafkaMessage.CommitAll), Keep.Both)
            .Run(KafkaSourceStage.Materializer(Context));
        _killSwitch = killSwitch;
        done.PipeTo(Self);
        _log.Info("kafka ingest of '{0}': topic {1}, group {2}, at most {3} runs in flight", _project, topic, config.GroupId, _options.MaxInFlightRuns);
    }

    protected override void PostStop()
    {
        _lagGauge?.Dispose();
        _stopping.Cancel();
        _killSwitch?.Shutdown();
        _deadLetterProducer?.Flush(TimeSpan.FromSeconds(5));
        _deadLetterProducer?.Dispose();
        _deadLetterProducer = null;
        DistributedPubSub.Get(Context.System).Mediator.Tell(new Unsubscribe(ResultPublisher.TopicFor(_project), Self));
        if (_projectControl is not null)
        {
            DistributedPubSub.Get(Context.System).Mediator.Tell(new Unsubscribe(ControlTopic(_project), Self));
        }
    }

    public void Dispose()
    {
        _stopping.Dispose();
        _inFlight.Dispose();
    }

    private sealed record AskControl
    {
        public static readonly AskControl Instance = new();
    }

    /// <summary>Turns a batch into runs. Decoding and gap checks happen here, in record order on the
    /// stream's thread; the runs of the batch are then started together, in as few pieces as free
    /// in-flight slots allow. Completes with what to commit: per partition its last record.</summary>
    private Task<IReadOnlyList<KafkaMessage>> HandleBatchAsync(IReadOnlyList<KafkaMessage> batch)
    {
        var commits = KafkaMessage.LastPerPartition(batch);
        var runs = new PendingRuns(batch.Count, keepRecords: _deadLetterProducer is not null);
        List<(KafkaMessage Message, string Error)>? bad = null;
        foreach (var message in batch)
        {
            var record = message.Record;
            var (partition, offset) = (record.Partition.Value, record.Offset.Value);
            WarnOnGap(partition, offset);
            var (frame, error) = FrameDecoder.Decode(_project, record, _submitter.MaxFrameBytes);
            if (error is not null)
            {
                (bad ??= []).Add((message, error));
            }
            else
            {
                runs.Add(new PartitionRun(frame, partition, offset), message);
            }
        }

        // From here on the batch's Kafka records are not referenced (see PendingRuns).
        return StartBatchAsync(batch.Count, runs, bad, commits);
    }

    private async Task<IReadOnlyList<KafkaMessage>> StartBatchAsync(int records, PendingRuns runs, List<(KafkaMessage Message, string Error)>? bad, IReadOnlyList<KafkaMessage> commits)
    {
        if (!_gate.IsOpen)
        {
            await _gate.WaitOpenAsync(_stopping.Token);
        }

        if (_rateLimits is not null && runs.Count > 0)
        {
            // Over the project's rate limit, the batch waits: the stream holds back and the Kafka
            // source pauses, as for any backpressure.
            await _rateLimits.AcquireAsync(_project, runs.Count, _stopping.Token);
        }

        Interlocked.Add(ref _consumed, records);
        foreach (var (message, error) in bad ?? [])
        {
            await DeadLetterAsync(message.Reference, error, message);
        }

        try
        {
            // runs[from..i) hold slots and are not started yet.
            var (from, i) = (0, 0);
            while ((i += _inFlight.TryAcquireAll(runs.SlotsFrom(i))) < runs.Count)
            {
                // Start what holds slots before waiting for one: those runs' results free the slots.
                await StartAllAsync(runs, from, i);
                from = i;
                await _inFlight.AcquireAsync(runs.SlotOf(i), _stopping.Token);
                i++;
            }

            await StartAllAsync(runs, from, runs.Count);
            return commits;
        }
        finally
        {
            runs.Dispose();
        }
    }

    /// <summary>A batch's decoded records on their way to becoming runs: what starting them takes and,
    /// should a start be rejected, what dead-lettering it takes. The Kafka records themselves are kept
    /// only for the dead-letter topic: a batch's records can then be collected once decoded, instead
    /// of living until the batch's journal write (and being promoted by the collections in between).</summary>
    private sealed class PendingRuns(int capacity, bool keepRecords) : IDisposable
    {
        // Rented: at thousands of records per batch (Kafka:BatchSize) each array passes 85 KB, and
        // fresh ones would go to the large object heap, whose budget triggers full collections.
        private PartitionRun[] _runs = ArrayPool<PartitionRun>.Shared.Rent(capacity);
        private (int Partition, long Offset)[] _slots = ArrayPool<(int, long)>.Shared.Rent(capacity);
        private readonly KafkaMessage?[]? _records = keepRecords ? new KafkaMessage?[capacity] : null;

        public int Count { get; private set; }

        public void Add(PartitionRun run, KafkaMessage record)
        {
            _runs[Count] = run;
            _slots[Count] = (run.Partition, run.Offset);
            if (_records is not null)
            {
                _records[Count] = record;
            }

            Count++;
        }

        public PartitionRun this[int index] => _runs[index];

        public KafkaMessage? RecordOf(int index) => _records?[index];

        public (int Partition, long Offset) SlotOf(int index) => _slots[index];

        public ReadOnlySpan<(int Partition, long Offset)> SlotsFrom(int index) => _slots.AsSpan(index, Count - index);

        public ArraySegment<PartitionRun> Slice(int from, int to) => new(_runs, from, to - from);

        /// <summary>Gives the arrays back once the batch is started (or ingest stops); its frames are
        /// cleared from them so that the pool holds no frame alive.</summary>
        public void Dispose()
        {
            if (_runs.Length > 0)
            {
                ArrayPool<PartitionRun>.Shared.Return(_runs, clearArray: true);
                ArrayPool<(int, long)>.Shared.Return(_slots);
            }

            (_runs, _slots, Count) = ([], [], 0);
        }
    }

    /// <summary>Starts runs[from..to).</summary>
    private async Task StartAllAsync(PendingRuns runs, int from, int to)
    {
        if (to == from)
        {
            return;
        }

        var submissions = runs.Slice(from, to);
        var (outcomes, errors) = await StartAsync(submissions);
        var accepted = 0;
        for (var i = 0; i < outcomes.Length; i++)
        {
            switch (outcomes[i])
            {
                case StartOutcome.Accepted:
                    accepted++;
                    break;
                case StartOutcome.AlreadyRunning:
                    break;
                case StartOutcome.Rejected:
                    _inFlight.Release(runs.SlotOf(from + i));
                    await DeadLetterAsync($"{_topic}/{runs[from + i].Partition}/{runs[from + i].Offset}", errors?[i] ?? "rejected", runs.RecordOf(from + i));
                    break;
                default:
                    _inFlight.Release(runs.SlotOf(from + i));
                    break;
            }
        }

        Interlocked.Add(ref _started, accepted);
    }

    /// <summary>Offsets this consumer never saw: the broker dropped them before ingest read them
    /// (retention; the embedded mock broker keeps only a few MB per partition), or transaction markers.
    /// Called in record order, from the stream's one thread.</summary>
    private void WarnOnGap(int partition, long offset)
    {
        if (_lastOffsets.TryGetValue(partition, out var last) && offset > last + 1)
        {
            _log.Warning("kafka ingest of '{0}': partition {1} skipped offsets {2}..{3}: removed by the broker before ingest read them (retention) or transaction markers", _project, partition, last + 1, offset - 1);
        }

        _lastOffsets[partition] = offset;
    }

    /// <summary>Starts runs, retrying until their starts are confirmed or ingest stops. While the cluster cannot
    /// take starts (a failover, the journal down) every batch in progress retries; that is logged
    /// when it begins, at most every 10 s while it lasts, and when it ends — not once per record.</summary>
    private async Task<(StartOutcome[] Outcomes, string?[]? Errors)> StartAsync(ArraySegment<PartitionRun> submissions)
    {
        var stalled = false;
        try
        {
            while (true)
            {
                try
                {
                    return await _submitter.SubmitPartitionRunsAsync(_project, _topic, submissions, _stopping.Token);
                }
                catch (Exception e) when (!_stopping.IsCancellationRequested)
                {
                    if (!stalled)
                    {
                        stalled = true;
                        if (Interlocked.Increment(ref _stalledStarts) == 1)
                        {
                            _stallSince = Stopwatch.GetTimestamp();
                            Interlocked.Exchange(ref _lastStallLog, _stallSince);
                            _log.Warning("kafka ingest of '{0}': runs cannot be started ({1}: {2}); retrying every {3} ms (first: {4})", _project, e.GetType().Name, e.Message, _options.RetryDelay.TotalMilliseconds, KafkaRunId.Of(_topic, submissions[0].Partition, submissions[0].Offset));
                        }
                    }

                    var lastLog = Interlocked.Read(ref _lastStallLog);
                    if (Stopwatch.GetElapsedTime(lastLog) > TimeSpan.FromSeconds(10) && Interlocked.CompareExchange(ref _lastStallLog, Stopwatch.GetTimestamp(), lastLog) == lastLog)
                    {
                        _log.Warning("kafka ingest of '{0}': {1} run starts still retrying ({2}: {3})", _project, Volatile.Read(ref _stalledStarts), e.GetType().Name, e.Message);
                    }

                    await Task.Delay(_options.RetryDelay, _stopping.Token);
                }
            }
        }
        finally
        {
            if (stalled && Interlocked.Decrement(ref _stalledStarts) == 0 && !_stopping.IsCancellationRequested)
            {
                _log.Info("kafka ingest of '{0}': run starts accepted again after {1:0.0} s", _project, Stopwatch.GetElapsedTime(_stallSince).TotalSeconds);
            }
        }
    }

    /// <param name="reference">topic/partition/offset.</param>
    /// <param name="message">The record as it came, for the dead-letter topic; null when that is off.</param>
    private async Task DeadLetterAsync(string reference, string reason, KafkaMessage? message)
    {
        Interlocked.Increment(ref _deadLettered);
        _log.Warning("kafka ingest of '{0}': {1} dead-lettered: {2}", _project, reference, reason);
        await _store.AppendDeadLetterAsync(new Protocol.DeadLetter
        {
            Project = _project,
            Origin = "kafka",
            Reference = reference,
            Reason = reason,
            AtUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
        });
        if (_deadLetterProducer is { } producer && message is not null)
        {
            var headers = new Headers();
            foreach (var header in message.Record.Message.Headers ?? [])
            {
                headers.Add(header.Key, header.GetValueBytes());
            }

            headers.Add(KafkaTopics.DeadReasonHeader, System.Text.Encoding.UTF8.GetBytes(reason));
            headers.Add(KafkaTopics.DeadSourceHeader, System.Text.Encoding.UTF8.GetBytes(reference));
            await producer.ProduceAsync(KafkaTopics.DeadLetters(_project), new Message<byte[]?, byte[]?> { Key = message.Record.Message.Key, Value = message.Record.Message.Value, Headers = headers });
        }
    }
}
