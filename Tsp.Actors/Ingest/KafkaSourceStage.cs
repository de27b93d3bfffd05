using System.Diagnostics;
using Akka.Event;
using Akka.Streams;
using Akka;
using Akka.Actor;
using Akka.Streams.Dsl;
using Akka.Streams.Stage;
using Tsp.Actors.Dispatch;
using Confluent.Kafka;

namespace Tsp.Actors.Ingest;

/// <summary>A consumed Kafka record and the way to acknowledge it.</summary>
public sealed class KafkaMessage(ConsumeResult<byte[]?, byte[]?> record, IConsumer<byte[]?, byte[]?> consumer)
{
    public ConsumeResult<byte[]?, byte[]?> Record { get; } = record;

    public string Reference => $"{Record.Topic}/{Record.Partition.Value}/{Record.Offset.Value}";

    /// <summary>Marks the record done: its offset is committed with the next (batched) auto-commit.
    /// Call in partition order; false when the partition was revoked meanwhile (its new owner will
    /// get the record again, and the idempotent run start absorbs it).</summary>
    public bool Commit()
    {
        try
        {
            consumer.StoreOffset(Record);
            return true;
        }
        catch (KafkaException)
        {
            return false;
        }
        catch (ObjectDisposedException)
        {
            return false;
        }
    }

    /// <summary>Commits a batch in record order: per partition, its last record's offset (which
    /// covers every earlier one).</summary>
    public static void CommitAll(IReadOnlyList<KafkaMessage> batch)
    {
        foreach (var message in LastPerPartition(batch))
        {
            message.Commit();
        }
    }

    /// <summary>Per partition the batch's last record: what committing the batch takes.</summary>
    public static IReadOnlyList<KafkaMessage> LastPerPartition(IReadOnlyList<KafkaMessage> batch)
    {
        var last = new Dictionary<int, KafkaMessage>();
        foreach (var message in batch)
        {
            last[message.Record.Partition.Value] = message;
        }

        return [.. last.Values];
    }
}

/// <summary>
/// A committable Kafka source over Confluent.Kafka (Akka.Streams.Kafka is not available here).
/// Each element is a batch: what the consumer has fetched when downstream asks, up to a maximum.
/// On demand it waits up to <see cref="PollWait"/> in a blocking Consume for the first record (so run
/// it on a dispatcher of its own, see <see cref="Create"/>), then drains what is fetched without
/// waiting. When downstream has given no demand for a while, it pauses its partitions and keeps
/// polling only to stay in the consumer group — so memory stays bounded however far producers run
/// ahead. Offsets are stored by <see cref="KafkaMessage.Commit"/> and committed by librdkafka's
/// auto-commit (<c>enable.auto.offset.store=false</c>): nothing is committed that downstream did not finish.
/// </summary>
public sealed class KafkaSourceStage : GraphStage<SourceShape<IReadOnlyList<KafkaMessage>>>
{
    private readonly ConsumerConfig _config;
    private readonly string _topic;
    private readonly int _maxBatch;
    private readonly long _maxBatchBytes;
    private readonly KafkaSourceProbe? _probe;
    private readonly Outlet<IReadOnlyList<KafkaMessage>> _out = new("kafka.out");

    /// <param name="maxBatch">Most records in one batch.</param>
    /// <param name="maxBatchBytes">A batch ends once its values reach this many bytes (it always holds
    /// at least one record), so large images do not make large batches.</param>
    /// <param name="probe">Receives the consumer's assignment, positions and lag; optional.</param>
    public KafkaSourceStage(ConsumerConfig config, string topic, int maxBatch = KafkaOptions.DefaultBatchSize, long maxBatchBytes = KafkaOptions.DefaultBatchBytes, KafkaSourceProbe? probe = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatchBytes, 1);
        _maxBatch = maxBatch;
        _maxBatchBytes = maxBatchBytes;
        _probe = probe;
        _config = new ConsumerConfig(new Dictionary<string, string>(config))
        {
            EnableAutoCommit = true,
            EnableAutoOffsetStore = false,
        };
        _topic = topic;
        Shape = new SourceShape<IReadOnlyList<KafkaMessage>>(_out);
    }

    public override SourceShape<IReadOnlyList<KafkaMessage>> Shape { get; }

    /// <summary>The longest a pull blocks the source's thread waiting for a first record.</summary>
    public static readonly TimeSpan PollWait = TimeSpan.FromMilliseconds(20);

    /// <summary>The source on its own thread (<see cref="TspDispatchers.KafkaConsumers"/>), behind an
    /// async boundary, so its blocking waits never hold a thread that actors share. Run it with
    /// <see cref="Materializer"/>.</summary>
    public static Source<IReadOnlyList<KafkaMessage>, NotUsed> Create(ConsumerConfig config, string topic, int maxBatch, long maxBatchBytes, KafkaSourceProbe? probe = null) =>
        Source.FromGraph(new KafkaSourceStage(config, topic, maxBatch, maxBatchBytes, probe))
            .WithAttributes(ActorAttributes.CreateDispatcher(TspDispatchers.KafkaConsumers))
            .Async();

    /// <summary>A materializer for streams of this source: the receiving side of its async boundary
    /// would otherwise hold up to 16 batches consumed but not started (memory beyond the bound, and
    /// records a rebalance re-delivers). Akka.NET takes a boundary's buffer from the materializer
    /// settings of the island that receives, not from attributes on the source (tried: 16 batches
    /// consumed either way). Not <c>WithAttributes</c> on the source, either: that replaces its
    /// dispatcher and the boundary, and the source then runs fused into the ingest stream.</summary>
    public static ActorMaterializer Materializer(IActorRefFactory context) =>
        context.Materializer(ActorMaterializerSettings.Create(context switch
        {
            ActorSystem system => system,
            IActorContext actor => actor.System,
            _ => throw new ArgumentException("an actor system or an actor's context", nameof(context)),
        }).WithInputBuffer(1, 1));

    protected override GraphStageLogic CreateLogic(Attributes inheritedAttributes) => new Logic(this);

    /// <summary>
    /// Backpressure by pausing partitions, with one rule learned the hard way: a partition is paused or
    /// resumed only after it has delivered a record since it was assigned. librdkafka drops an assignment's
    /// fetch start when a pause or resume reaches the partition first (confluentinc/librdkafka#2190), and
    /// the partition then never fetches again; pausing from the assignment callback did exactly that
    /// during failovers. A partition that has delivered a record is safe to pause: it resumes from the
    /// record after the last one delivered.
    /// </summary>
    private sealed class Logic : TimerGraphStageLogic
    {
        private static readonly TimeSpan KeepAliveInterval = TimeSpan.FromMilliseconds(500);
        private static readonly TimeSpan IdleBeforePause = TimeSpan.FromSeconds(1);
        private readonly KafkaSourceStage _stage;
        private IConsumer<byte[]?, byte[]?> _consumer = null!;

        // Records consumed but not yet pushed, in consumption order: what the consumer returned while
        // downstream had no demand, before their partitions were paused. About one per partition.
        private readonly Queue<KafkaMessage> _held = new();

        // Partitions that delivered a record since their assignment, and those of them paused by us.
        private readonly HashSet<int> _delivering = [];
        private readonly HashSet<int> _paused = [];

        // Per partition, the offset after the last record consumed (librdkafka's own position lags).
        private readonly Dictionary<int, long> _next = [];
        private DateTime _lastDemand = DateTime.UtcNow;
        private long _probeRefreshed;
        private Action _repoll = null!;

        public Logic(KafkaSourceStage stage)
            : base(stage.Shape)
        {
            _stage = stage;
            SetHandler(stage._out, onPull: () =>
            {
                _lastDemand = DateTime.UtcNow;
                Poll();
            });
        }

        private bool Idle => !IsAvailable(_stage._out) && DateTime.UtcNow - _lastDemand > IdleBeforePause;

        public override void PreStart()
        {
            _consumer = new ConsumerBuilder<byte[]?, byte[]?>(_stage._config)
                .SetErrorHandler((_, error) =>
                {
                    if (error.IsFatal)
                    {
                        FailStage(new KafkaException(error));
                    }
                    else
                    {
                        Log.Warning("kafka consumer {0}: {1}", _stage._topic, error.Reason);
                    }
                })
                .SetPartitionsAssignedHandler((_, partitions) =>
                {
                    _stage._probe?.CountAssignment();
                    Log.Info("kafka consumer {0}: assigned {1}", _stage._topic, string.Join(",", partitions.Select(p => p.Partition.Value)));
                })
                .SetPartitionsRevokedHandler((consumer, partitions) => Revoked(consumer, partitions.Select(p => p.TopicPartition)))
                .SetPartitionsLostHandler((consumer, partitions) => Revoked(consumer, partitions.Select(p => p.TopicPartition)))
                .Build();
            _consumer.Subscribe(_stage._topic);
            _repoll = GetAsyncCallback(() =>
            {
                if (IsAvailable(_stage._out))
                {
                    Poll();
                }
            });
            ScheduleRepeatedly("keepalive", KeepAliveInterval);
        }

        public override void PostStop()
        {
            _stage._probe?.Clear();
            try
            {
                _consumer.Close();
            }
            catch (KafkaException e)
            {
                Log.Warning("kafka consumer {0}: close failed: {1}", _stage._topic, e.Message);
            }

            _consumer.Dispose();
        }

        /// <summary>Partitions leave: resumed first (librdkafka keeps a pause across a reassignment, and a
        /// partition that comes back must not start paused), and their held records dropped (whoever gets
        /// the partition reads them again from the committed offset).</summary>
        private void Revoked(IConsumer<byte[]?, byte[]?> consumer, IEnumerable<TopicPartition> revoked)
        {
            var gone = revoked.ToList();
            var resume = gone.Where(p => _paused.Contains(p.Partition.Value)).ToList();
            if (resume.Count > 0)
            {
                try
                {
                    consumer.Resume(resume);
                }
                catch (KafkaException e)
                {
                    Log.Warning("kafka consumer {0}: resuming revoked partitions failed: {1}", _stage._topic, e.Message);
                }
            }

            foreach (var partition in gone)
            {
                _paused.Remove(partition.Partition.Value);
                _delivering.Remove(partition.Partition.Value);
                _next.Remove(partition.Partition.Value);
            }

            var kept = _held.Where(m => !gone.Contains(m.Record.TopicPartition)).ToList();
            _held.Clear();
            foreach (var message in kept)
            {
                _held.Enqueue(message);
            }

            Log.Info("kafka consumer {0}: revoked {1}", _stage._topic, string.Join(",", gone.Select(p => p.Partition.Value)));
        }

        protected override void OnTimer(object timerKey)
        {
            // No demand for a while: pause what delivers, and keep consuming only to stay in the group
            // and to serve rebalances (both happen only inside Consume, so it is called on every tick);
            // records that still arrive are held and their partitions paused at once, so at most about
            // one record per partition is held.
            if (Idle)
            {
                PauseDelivering();
                while (Consume(TimeSpan.Zero) is { } message)
                {
                    _held.Enqueue(message);
                    PauseDelivering();
                }
            }

            RefreshProbe();
        }

        /// <summary>At most every keep-alive interval; called from ticks and from polls, because a stage
        /// that polls back to back through its mailbox gets its timers late.</summary>
        private void RefreshProbe()
        {
            if (_stage._probe is { } probe && Stopwatch.GetElapsedTime(_probeRefreshed) >= KeepAliveInterval)
            {
                _probeRefreshed = Stopwatch.GetTimestamp();
                probe.Refresh(_consumer, _next, _paused);
            }
        }

        private void PauseDelivering()
        {
            var pause = _delivering.Where(p => !_paused.Contains(p)).Select(p => new TopicPartition(_stage._topic, p)).ToList();
            if (pause.Count > 0)
            {
                _consumer.Pause(pause);
                _paused.UnionWith(pause.Select(p => p.Partition.Value));
                _stage._probe?.CountPause();
            }
        }

        private void Poll()
        {
            if (_paused.Count > 0)
            {
                _consumer.Resume(_paused.Select(p => new TopicPartition(_stage._topic, p)).ToList());
                _paused.Clear();
            }

            RefreshProbe();
            if (ConsumeBatch() is { } batch)
            {
                Push(_stage._out, batch);
            }
            else
            {
                // Back through the mailbox, so that cancellation, stop and timers get their turn. Invoked
                // from the stage's own thread, an async callback is short-circuited: the interpreter would
                // run up to sync-processing-limit (1000) empty polls of 20 ms — 20 s deaf to a stop.
                ThreadPool.UnsafeQueueUserWorkItem(static repoll => repoll(), _repoll, preferLocal: false);
            }
        }

        /// <returns>Held records, then what the consumer has fetched, up to the maximum batch (waiting up to
        /// <see cref="PollWait"/> for a first record); null when nothing.</returns>
        private List<KafkaMessage>? ConsumeBatch()
        {
            var first = _held.TryDequeue(out var held) ? held : Consume(PollWait);
            if (first is null)
            {
                return null;
            }

            var batch = new List<KafkaMessage> { first };
            long bytes = first.Record.Message.Value?.Length ?? 0;
            while (batch.Count < _stage._maxBatch && bytes < _stage._maxBatchBytes && (_held.TryDequeue(out var next) ? next : Consume(TimeSpan.Zero)) is { } message)
            {
                batch.Add(message);
                bytes += message.Record.Message.Value?.Length ?? 0;
            }

            return batch;
        }

        private KafkaMessage? Consume(TimeSpan wait)
        {
            try
            {
                var record = _consumer.Consume(wait);
                if (record is null || record.IsPartitionEOF)
                {
                    return null;
                }

                _delivering.Add(record.Partition.Value);
                _next[record.Partition.Value] = record.Offset.Value + 1;
                return new KafkaMessage(record, _consumer);
            }
            catch (ConsumeException e) when (e.Error.Code == ErrorCode.UnknownTopicOrPart)
            {
                // Normal before the first record: topics are created by their first producer.
                Log.Info("kafka consumer {0}: topic does not exist yet; waiting for it", _stage._topic);
                return null;
            }
            catch (ConsumeException e) when (!e.Error.IsFatal)
            {
                Log.Warning("kafka consumer {0}: {1}", _stage._topic, e.Error.Reason);
                return null;
            }
        }
    }
}
