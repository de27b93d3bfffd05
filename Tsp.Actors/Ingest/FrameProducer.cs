using Tsp.Actors.Protocol;
using System.Globalization;
using System.Text;
using Confluent.Kafka;

namespace Tsp.Actors.Ingest;

/// <summary>Publishes frames to a project's topic the way producers should: raw bytes with
/// <c>source-id</c>, <c>content-type</c> and <c>captured-at</c> headers, acks from all replicas.</summary>
public sealed class FrameProducer : IDisposable
{
    private readonly IProducer<byte[]?, byte[]> _producer;

    public FrameProducer(string bootstrapServers)
    {
        _producer = new ProducerBuilder<byte[]?, byte[]>(new ProducerConfig
        {
            BootstrapServers = bootstrapServers,
            Acks = Acks.All,
            EnableIdempotence = true,
            LingerMs = 2,
            MessageMaxBytes = 64 * 1024 * 1024,
        }).Build();
    }

    /// <returns>The run id the frame will get: it is derived from where the record landed.</returns>
    public async Task<string> ProduceAsync(string project, byte[] data, string? sourceId = null, string? contentType = null, DateTimeOffset? capturedAt = null)
    {
        var headers = new Headers();
        if (!string.IsNullOrEmpty(sourceId))
        {
            headers.Add(KafkaTopics.SourceIdHeader, Encoding.UTF8.GetBytes(sourceId));
        }

        if (!string.IsNullOrEmpty(contentType))
        {
            headers.Add(KafkaTopics.ContentTypeHeader, Encoding.UTF8.GetBytes(contentType));
        }

        if (capturedAt is { } at)
        {
            headers.Add(KafkaTopics.CapturedAtHeader, Encoding.UTF8.GetBytes(at.ToUnixTimeMilliseconds().ToString(CultureInfo.InvariantCulture)));
        }

        var delivery = await _producer.ProduceAsync(KafkaTopics.Frames(project), new Message<byte[]?, byte[]> { Key = sourceId is null ? null : Encoding.UTF8.GetBytes(sourceId), Value = data, Headers = headers });
        return KafkaRunId.Of(delivery.Topic, delivery.Partition.Value, delivery.Offset.Value);
    }

    /// <summary>Publishes a record as it is (tests use it for malformed input).</summary>
    public async Task<string> ProduceRawAsync(string topic, byte[] value, Headers? headers = null)
    {
        var delivery = await _producer.ProduceAsync(topic, new Message<byte[]?, byte[]> { Value = value, Headers = headers ?? [] });
        return KafkaRunId.Of(delivery.Topic, delivery.Partition.Value, delivery.Offset.Value);
    }

    public void Dispose()
    {
        _producer.Flush(TimeSpan.FromSeconds(10));
        _producer.Dispose();
    }
}
