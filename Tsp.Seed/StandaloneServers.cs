using Tsp.ServiceDefaults.Embedded;
using Tsp.Actors.Hosting;
using Tsp.Actors.Ingest;
using Tsp.Actors.Storage;

namespace Tsp.Seed;

/// <summary>
/// Standalone mode's embedded defaults: Garnet for Redis and a librdkafka mock cluster for Kafka,
/// each only when the configuration names no real one; every role; the SQLite journal; the
/// rail-inspection sample (inspection and training workflows) unless others are given.
/// </summary>
internal sealed class StandaloneServers : IDisposable
{
    public const string DemoWorkflow = "samples/demo/workflow.yaml";
    public static readonly string[] SampleWorkflows = ["samples/rail-inspection/workflow.yaml", "samples/rail-inspection/train.yaml"];

    private StandaloneServers(EmbeddedRedis? redis, EmbeddedKafka? kafka)
    {
        Redis = redis;
        Kafka = kafka;
    }

    public EmbeddedRedis? Redis { get; }

    public EmbeddedKafka? Kafka { get; }

    public static StandaloneServers Apply(TspOptions options)
    {
        options.Roles = [.. TspRoles.All];
        options.Seeds = [];
        if (options.Workflows.Count == 0)
        {
            options.Workflows = [.. SampleWorkflows.Select(SeedHost.ResolveSample)];
        }

        EmbeddedRedis? redis = null;
        if (string.IsNullOrWhiteSpace(options.Redis))
        {
            redis = EmbeddedRedis.Start();
            options.Redis = redis.ConnectionString;
        }

        EmbeddedKafka? kafka = null;
        if (string.IsNullOrWhiteSpace(options.Kafka.Bootstrap))
        {
            kafka = EmbeddedKafka.Start();
            options.Kafka.Bootstrap = kafka.BootstrapServers;
        }

        return new StandaloneServers(redis, kafka);
    }

    public void Dispose()
    {
        Kafka?.Dispose();
        Redis?.Dispose();
    }
}
