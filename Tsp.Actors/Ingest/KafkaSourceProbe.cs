using Confluent.Kafka;

namespace Tsp.Actors.Ingest;

/// <summary>One assigned partition as the consumer sees it: the next offset it will read (-1 until it has read one since its assignment), the end of
/// the partition at its last fetch (so end − next is the lag), and whether it is paused for backpressure.</summary>
public sealed record KafkaPartitionState(int Partition, long NextOffset, long EndOffset, bool Paused)
{
    public long Lag => NextOffset >= 0 && EndOffset >= 0 ? Math.Max(0, EndOffset - NextOffset) : -1;
}

/// <summary>
/// What a <see cref="KafkaSourceStage"/> last saw of its consumer, for status and for operators asking
/// why a partition does not move. The stage refreshes it on its keep-alive tick and on every
/// assignment; any thread may read it.
/// </summary>
public sealed class KafkaSourceProbe
{
    private volatile IReadOnlyList<KafkaPartitionState> _partitions = [];
    private long _pauses;

    public IReadOnlyList<KafkaPartitionState> Partitions => _partitions;

    /// <summary>How many times the stage paused partitions for backpressure since it started: a pause
    /// may last less than the probe's refresh interval, this count never misses one.</summary>
    public long Pauses => Interlocked.Read(ref _pauses);

    internal void CountPause() => Interlocked.Increment(ref _pauses);

    private long _assignments;

    /// <summary>How many times the group gave the consumer partitions since it started: more than one
    /// means rebalances (an orchestrator joined or left, or this one lost its session).</summary>
    public long Assignments => Interlocked.Read(ref _assignments);

    internal void CountAssignment() => Interlocked.Increment(ref _assignments);

    /// <param name="next">Per partition, the offset after the last record consumed since its assignment.</param>
    internal void Refresh(IConsumer<byte[]?, byte[]?> consumer, IReadOnlyDictionary<int, long> next, IReadOnlySet<int> paused)
    {
        var partitions = new List<KafkaPartitionState>();
        foreach (var assigned in consumer.Assignment.OrderBy(p => p.Partition.Value))
        {
            long end = -1;
            try
            {
                // The high watermark of the last fetch response: cached, no broker round trip.
                end = consumer.GetWatermarkOffsets(assigned) is { High.IsSpecial: false } marks ? marks.High.Value : -1;
            }
            catch (KafkaException)
            {
                // Not fetched yet; shown as unknown.
            }

            var partition = assigned.Partition.Value;
            partitions.Add(new KafkaPartitionState(partition, next.GetValueOrDefault(partition, -1), end, paused.Contains(partition)));
        }

        _partitions = partitions;
    }

    internal void Clear() => _partitions = [];
}
