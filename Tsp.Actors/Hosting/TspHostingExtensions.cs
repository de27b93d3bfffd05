using System.Net;
using System.Net.Sockets;
using Akka.Actor;
using Akka.Pattern;
using Akka.Cluster.Hosting;
using Akka.Cluster.Hosting.SBR;
using Akka.Cluster.Sharding;
using Akka.Cluster.Tools.PublishSubscribe;
using Akka.Hosting;
using Akka.Persistence.Sql.Hosting;
using Akka.Remote.Hosting;
using LinqToDB;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using StackExchange.Redis;
using Tsp.Actors.Dispatch;
using Tsp.Actors.Ingest;
using Tsp.Actors.Nodes;
using Tsp.Actors.Nodes.Onnx;
using Tsp.Actors.Northbound;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Actors.Workflows;

namespace Tsp.Actors.Hosting;

/// <summary>Marker for the workflow-run shard region in the actor registry.</summary>
public sealed class WorkflowRuns;

/// <summary>The Kafka ingest actors of this orchestrator, by project (each behind a backoff supervisor
/// that forwards messages to it).</summary>
public sealed class KafkaIngests
{
    private readonly Dictionary<string, IActorRef> _byProject = new(StringComparer.Ordinal);

    public IReadOnlyDictionary<string, IActorRef> ByProject => _byProject;

    internal void Add(string project, IActorRef ingest) => _byProject[project] = ingest;
}

/// <summary>
/// How a host wires TSP: services first (<see cref="AddTspServices"/>), then the actor system
/// (<see cref="AddTsp"/>), which adds each role's parts for the roles this process has.
/// </summary>
public static class TspHostingExtensions
{
    public const string SystemName = "tsp";
    public const string RunsTypeName = "workflow-runs";

    private static readonly TimeSpan IngestStopTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Registers the processor registry, the workflow catalog (loading and validating every
    /// configured workflow), the Redis store and the node-queue registry.</summary>
    /// <exception cref="WorkflowValidationException">A configured workflow is invalid.</exception>
    public static IServiceCollection AddTspServices(this IServiceCollection services, TspOptions options, NodeProcessorRegistry? processors = null)
    {
        var roles = options.Roles.Count > 0 ? options.Roles : [.. TspRoles.All];
        // "auto" tries CUDA on gpu-role processes of a machine with an NVIDIA device; "cuda" always.
        var models = new OnnxModels(new ModelRepository(options.Onnx.Repository), options.Onnx, preferCuda: roles.Contains(TspRoles.Gpu) && OnnxModels.GpuPresent);
        processors ??= NodeProcessorRegistry.Standard(models);
        var catalog = new WorkflowCatalog();
        foreach (var file in options.Workflows)
        {
            var workflow = WorkflowLoader.LoadFile(file, processors.Names);
            WorkflowContracts.Check(workflow, processors);
            catalog.Deploy(workflow);
        }

        services.AddSingleton(options);
        services.AddSingleton(processors);
        services.AddSingleton(sp =>
        {
            models.Logger = sp.GetRequiredService<Microsoft.Extensions.Logging.ILoggerFactory>().CreateLogger("Tsp.Onnx");
            return models;
        });
        services.AddSingleton(catalog);
        services.AddSingleton<NodeQueues>();
        services.AddSingleton<KafkaIngests>();
        services.AddSingleton<IConnectionMultiplexer>(_ => ConnectRedis(options));
        services.AddSingleton(sp => new RedisStore(sp.GetRequiredService<IConnectionMultiplexer>(), options.Storage));
        services.AddSingleton<ActiveRunCounter>();
        services.AddSingleton<NodeRoutees>();
        // The host waits for Akka's coordinated shutdown, which waits for node routees to drain.
        services.Configure<HostOptions>(o => o.ShutdownTimeout = options.DrainTimeout + TimeSpan.FromSeconds(30));
        services.AddSingleton(sp => new RunSubmitter(
            catalog,
            sp.GetRequiredService<RedisStore>(),
            sp.GetRequiredService<IRequiredActor<WorkflowRuns>>().ActorRef,
            options.AskTimeout,
            options.MaxFrameBytes,
            options.RunHosts));
        return services;
    }

    /// <summary>The actor system of a TSP process: remoting, cluster, serialization, and the parts of
    /// each role in <see cref="TspOptions.Roles"/>.</summary>
    public static AkkaConfigurationBuilder AddTsp(this AkkaConfigurationBuilder builder, TspOptions options)
    {
        if (options.Port == 0)
        {
            options.Port = FreePort();
        }

        var roles = options.Roles.Count > 0 ? options.Roles : [.. TspRoles.All];
        // Bound to every interface (a container): others reach it by its host name unless told otherwise.
        var publicHost = !string.IsNullOrWhiteSpace(options.PublicHost) ? options.PublicHost
            : options.Host == "0.0.0.0" ? Dns.GetHostName()
            : options.Host;
        var seeds = options.Seeds.Count > 0 ? options.Seeds : [$"{publicHost}:{options.Port}"];
        builder
            .AddTspSerialization()
            .WithRemoting(options.Host, options.Port, publicHost)
            .WithClustering(new ClusterOptions
            {
                // Plus one role that carries the split brain resolver settings (see ClusterTimingsWatch).
                Roles = [.. roles, options.Cluster.AsRole()],
                SeedNodes = seeds.Select(s => $"akka.tcp://{SystemName}@{s}").ToArray(),
                SplitBrainResolver = SplitBrainResolverFor(options.Cluster),
                FailureDetector = new PhiAccrualFailureDetectorOptions { AcceptableHeartbeatPause = options.Cluster.AcceptableHeartbeatPause },
            })
            .AddHocon(ClusterTimingHocon(options), HoconAddMode.Prepend)
            .WithActors((system, _) => system.ActorOf(ClusterTimingsWatch.Props(options.Cluster.AsRole()), "tsp-cluster-timings"))
            .WithDistributedPubSub(role: null!)
            .WithClusterClientReceptionist(role: TspRoles.Orchestrator);

        if (roles.Contains(TspRoles.Gpu) || roles.Contains(TspRoles.Cpu))
        {
            builder.WithActors((system, _, resolver) =>
            {
                var routees = resolver.GetService<NodeRoutees>();
                var logger = resolver.GetService<Microsoft.Extensions.Logging.ILoggerFactory>().CreateLogger("Tsp.Drain");
                CoordinatedShutdown.Get(system).AddTask(CoordinatedShutdown.PhaseServiceRequestsDone, "tsp-drain-node-routees", async () =>
                {
                    await routees.DrainAsync(options.DrainTimeout, logger);
                    return Akka.Done.Instance;
                });
            });
        }

        // Every member knows the node dispatchers: a router pool checks its routees' Props where the
        // pool lives (an orchestrator), and the routees run them where they are deployed (a worker).
        builder.AddTspNodeDispatchers(options);
        // Resolved at start: hands the ONNX models the host's logging (and the host their disposal).
        builder.WithActors((_, _, resolver) => resolver.GetService<OnnxModels>());
        if (roles.Contains(TspRoles.Orchestrator))
        {
            builder.AddTspOrchestrator(options);
        }
        else
        {
            builder.WithShardRegionProxy<WorkflowRuns>(RunsTypeName, TspRoles.Orchestrator, new RunMessageExtractor(options.Shards, options.RunHosts));
        }

        return builder;
    }

    private static SplitBrainResolverOption SplitBrainResolverFor(ClusterTuning tuning) => tuning.SplitBrainStrategy switch
    {
        "keep-majority" => new KeepMajorityOption(),
        "keep-oldest" => new KeepOldestOption { DownIfAlone = true },
        "static-quorum" when tuning.QuorumSize > 0 => new StaticQuorumOption { QuorumSize = tuning.QuorumSize },
        "static-quorum" => throw new SettingException("Tsp:Cluster:SplitBrainStrategy static-quorum needs Tsp:Cluster:QuorumSize > 0"),
        var other => throw new SettingException($"unknown Tsp:Cluster:SplitBrainStrategy '{other}' (keep-majority, keep-oldest or static-quorum)"),
    };

    /// <summary>Timings Akka.Hosting has no options for: the resolver's stable-after and the shutdown
    /// phase in which node routees drain.</summary>
    private static string ClusterTimingHocon(TspOptions options)
    {
        static string Ms(TimeSpan t) => ((long)t.TotalMilliseconds).ToString(System.Globalization.CultureInfo.InvariantCulture) + "ms";
        return $$"""
            akka.cluster.split-brain-resolver.stable-after = {{Ms(options.Cluster.StableAfter)}}
            akka.coordinated-shutdown.phases.service-requests-done.timeout = {{Ms(options.DrainTimeout + TimeSpan.FromSeconds(5))}}
            """;
    }

    /// <summary>For an external Akka.NET system that subscribes to TP results (see
    /// <see cref="RemoteResults.SubscribeAsync"/>): TSP's serializer and a ClusterClient, registered as
    /// <see cref="TspClusterClient"/>, that contacts the receptionists of the given members (host:port,
    /// orchestrators). The system needs remoting (<c>WithRemoting</c>) reachable from the cluster.</summary>
    public static AkkaConfigurationBuilder AddTspResultClient(this AkkaConfigurationBuilder builder, IEnumerable<string> contacts) =>
        builder
            .AddTspSerialization()
            .WithClusterClient<TspClusterClient>(contacts.Select(c => $"akka.tcp://{SystemName}@{c}/system/receptionist").ToList());

    /// <summary>Binds every TP message type to <see cref="TspProtobufSerializer"/>. Bound by concrete
    /// type: Akka's own protobuf serializer is bound to Google.Protobuf.IMessage and would otherwise win.</summary>
    public static AkkaConfigurationBuilder AddTspSerialization(this AkkaConfigurationBuilder builder) =>
        builder.WithCustomSerializer(
            "tsp-protobuf",
            [typeof(ITspMessage), .. TspProtobufSerializer.Messages.Select(m => m.ClrType)],
            system => new TspProtobufSerializer(system));

    /// <summary>Node routees' dispatchers; the routees themselves are deployed by the orchestrators'
    /// cluster router pools onto members of the gpu and cpu roles.</summary>
    public static AkkaConfigurationBuilder AddTspNodeDispatchers(this AkkaConfigurationBuilder builder, TspOptions options) =>
        builder.AddHocon(TspDispatchers.Config(options.CpuNodeThreads > 0 ? options.CpuNodeThreads : Environment.ProcessorCount), HoconAddMode.Prepend);

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
        if (!string.IsNullOrWhiteSpace(options.Kafka.Bootstrap))
        {
            builder.WithActors((system, _, resolver) =>
            {
                var submitter = resolver.GetService<RunSubmitter>();
                var store = resolver.GetService<RedisStore>();
                var ingests = resolver.GetService<KafkaIngests>();
                foreach (var project in resolver.GetService<WorkflowCatalog>().Projects)
                {
                    var ingest = IngestActor.Props(project, options.Kafka, submitter, store);
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

    /// <summary>Akka.Persistence.Sql on PostgreSQL when configured (required by several orchestrators),
    /// else TSP's own group-commit journal on a SQLite file.</summary>
    public static AkkaConfigurationBuilder AddTspJournal(this AkkaConfigurationBuilder builder, TspOptions options)
    {
        if (!string.IsNullOrWhiteSpace(options.Postgres))
        {
            return builder.WithSqlPersistence(options.Postgres, ProviderName.PostgreSQL15, autoInitialize: true);
        }

        // SQLite has one writer: our own journal writes every pending request in one transaction
        // (group commit) through one connection; see Storage/SqliteJournal.
        return builder.AddHocon(SqliteJournalHocon(options.SqlitePath), HoconAddMode.Prepend);
    }

    /// <summary>Akka.Persistence configured for <see cref="SqliteJournal"/> and <see cref="SqliteSnapshotStore"/> on one file.</summary>
    public static string SqliteJournalHocon(string sqlitePath)
    {
        var path = System.Text.Json.JsonSerializer.Serialize(Path.GetFullPath(sqlitePath));
        return $$"""
            akka.persistence.journal.plugin = "tsp.persistence.sqlite-journal"
            akka.persistence.snapshot-store.plugin = "tsp.persistence.sqlite-snapshots"
            tsp.persistence.sqlite-journal {
              class = "{{typeof(SqliteJournal).FullName}}, {{typeof(SqliteJournal).Assembly.GetName().Name}}"
              plugin-dispatcher = "akka.actor.default-dispatcher"
              path = {{path}}
            }
            tsp.persistence.sqlite-snapshots {
              class = "{{typeof(SqliteSnapshotStore).FullName}}, {{typeof(SqliteSnapshotStore).Assembly.GetName().Name}}"
              plugin-dispatcher = "akka.actor.default-dispatcher"
              path = {{path}}
            }
            """;
    }

    /// <summary>Fails at start, naming host, port and database (never the password), when the configured
    /// PostgreSQL journal cannot be reached; Akka would otherwise retry persistence in the background
    /// and every run would time out.</summary>
    /// <exception cref="DependencyUnreachableException">"cannot reach PostgreSQL …".</exception>
    public static void CheckJournal(TspOptions options)
    {
        if (string.IsNullOrWhiteSpace(options.Postgres))
        {
            return;
        }

        var settings = new Npgsql.NpgsqlConnectionStringBuilder(options.Postgres) { Timeout = 5 };
        try
        {
            using var connection = new Npgsql.NpgsqlConnection(settings.ConnectionString);
            connection.Open();
            using var command = new Npgsql.NpgsqlCommand("SELECT 1", connection);
            command.ExecuteScalar();
        }
        catch (Exception e) when (e is Npgsql.NpgsqlException or System.Net.Sockets.SocketException or TimeoutException)
        {
            throw new DependencyUnreachableException($"cannot reach PostgreSQL journal at {settings.Host}:{settings.Port}/{settings.Database}: {e.Message}", e);
        }
    }

    private static ConnectionMultiplexer ConnectRedis(TspOptions options)
    {
        if (string.IsNullOrWhiteSpace(options.Redis))
        {
            throw new SettingException("no Redis configured: set Tsp:Redis (--redis HOST:PORT), or run standalone to embed one");
        }

        var config = ConfigurationOptions.Parse(options.Redis);
        config.AbortOnConnectFail = true;
        config.ConnectTimeout = 5000;
        try
        {
            return ConnectionMultiplexer.Connect(config);
        }
        catch (RedisConnectionException e)
        {
            throw new DependencyUnreachableException($"cannot reach Redis at {options.Redis}: {e.Message}", e);
        }
    }

    public static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }
}

/// <summary>Registry key of the ClusterClient that external systems subscribe through.</summary>
public sealed class TspClusterClient;
