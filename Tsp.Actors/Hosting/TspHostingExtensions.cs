using System.Net;
using System.Net.Sockets;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using StackExchange.Redis;
using Tsp.Actors.Dispatch;
using Tsp.Actors.Ingest;
using Tsp.Actors.Nodes;
using Tsp.Actors.Nodes.Onnx;
using Tsp.Actors.Storage;
using Tsp.Actors.Workflows;

namespace Tsp.Actors.Hosting;

/// <summary>
/// How a host wires TSP: services first (<see cref="AddTspServices"/>), then the actor system
/// (<see cref="AddTsp"/>), which adds each role's parts for the roles this process has.
/// </summary>
public static partial class TspHostingExtensions
{
    public const string SystemName = "tsp";
    public const string RunsTypeName = "workflow-runs";
    public const string ProjectControlTypeName = "project-control";
    public const string DeploymentsTypeName = "workflow-deployments";
    public const string ModelRulesTypeName = "model-rules";

    /// <summary>Registers the processor registry, the workflow catalog (loading and validating every
    /// configured workflow), the Redis store and the node-queue registry.</summary>
    /// <exception cref="WorkflowValidationException">A configured workflow is invalid.</exception>
    public static IServiceCollection AddTspServices(this IServiceCollection services, TspOptions options, NodeProcessorRegistry? processors = null)
    {
        var roles = options.Roles.Count > 0 ? options.Roles : [.. TspRoles.All];
        // "auto" tries CUDA on gpu-role processes of a machine with an NVIDIA device; "cuda" always.
        var models = new OnnxModels(new ModelRepository(options.Onnx.Repository), options.Onnx, preferCuda: roles.Contains(TspRoles.Gpu) && OnnxModels.GpuPresent);
        if (roles.Contains(TspRoles.Gpu) || roles.Contains(TspRoles.Cpu))
        {
            // Its loads wait briefly for the operator's model rules (ModelRulesFollower).
            models.ExpectRules();
        }

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
        services.AddSingleton<ModelPreload>();
        services.AddHostedService(sp => sp.GetRequiredService<ModelPreload>());
        services.AddSingleton<TspHealth>();
        services.AddSingleton(_ => new NodeRoutees(options.ServedQueues()));
        // The host waits for Akka's coordinated shutdown, which waits for node routees to drain.
        services.Configure<HostOptions>(o => o.ShutdownTimeout = options.DrainTimeout + TimeSpan.FromSeconds(30));
        services.AddSingleton(sp => new RunSubmitter(
            catalog,
            sp.GetRequiredService<RedisStore>(),
            sp.GetRequiredService<IRequiredActor<WorkflowRuns>>().ActorRef,
            options.AskTimeout,
            options.MaxFrameBytes,
            options.RunHosts));
        services.AddSingleton(sp => new RateLimits(
            project => catalog.TryGet(project, out var workflow) ? workflow.Scheduling.RateLimit : 0,
            () =>
            {
                // Each orchestrator keeps its part of a limit: the cluster as a whole keeps it.
                var cluster = Akka.Cluster.Cluster.Get(sp.GetRequiredService<Akka.Actor.ActorSystem>());
                return cluster.State.Members.Count(m => m.Status == Akka.Cluster.MemberStatus.Up && m.HasRole(TspRoles.Orchestrator));
            }));
        services.AddSingleton(sp => new Control.RunControl(
            catalog,
            sp.GetRequiredService<RedisStore>(),
            sp.GetRequiredService<RunSubmitter>(),
            sp.GetRequiredService<IRequiredActor<WorkflowRuns>>().ActorRef,
            sp.GetRequiredService<IRequiredActor<ProjectControls>>().ActorRef,
            sp.GetRequiredService<IRequiredActor<WorkflowDeploymentsRegion>>().ActorRef,
            sp.GetRequiredService<IRequiredActor<ModelRulesRegion>>().ActorRef,
            sp.GetRequiredService<Akka.Actor.ActorSystem>(),
            processors,
            () => sp.GetRequiredService<ActorRegistry>().TryGet<Control.DeploymentFollower>(out var follower) ? follower : null,
            options.RunHosts,
            options.AskTimeout));
        return services;
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
