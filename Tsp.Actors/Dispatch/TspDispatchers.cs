using Akka.Configuration;

namespace Tsp.Actors.Dispatch;

/// <summary>
/// Dispatchers for node routees and Kafka sources. Akka.Hosting has no typed API for dispatchers, so this is the one
/// HOCON fragment TSP carries: CPU routees share a fork-join pool sized to the cores; each GPU routee
/// gets a pinned thread, so a model session is always driven from the same thread.
/// </summary>
public static class TspDispatchers
{
    public const string CpuNodes = "tsp.dispatchers.cpu-nodes";
    public const string GpuNodes = "tsp.dispatchers.gpu-nodes";

    /// <summary>Each Kafka source gets a thread of its own: it waits for records in a blocking
    /// Consume, as a plain consumer loop does, instead of a timer (whose 10 ms ticks idle it).</summary>
    public const string KafkaConsumers = "tsp.dispatchers.kafka-consumers";

    public static Config Config(int cpuThreads) => ConfigurationFactory.ParseString($$"""
        tsp.dispatchers.cpu-nodes {
          type = ForkJoinDispatcher
          throughput = 10
          dedicated-thread-pool { thread-count = {{Math.Max(1, cpuThreads)}} }
        }
        tsp.dispatchers.gpu-nodes {
          type = PinnedDispatcher
          throughput = 10
        }
        tsp.dispatchers.kafka-consumers {
          type = PinnedDispatcher
          throughput = 10
        }
        """);
}
