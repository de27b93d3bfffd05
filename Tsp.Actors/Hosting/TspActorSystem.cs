using System.Net;
using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Cluster.Hosting.SBR;
using Akka.Hosting;
using Akka.Remote.Hosting;
using Tsp.Actors.Dispatch;
using Tsp.Actors.Nodes;
using Tsp.Actors.Nodes.Onnx;
using Tsp.Actors.Northbound;
using Tsp.Actors.Protocol;
using Tsp.Actors.Workflows;

namespace Tsp.Actors.Hosting;

/// <summary>The actor system of every TSP process: remoting, cluster, serialization, dispatchers.</summary>
public static partial class TspHostingExtensions
{
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
            .WithTspRemoting(options, options.Port, publicHost)
            .WithClustering(new ClusterOptions
            {
                // Plus one role that carries the split brain resolver settings (see ClusterTimingsWatch).
                Roles = [.. roles, options.Cluster.AsRole()],
                SeedNodes = seeds.Select(s => $"{RemotingScheme(options.Tls)}://{SystemName}@{s}").ToArray(),
                SplitBrainResolver = SplitBrainResolverFor(options.Cluster),
                FailureDetector = new PhiAccrualFailureDetectorOptions { AcceptableHeartbeatPause = options.Cluster.AcceptableHeartbeatPause },
            })
            .AddHocon(ClusterTimingHocon(options), HoconAddMode.Prepend)
            .WithActors((system, _) => system.ActorOf(ClusterTimingsWatch.Props(options.Cluster.AsRole()), "tsp-cluster-timings"))
            .WithActors((system, _, resolver) => MemberStatsServices.Register(system, resolver.GetService<OnnxModels>()))
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
            builder.WithShardRegionProxy<ProjectControls>(ProjectControlTypeName, TspRoles.Orchestrator, new Control.ProjectControlExtractor(options.Shards));
            builder.WithShardRegionProxy<WorkflowDeploymentsRegion>(DeploymentsTypeName, TspRoles.Orchestrator, new Control.WorkflowDeploymentsExtractor());
            builder.WithShardRegionProxy<ModelRulesRegion>(ModelRulesTypeName, TspRoles.Orchestrator, new Control.ModelRulesExtractor());
        }

        if (roles.Contains(TspRoles.Gpu) || roles.Contains(TspRoles.Cpu))
        {
            // After the model-rules region (or its proxy): the follower asks it for the operator's rules.
            builder.WithActors((system, registry, resolver) => system.ActorOf(
                Control.ModelRulesFollower.Props(registry.Get<ModelRulesRegion>(), resolver.GetService<OnnxModels>()), Control.ModelRulesFollower.Name));
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

    /// <summary>Timings Akka.Hosting has no options for: the resolver's stable-after, the shutdown
    /// phase in which node routees drain, and how many shards a rebalance moves at once. Sharding's
    /// default moves 3 shards per 10 s round: an orchestrator joining two that hold 64 run hosts would
    /// get its third after 70 s. Up to a quarter of the shards (at most 16) per round, it has them
    /// after two rounds; a moved host costs a recovery and resends its tasks in flight.</summary>
    private static string ClusterTimingHocon(TspOptions options)
    {
        static string Ms(TimeSpan t) => ((long)t.TotalMilliseconds).ToString(System.Globalization.CultureInfo.InvariantCulture) + "ms";
        return $$"""
            akka.cluster.split-brain-resolver.stable-after = {{Ms(options.Cluster.StableAfter)}}
            akka.coordinated-shutdown.phases.service-requests-done.timeout = {{Ms(options.DrainTimeout + TimeSpan.FromSeconds(5))}}
            akka.cluster.sharding.least-shard-allocation-strategy.rebalance-absolute-limit = 16
            akka.cluster.sharding.least-shard-allocation-strategy.rebalance-relative-limit = 0.25
            """;
    }

    /// <summary>Akka remoting on <see cref="TspOptions.Host"/>:<paramref name="port"/>, with TLS when
    /// <see cref="TspOptions.Tls"/> names a certificate (see <see cref="RemotingTls"/>).</summary>
    /// <exception cref="SettingException">The certificate cannot be read or has no private key.</exception>
    public static AkkaConfigurationBuilder WithTspRemoting(this AkkaConfigurationBuilder builder, TspOptions options, int port, string? publicHost = null)
    {
        var remote = new RemoteOptions { HostName = options.Host, Port = port, PublicHostName = publicHost };
        if (options.Tls.Enabled)
        {
            var certificate = options.Tls.Load();
            remote.EnableSsl = true;
            remote.Ssl = new SslOptions
            {
                X509Certificate = certificate,
                SuppressValidation = false,
                RequireMutualAuthentication = true,
                // Members reach each other by IP or pod name: the shared certificate names neither.
                ValidateCertificateHostname = false,
                CustomValidator = Akka.Remote.Transport.DotNetty.CertificateValidation.PinnedCertificate(certificate.Thumbprint),
            };
        }

        return builder.WithRemoting(remote);
    }

    /// <summary>For an external Akka.NET system that subscribes to TP results (see
    /// <see cref="RemoteResults.SubscribeAsync"/>): TSP's serializer and a ClusterClient, registered as
    /// <see cref="TspClusterClient"/>, that contacts the receptionists of the given members (host:port,
    /// orchestrators). The system needs remoting reachable from the cluster (<c>WithRemoting</c>, or
    /// <see cref="WithTspRemoting"/> with the cluster's <paramref name="tls"/> when it uses TLS).</summary>
    public static AkkaConfigurationBuilder AddTspResultClient(this AkkaConfigurationBuilder builder, IEnumerable<string> contacts, RemotingTls? tls = null) =>
        builder
            .AddTspSerialization()
            .WithClusterClient<TspClusterClient>(contacts.Select(c => $"{RemotingScheme(tls)}://{SystemName}@{c}/system/receptionist").ToList());

    /// <summary>The scheme of remote addresses: akka.ssl.tcp with TLS, else akka.tcp.</summary>
    public static string RemotingScheme(RemotingTls? tls) => tls?.Enabled == true ? "akka.ssl.tcp" : "akka.tcp";

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
        builder.AddHocon(TspDispatchers.Config(options.CpuNodeThreads), HoconAddMode.Prepend);
}
