using Akka.Event;
using Akka.Streams;
using Akka.Streams.Stage;
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
}

/// <summary>
/// A committable Kafka source over Confluent.Kafka (Akka.Streams.Kafka is not available here).
/// It polls without blocking (Consume with a zero timeout, then a short timer), emits only on demand,
/// and, when downstream has given no demand for a while, pauses its partitions and keeps polling
/// only to stay in the consumer group — so memory stays bounded however far producers run ahead.
/// Offsets are stored by <see cref="KafkaMessage.Commit"/> and committed by librdkafka's auto-commit
/// (<c>enable.auto.offset.store=false</c>): nothing is committed that downstream did not finish.
/// </summary>
public sealed class KafkaSourceStage : GraphStage<SourceShape<KafkaMessage>>
{
    private readonly ConsumerConfig _config;
    private readonly string _topic;
    private readonly Outlet<KafkaMessage> _out = new("kafka.out");

    public KafkaSourceStage(ConsumerConfig config, string topic)
    {
        _config = new ConsumerConfig(new Dictionary<string, string>(config))
        {
            EnableAutoCommit = true,
            EnableAutoOffsetStore = false,
        };
        _topic = topic;
        Shape = new SourceShape<KafkaMessage>(_out);
    }

    public override SourceShape<KafkaMessage> Shape { get; }

    protected override GraphStageLogic CreateLogic(Attributes inheritedAttributes) => new Logic(this);

    private sealed class Logic : TimerGraphStageLogic
    {
        private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(10);
        private static readonly TimeSpan IdleBeforePause = TimeSpan.FromSeconds(1);
        private readonly KafkaSourceStage _stage;
        private IConsumer<byte[]?, byte[]?> _consumer = null!;
        private KafkaMessage? _buffered;
        private bool _paused;
        private DateTime _lastDemand = DateTime.UtcNow;

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
                .SetPartitionsAssignedHandler((consumer, partitions) =>
                {
                    Log.Info("kafka consumer {0}: assigned {1}", _stage._topic, string.Join(",", partitions.Select(p => p.Partition.Value)));
                    if (_paused)
                    {
                        consumer.Pause(partitions);
                    }
                })
                .Build();
            _consumer.Subscribe(_stage._topic);
            ScheduleRepeatedly("keepalive", PollInterval * 50);
        }

        public override void PostStop()
        {
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

        protected override void OnTimer(object timerKey)
        {
            if (timerKey is "poll")
            {
                if (IsAvailable(_stage._out))
                {
                    Poll();
                }

                return;
            }

            // No demand for a while: pause, then keep polling only for group membership and rebalances.
            if (!IsAvailable(_stage._out) && DateTime.UtcNow - _lastDemand > IdleBeforePause)
            {
                if (!_paused)
                {
                    _consumer.Pause(_consumer.Assignment);
                    _paused = true;
                }

                if (_buffered is null)
                {
                    _buffered = Consume();
                }
            }
        }

        private void Poll()
        {
            if (_paused)
            {
                _consumer.Resume(_consumer.Assignment);
                _paused = false;
            }

            var message = _buffered ?? Consume();
            _buffered = null;
            if (message is not null)
            {
                Push(_stage._out, message);
            }
            else
            {
                ScheduleOnce("poll", PollInterval);
            }
        }

        private KafkaMessage? Consume()
        {
            try
            {
                var record = _consumer.Consume(TimeSpan.Zero);
                return record is null || record.IsPartitionEOF ? null : new KafkaMessage(record, _consumer);
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
