using Confluent.Kafka;

namespace Tsp.ServiceDefaults.Embedded;

/// <summary>
/// A librdkafka mock cluster in this process: a real Kafka-protocol broker on loopback that any
/// client can reach (kcat included), for standalone mode and tests. It lives as long as the client
/// that created it; topics auto-create (4 partitions), CreateTopics is not supported.
/// </summary>
public sealed class EmbeddedKafka : IDisposable
{
    private readonly IProducer<byte[], byte[]> _owner;

    private EmbeddedKafka(IProducer<byte[], byte[]> owner, string bootstrapServers)
    {
        _owner = owner;
        BootstrapServers = bootstrapServers;
    }

    public string BootstrapServers { get; }

    public static EmbeddedKafka Start(int brokers = 1)
    {
        var config = new ProducerConfig { BootstrapServers = "localhost:1" };
        config.Set("test.mock.num.brokers", brokers.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var owner = new ProducerBuilder<byte[], byte[]>(config).SetLogHandler((_, _) => { }).Build();
        using var admin = new DependentAdminClientBuilder(owner.Handle).Build();
        var metadata = admin.GetMetadata(TimeSpan.FromSeconds(10));
        var bootstrap = string.Join(',', metadata.Brokers.Select(b => $"{b.Host}:{b.Port}"));
        return new EmbeddedKafka(owner, bootstrap);
    }

    public void Dispose() => _owner.Dispose();
}
