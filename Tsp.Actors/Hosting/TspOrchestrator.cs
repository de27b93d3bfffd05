using Akka.Actor;
using Akka.Pattern;
using Akka.Cluster.Hosting;
using Akka.Cluster.Sharding;
using Akka.Cluster.Tools.PublishSubscribe;
using Akka.Hosting;
using Tsp.Actors.Control;
using Tsp.Actors.Dispatch;
using Tsp.Actors.Ingest;
using Tsp.Actors.Northbound;
using Tsp.Actors.Storage;
using Tsp.Actors.Workflows;

namespace Tsp.Actors.Hosting;

/// <summary>The orchestrator role: journal, node queues, the run hosts' shard region, Kafka ingest, status.</summary>
public static partial class TspHostingExtensions
{
    private static readonly TimeSpan IngestStopTimeout = TimeSpan.FromSeconds(5);

    /// <summary>The journal, one node queue per queue name, and the workflow-run shard region.</summary>
    public static AkkaConfigurationBuilder AddTspOrchestrator(this AkkaConfigurationBuilder builder, TspOptions options)
    {
        builder.AddTspJournal(options);
        builder.WithActors((system, _, resolver) =>
        {
            var catalog = resolver.GetService<WorkflowCatalog>();
            var queues = resolver.GetService<NodeQueues>();
            var wanted = catalog.All.SelectMany(w => w.Nodes).GroupBy(n => n.Queue, StringComparer.Ordinal)
                .ToDictionary(g => g.Key, g => g.First().Role, StringComparer.Ordinal);
            foreach (var (name, configured) in options.Queues)
            {
                wanted.TryAdd(name, configured.Role);
            }

            foreach (var (name, role) in wanted)
            {
                queues.Add(name, system.ActorOf(NodeQueue.Props(name, options.QueueOptionsFor(name, role)), "queue-" + name));
            }

            RemoteResults.Register(system, catalog, resolver.GetService<RedisStore>(), options.SubscriberBuffer, options.AskTimeout);
        });
        builder.WithShardRegion<WorkflowRuns>(
            RunsTypeName,
            (system, _, resolver) =>
            {
                var services = new RunServices(
                    resolver.GetService<WorkflowCatalog>(),
                    resolver.GetService<NodeQueues>(),
                    resolver.GetService<RedisStore>(),
                    DistributedPubSub.Get(system).Mediator,
                    options.RunHost,
                    resolver.GetService<ActiveRunCounter>());
                return hostId => WorkflowRunHost.Props(hostId, services);
            },
            new RunMessageExtractor(options.Shards, options.RunHosts),
            new ShardOptions
            {
                Role = TspRoles.Orchestrator,
                RememberEntities = true,
                RememberEntitiesStore = RememberEntitiesStore.Eventsourced,
                StateStoreMode = StateStoreMode.Persistence,
            });
        builder.WithShardRegion<ProjectControls>(
            ProjectControlTypeName,
            (_, _, _) => ProjectControl.Props,
            new ProjectControlExtractor(options.Shards),
            new ShardOptions { Role = TspRoles.Orchestrator, StateStoreMode = StateStoreMode.Persistence });
        if (!string.IsNullOrWhiteSpace(options.Kafka.Bootstrap))
        {
            builder.WithActors((system, registry, resolver) =>
            {
                var submitter = resolver.GetService<RunSubmitter>();
                var store = resolver.GetService<RedisStore>();
                var ingests = resolver.GetService<KafkaIngests>();
                foreach (var project in resolver.GetService<WorkflowCatalog>().Projects)
                {
                    var ingest = IngestActor.Props(project, options.Kafka, submitter, store, registry.Get<ProjectControls>());
                    var supervised = BackoffSupervisor.Props(Backoff.OnFailure(ingest, "ingest", TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30), 0.2, -1));
                    ingests.Add(project, system.ActorOf(supervised, "ingest-" + project));
                }

                // First thing on shutdown: stop taking records, and leave the consumer groups (the
                // source closes its consumer), so partitions move to the other orchestrators at once
                // instead of after a session timeout, and no start goes to a region that is leaving.
                // What was in flight is not committed; whoever takes the partition re-reads it, and
                // the idempotent start absorbs what was already accepted.
                CoordinatedShutdown.Get(system).AddTask(CoordinatedShutdown.PhaseServiceUnbind, "tsp-stop-kafka-ingest", async () =>
                {
                    var stops = ingests.ByProject.Values.Select(async ingest =>
                    {
                        try
                        {
                            await ingest.GracefulStop(IngestStopTimeout);
                        }
                        catch (TaskCanceledException)
                        {
                            // Logged by the phase's own timeout; the actor system stops it anyway.
                        }
                    });
                    await Task.WhenAll(stops);
                    return Akka.Done.Instance;
                });
            });
        }

        builder.WithActors((system, registry, resolver) => StatusServices.Register(
            system,
            resolver.GetService<WorkflowCatalog>(),
            resolver.GetService<NodeQueues>(),
            resolver.GetService<KafkaIngests>(),
            resolver.GetService<RedisStore>(),
            resolver.GetService<ActiveRunCounter>(),
            options.AskTimeout));

        return builder;
    }
}
