using Akka.Actor;
using Akka.Pattern;
using Akka.Cluster.Hosting;
using Akka.Cluster.Sharding;
using Akka.Cluster.Tools.PublishSubscribe;
using Akka.Hosting;
using Tsp.Actors.Control;
using Tsp.Actors.Dispatch;
using Tsp.Actors.Ingest;
using Tsp.Actors.Nodes;
using Tsp.Actors.Northbound;
using Tsp.Actors.Storage;
using Tsp.Actors.Workflows;

namespace Tsp.Actors.Hosting;

/// <summary>The orchestrator role: journal, node queues, the run hosts' shard region, Kafka ingest,
/// control (project state, deployments), status.</summary>
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
            // Until the deployed versions are known, a run of a version this process lacks waits
            // rather than resuming on the file's version (DeploymentFollower).
            catalog.ExpectDeployments();
            var queues = resolver.GetService<NodeQueues>();
            foreach (var workflow in catalog.All)
            {
                EnsureQueues(system, options, queues, workflow);
            }

            foreach (var (name, configured) in options.Queues)
            {
                EnsureQueue(system, options, queues, name, configured.Role);
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
                    resolver.GetService<ActiveRunCounter>(),
                    options.RunHosts);
                return hostId => WorkflowRunHost.Props(hostId, services);
            },
            new RunMessageExtractor(options.Shards, options.RunHosts),
            new ShardOptions
            {
                Role = TspRoles.Orchestrator,
                RememberEntities = true,
                RememberEntitiesStore = RememberEntitiesStore.Eventsourced,
                HandOffStopMessage = WorkflowRunHost.RunHostStop.Instance,
                StateStoreMode = StateStoreMode.Persistence,
            });
        builder.WithShardRegion<ProjectControls>(
            ProjectControlTypeName,
            (_, _, _) => ProjectControl.Props,
            new ProjectControlExtractor(options.Shards),
            new ShardOptions { Role = TspRoles.Orchestrator, StateStoreMode = StateStoreMode.Persistence });
        builder.WithShardRegion<WorkflowDeploymentsRegion>(
            DeploymentsTypeName,
            (_, _, _) => _ => WorkflowDeployments.Props(),
            new WorkflowDeploymentsExtractor(),
            new ShardOptions { Role = TspRoles.Orchestrator, StateStoreMode = StateStoreMode.Persistence });
        builder.WithShardRegion<ModelRulesRegion>(
            ModelRulesTypeName,
            (_, _, _) => _ => ModelRulesEntity.Props(),
            new ModelRulesExtractor(),
            new ShardOptions { Role = TspRoles.Orchestrator, StateStoreMode = StateStoreMode.Persistence });
        var kafka = !string.IsNullOrWhiteSpace(options.Kafka.Bootstrap);
        builder.WithActors((system, registry, resolver) =>
        {
            var catalog = resolver.GetService<WorkflowCatalog>();
            var queues = resolver.GetService<NodeQueues>();
            var submitter = resolver.GetService<RunSubmitter>();
            var store = resolver.GetService<RedisStore>();
            var ingests = resolver.GetService<KafkaIngests>();
            var projectControls = registry.Get<ProjectControls>();
            var rateLimits = resolver.GetService<RateLimits>();
            void StartIngest(string project)
            {
                if (!kafka || ingests.ByProject.ContainsKey(project))
                {
                    return;
                }

                var ingest = IngestActor.Props(project, options.Kafka, submitter, store, projectControls, rateLimits);
                var supervised = BackoffSupervisor.Props(Backoff.OnFailure(ingest, "ingest", TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30), 0.2, -1));
                IActorRef started;
                try
                {
                    started = system.ActorOf(supervised, "ingest-" + project);
                }
                catch (InvalidActorNameException)
                {
                    // Removed and deployed again while the stopped ingest's name is not free yet.
                    started = system.ActorOf(supervised, $"ingest-{project}-{Guid.NewGuid():N}");
                }

                ingests.Add(project, started);
            }

            foreach (var project in catalog.Projects)
            {
                StartIngest(project);
            }

            var follower = system.ActorOf(
                DeploymentFollower.Props(
                    registry.Get<WorkflowDeploymentsRegion>(),
                    catalog,
                    resolver.GetService<NodeProcessorRegistry>(),
                    known: workflow => EnsureQueues(system, options, queues, workflow),
                    deployed: workflow => StartIngest(workflow.Project),
                    removed: project =>
                    {
                        if (ingests.Remove(project) is { } ingest)
                        {
                            ingest.GracefulStop(IngestStopTimeout).ContinueWith(_ => { }, TaskScheduler.Default);
                        }
                    }),
                DeploymentFollower.Name);
            registry.Register<DeploymentFollower>(follower);

            if (!kafka)
            {
                return;
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

        builder.WithActors((system, registry, resolver) => StatusServices.Register(
            system,
            resolver.GetService<WorkflowCatalog>(),
            resolver.GetService<NodeQueues>(),
            resolver.GetService<KafkaIngests>(),
            resolver.GetService<RedisStore>(),
            resolver.GetService<ActiveRunCounter>(),
            registry.Get<WorkflowRuns>(),
            options.AskTimeout));

        return builder;
    }

    private static void EnsureQueues(ActorSystem system, TspOptions options, NodeQueues queues, WorkflowDefinition workflow)
    {
        foreach (var node in workflow.Nodes)
        {
            EnsureQueue(system, options, queues, node.Queue, node.Role);
        }
    }

    /// <summary>Starts the named queue unless this orchestrator has it (a deployed version may name a new one).</summary>
    private static void EnsureQueue(ActorSystem system, TspOptions options, NodeQueues queues, string name, string role)
    {
        lock (queues)
        {
            if (!queues.TryGet(name, out _))
            {
                queues.Add(name, system.ActorOf(NodeQueue.Props(name, options.QueueOptionsFor(name, role)), "queue-" + name));
            }
        }
    }
}
