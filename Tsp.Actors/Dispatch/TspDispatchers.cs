using Akka.Configuration;

namespace Tsp.Actors.Dispatch;

/// <summary>
/// Dispatchers for node routees and Kafka sources. Akka.Hosting has no typed API for dispatchers, so this is the one
/// HOCON fragment TSP carries: CPU routees run on the process's thread pool, or on a fork-join pool of
/// their own when given a thread count; each GPU routee gets a pinned thread, so a model session is
/// always driven from the same thread.
/// </summary>
/// <remarks>The thread pool by default because a node task hops threads anyway (its continuation after
/// a Redis read runs on the thread pool, an ONNX model runs on its batcher's threads), so a pool of
/// its own isolated little and cost a hand-over per task and its idle workers' spinning: on the
/// orchestration bench it meant ~6 more syscalls and ~4 more context switches per run (docs/design.md,
/// "Dispatch").</remarks>
public static class TspDispatchers
{
    public const string CpuNodes = "tsp.dispatchers.cpu-nodes";
    public const string GpuNodes = "tsp.dispatchers.gpu-nodes";

    /// <summary>Each Kafka source gets a thread of its own: it waits for records in a blocking
    /// Consume, as a plain consumer loop does, instead of a timer (whose 10 ms ticks idle it).</summary>
    public const string KafkaConsumers = "tsp.dispatchers.kafka-consumers";

    /// <param name="cpuThreads">Threads of the CPU routees' own pool; 0 runs them on the thread pool.</param>
    public static Config Config(int cpuThreads)
    {
        var cpuExecutor = cpuThreads > 0
            ? $"type = ForkJoinDispatcher, dedicated-thread-pool {{ thread-count = {cpuThreads} }}"
            : "type = Dispatcher, executor = default-executor";
        return ConfigurationFactory.ParseString($$"""
        tsp.dispatchers.cpu-nodes {
          {{cpuExecutor}}
          throughput = 10
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
}
