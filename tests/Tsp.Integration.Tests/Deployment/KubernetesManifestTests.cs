using System.Collections;
using System.Reflection;
using Microsoft.Extensions.Configuration;
using Tsp.Actors.Hosting;
using Tsp.Seed.Grpc;
using Tsp.ServiceDefaults.Operations;
using YamlDotNet.RepresentationModel;

namespace Tsp.Integration.Tests.Deployment;

/// <summary>
/// No Kubernetes runs here, so the manifests in deploy/k8s are checked against what the hosts read:
/// every Tsp__* variable names a real option and binds, roles and ports agree with the options, the
/// image and entry points are the ones the Dockerfile builds, services select pods that exist, and
/// the seeds are exactly the orchestrators' stable DNS names as they advertise themselves.
/// </summary>
public sealed class KubernetesManifestTests
{
    private static readonly string Root = Tsp.Tests.Shared.RepositoryFiles.Root;
    private static readonly List<YamlMappingNode> Documents = LoadManifests();

    [Fact]
    public void Every_manifest_parses_and_the_expected_workloads_are_there()
    {
        Assert.NotEmpty(Documents);
        Assert.All(Documents, d => Assert.False(string.IsNullOrEmpty(Scalar(d, "kind")), "a document without kind"));
        Assert.Equal(["StatefulSet"], Workloads().Where(w => Name(w) == "tsp-orchestrator").Select(w => Scalar(w, "kind")));
        Assert.Equal(["Deployment"], Workloads().Where(w => Name(w) == "tsp-gpu-worker").Select(w => Scalar(w, "kind")));
        Assert.Equal(["Deployment"], Workloads().Where(w => Name(w) == "tsp-cpu-worker").Select(w => Scalar(w, "kind")));
    }

    [Fact]
    public void Every_Tsp_variable_names_an_option_the_hosts_read_and_binds_to_it()
    {
        foreach (var workload in Workloads())
        {
            foreach (var container in Containers(workload))
            {
                var env = EnvironmentOf(container);
                Assert.NotEmpty(env);
                foreach (var name in env.Keys)
                {
                    Assert.StartsWith("Tsp__", name, StringComparison.Ordinal);
                    var path = name.Split("__").Skip(1).ToArray();
                    var known = path[0] switch
                    {
                        "Grpc" => IsOptionPath(typeof(GrpcOptions), path[1..]),
                        "Http" => IsOptionPath(typeof(HttpOptions), path[1..]),
                        _ => IsOptionPath(typeof(TspOptions), path),
                    };
                    Assert.True(known, $"{Name(workload)}: {name} is not an option of TspOptions, of the gRPC gateway (GrpcOptions) or of the operations port (HttpOptions)");
                }

                var options = Bind(env);
                Assert.All(options.Roles, r => Assert.Contains(r, TspRoles.All));
            }
        }
    }

    [Fact]
    public void The_seeds_are_the_orchestrators_stable_names_as_each_advertises_itself()
    {
        var orchestrators = Workloads().Single(w => Scalar(w, "kind") == "StatefulSet");
        var spec = (YamlMappingNode)orchestrators["spec"];
        var service = Scalar(spec, "serviceName");
        var headless = Documents.Single(d => Scalar(d, "kind") == "Service" && Name(d) == service);
        Assert.Equal("None", Scalar((YamlMappingNode)headless["spec"], "clusterIP"));
        var replicas = int.Parse(Scalar(spec, "replicas"), System.Globalization.CultureInfo.InvariantCulture);
        var container = Assert.Single(Containers(orchestrators));
        var advertised = Enumerable.Range(0, replicas).Select(i =>
        {
            var options = Bind(EnvironmentOf(container, podName: $"{Name(orchestrators)}-{i}"));
            return $"{options.PublicHost}:{options.Port}";
        }).ToList();
        Assert.Equal(Enumerable.Range(0, replicas).Select(i => $"{Name(orchestrators)}-{i}.{service}:4053"), advertised);

        foreach (var workload in Workloads())
        {
            // Every member, orchestrator or worker, lists exactly those seeds (the first forms the cluster).
            Assert.Equal(advertised, Bind(EnvironmentOf(Assert.Single(Containers(workload)))).Seeds);
        }
    }

    [Fact]
    public void Roles_entry_points_and_image_match_what_the_Dockerfile_and_compose_build()
    {
        var dockerfile = File.ReadAllText(Path.Combine(Root, "Dockerfile"));
        var compose = File.ReadAllText(Path.Combine(Root, "docker-compose.yml"));
        var expected = new Dictionary<string, (string Dll, string Role)>
        {
            ["tsp-orchestrator"] = ("/app/seed/Tsp.Seed.dll", TspRoles.Orchestrator),
            ["tsp-gpu-worker"] = ("/app/gpunode/Tsp.GpuNode.dll", TspRoles.Gpu),
            ["tsp-cpu-worker"] = ("/app/gpunode/Tsp.GpuNode.dll", TspRoles.Cpu),
        };
        foreach (var workload in Workloads())
        {
            var container = Assert.Single(Containers(workload));
            var image = Scalar(container, "image");
            Assert.Contains($"image: {image}", compose, StringComparison.Ordinal);
            var command = ((YamlSequenceNode)container["command"]).Select(n => n.ToString()).ToList();
            var (dll, role) = expected[Name(workload)];
            Assert.Equal("dotnet", command[0]);
            Assert.Equal(dll, command[1]);
            // The Dockerfile publishes each host into the folder the manifest starts it from.
            Assert.Contains($"-o {Path.GetDirectoryName(dll)}", dockerfile, StringComparison.Ordinal);
            Assert.True(File.Exists(Path.Combine(Root, Path.GetFileNameWithoutExtension(dll), Path.GetFileNameWithoutExtension(dll) + ".csproj")));
            Assert.Contains(role, Bind(EnvironmentOf(container)).Roles);
            if (role == TspRoles.Orchestrator)
            {
                Assert.Equal("run", command[2]);
                Assert.All(Bind(EnvironmentOf(container)).Workflows, w => Assert.True(File.Exists(Path.Combine(Root, w.Replace("/app/", "", StringComparison.Ordinal))), $"workflow {w} is not in the image's samples"));
            }
        }

        var gpu = Assert.Single(Containers(Workloads().Single(w => Name(w) == "tsp-gpu-worker")));
        Assert.Equal("1", ((YamlMappingNode)((YamlMappingNode)gpu["resources"])["limits"])["nvidia.com/gpu"].ToString());
    }

    [Fact]
    public void Every_TSP_pod_speaks_TLS_with_the_certificate_its_secret_mounts_where_the_setting_points()
    {
        foreach (var workload in Workloads())
        {
            var container = Assert.Single(Containers(workload));
            var tls = Bind(EnvironmentOf(container)).Tls;
            Assert.True(tls.Enabled, $"{Name(workload)}: remoting TLS is off");
            Assert.Equal("from-secret", tls.Password);
            var mounts = ((YamlSequenceNode)container["volumeMounts"]).Cast<YamlMappingNode>();
            var mount = Assert.Single(mounts, m => tls.Certificate!.StartsWith(Scalar(m, "mountPath") + "/", StringComparison.Ordinal));
            var volume = ((YamlSequenceNode)PodSpec(workload)["volumes"]).Cast<YamlMappingNode>().Single(v => Scalar(v, "name") == Scalar(mount, "name"));
            var items = ((YamlSequenceNode)((YamlMappingNode)volume["secret"])["items"]).Cast<YamlMappingNode>();
            Assert.Contains(items, i => tls.Certificate == $"{Scalar(mount, "mountPath")}/{Scalar(i, "path")}");
        }
    }

    [Fact]
    public void Redis_runs_with_its_append_only_file_on_a_persistent_volume_in_compose_and_on_Kubernetes()
    {
        var redis = Documents.Single(d => Scalar(d, "kind") == "StatefulSet" && Name(d) == "redis");
        var container = Assert.Single(Containers(redis));
        var args = string.Join(' ', ((YamlSequenceNode)container["args"]).Select(n => n.ToString()));
        Assert.Contains("--appendonly yes", args, StringComparison.Ordinal);
        Assert.Contains("--dir /data", args, StringComparison.Ordinal);
        var mount = Assert.Single(((YamlSequenceNode)container["volumeMounts"]).Cast<YamlMappingNode>());
        Assert.Equal("/data", Scalar(mount, "mountPath"));
        var claims = ((YamlSequenceNode)((YamlMappingNode)redis["spec"])["volumeClaimTemplates"]).Cast<YamlMappingNode>();
        Assert.Contains(claims, c => Name(c) == Scalar(mount, "name"));
        // The members reach it under the name tsp-config gives them.
        var service = Documents.Single(d => Scalar(d, "kind") == "Service" && Name(d) == "redis");
        var port = Scalar(Assert.Single(((YamlSequenceNode)((YamlMappingNode)service["spec"])["ports"]).Cast<YamlMappingNode>()), "port");
        Assert.All(Workloads(), w => Assert.Equal($"redis:{port}", Bind(EnvironmentOf(Assert.Single(Containers(w)))).Redis));

        var compose = new YamlStream();
        compose.Load(new StringReader(File.ReadAllText(Path.Combine(Root, "docker-compose.yml"))));
        var composeRedis = (YamlMappingNode)((YamlMappingNode)((YamlMappingNode)compose.Documents[0].RootNode)["services"])["redis"];
        var command = string.Join(' ', ((YamlSequenceNode)composeRedis["command"]).Select(n => n.ToString()));
        Assert.Contains("--appendonly yes", command, StringComparison.Ordinal);
        Assert.Contains("--dir /data", command, StringComparison.Ordinal);
        Assert.Contains(((YamlSequenceNode)composeRedis["volumes"]).Select(n => n.ToString()), v => v.EndsWith(":/data", StringComparison.Ordinal));
    }

    [Fact]
    public void Container_ports_and_probes_are_the_ports_the_options_configure()
    {
        foreach (var workload in Workloads())
        {
            var container = Assert.Single(Containers(workload));
            var options = Bind(EnvironmentOf(container));
            var ports = ((YamlSequenceNode)container["ports"]).Cast<YamlMappingNode>().ToDictionary(p => Scalar(p, "name"), p => int.Parse(Scalar(p, "containerPort"), System.Globalization.CultureInfo.InvariantCulture));
            Assert.Equal(options.Port, ports["remoting"]);
            if (options.Roles.Contains(TspRoles.Orchestrator))
            {
                Assert.Equal(BindGrpc(EnvironmentOf(container)).Port, ports["grpc"]);
            }

            Assert.Equal(BindHttp(EnvironmentOf(container)).Port, ports["http"]);
            foreach (var (probe, path) in new[] { ("readinessProbe", OperationsHttp.ReadyPath), ("livenessProbe", OperationsHttp.LivePath) })
            {
                var get = (YamlMappingNode)((YamlMappingNode)container[probe])["httpGet"];
                Assert.Equal(("http", path), (get["port"].ToString(), get["path"].ToString()));
            }

            var annotations = (YamlMappingNode)((YamlMappingNode)((YamlMappingNode)((YamlMappingNode)workload["spec"])["template"])["metadata"])["annotations"];
            Assert.Equal(ports["http"].ToString(System.Globalization.CultureInfo.InvariantCulture), annotations["prometheus.io/port"].ToString());
            Assert.Equal(OperationsHttp.MetricsPath, annotations["prometheus.io/path"].ToString());

            // Long enough for a worker to drain its tasks after SIGTERM.
            var grace = int.Parse(Scalar(PodSpec(workload), "terminationGracePeriodSeconds"), System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(TimeSpan.FromSeconds(grace) > options.DrainTimeout, $"{Name(workload)}: grace period {grace} s is not longer than the drain timeout {options.DrainTimeout}");
        }
    }

    [Fact]
    public void Autoscalers_target_existing_workloads_on_series_the_processes_export()
    {
        var scaled = Documents.Where(d => Scalar(d, "kind") == "ScaledObject").ToList();
        Assert.Equal(3, scaled.Count);
        var exported = ExportedSeries();
        foreach (var scaler in scaled)
        {
            var spec = (YamlMappingNode)scaler["spec"];
            var target = (YamlMappingNode)spec["scaleTargetRef"];
            var workload = Assert.Single(Workloads(), w => Name(w) == Scalar(target, "name") && Scalar(w, "kind") == Scalar(target, "kind"));
            var min = int.Parse(Scalar(spec, "minReplicaCount"), System.Globalization.CultureInfo.InvariantCulture);
            var roles = Bind(EnvironmentOf(Assert.Single(Containers(workload)))).Roles;
            if (roles.Contains(TspRoles.Seed))
            {
                // Never fewer orchestrators than the seeds every member is told about.
                var seeds = Bind(EnvironmentOf(Assert.Single(Containers(workload)))).Seeds.Count;
                Assert.True(min >= seeds, $"{Name(scaler)} may scale the orchestrators below the {seeds} seeds");
            }
            else
            {
                Assert.Equal(0, min);
            }

            foreach (var trigger in ((YamlSequenceNode)spec["triggers"]).Cast<YamlMappingNode>())
            {
                var metadata = (YamlMappingNode)trigger["metadata"];
                Assert.True(double.Parse(Scalar(metadata, "threshold"), System.Globalization.CultureInfo.InvariantCulture) >= 1);
                var series = System.Text.RegularExpressions.Regex.Matches(Scalar(metadata, "query"), "tsp_[a-z_]+").Select(m => m.Value).ToList();
                Assert.NotEmpty(series);
                Assert.All(series, name => Assert.Contains(name, exported));
                foreach (var role in System.Text.RegularExpressions.Regex.Matches(Scalar(metadata, "query"), "role=\"([a-z]+)\"").Select(m => m.Groups[1].Value))
                {
                    Assert.Contains(role, roles);
                }
            }
        }
    }

    /// <summary>The Prometheus names of the gauges the code exports (<see cref="Tsp.Actors.Telemetry.TspMetrics"/>).</summary>
    private static HashSet<string> ExportedSeries() =>
        typeof(Tsp.Actors.Telemetry.TspMetrics).GetFields(BindingFlags.Public | BindingFlags.Static)
            .Select(f => f.GetValue(null))
            .OfType<Tsp.Actors.Telemetry.GaugeFamily>()
            .Select(g => g.Name)
            .ToHashSet(StringComparer.Ordinal);

    [Fact]
    public void Services_select_existing_pods_and_pods_run_as_an_existing_service_account()
    {
        var podLabels = Documents.Where(d => Scalar(d, "kind") is "StatefulSet" or "Deployment").Select(w => (YamlMappingNode)((YamlMappingNode)((YamlMappingNode)((YamlMappingNode)w["spec"])["template"])["metadata"])["labels"]).ToList();
        foreach (var service in Documents.Where(d => Scalar(d, "kind") == "Service"))
        {
            var selector = (YamlMappingNode)((YamlMappingNode)service["spec"])["selector"];
            Assert.Contains(podLabels, labels => selector.All(s => labels.Children.TryGetValue(s.Key, out var v) && v.ToString() == s.Value.ToString()));
        }

        var accounts = Documents.Where(d => Scalar(d, "kind") == "ServiceAccount").Select(Name).ToHashSet();
        Assert.All(Workloads(), w => Assert.Contains(Scalar(PodSpec(w), "serviceAccountName"), accounts));
        var role = Documents.Single(d => Scalar(d, "kind") == "Role");
        var binding = Documents.Single(d => Scalar(d, "kind") == "RoleBinding");
        Assert.Equal(Name(role), ((YamlMappingNode)binding["roleRef"])["name"].ToString());
        Assert.Contains(((YamlSequenceNode)binding["subjects"]).Cast<YamlMappingNode>(), s => accounts.Contains(Scalar(s, "name")));
    }

    /// <summary>TspOptions from the variables, every one of them known (the gateway's and the operations
    /// port's sections aside: the hosts bind them, see <see cref="BindGrpc"/> and <see cref="BindHttp"/>).</summary>
    private static TspOptions Bind(Dictionary<string, string?> env) =>
        Configuration(env.Where(e => !e.Key.StartsWith("Tsp__Grpc__", StringComparison.Ordinal) && !e.Key.StartsWith("Tsp__Http__", StringComparison.Ordinal)))
            .GetSection(TspOptions.Section).Get<TspOptions>(o => o.ErrorOnUnknownConfiguration = true) ?? new TspOptions();

    private static GrpcOptions BindGrpc(Dictionary<string, string?> env) =>
        Configuration(env).GetSection(GrpcOptions.Section).Get<GrpcOptions>(o => o.ErrorOnUnknownConfiguration = true) ?? new GrpcOptions();

    private static HttpOptions BindHttp(Dictionary<string, string?> env) =>
        Configuration(env).GetSection(HttpOptions.Section).Get<HttpOptions>(o => o.ErrorOnUnknownConfiguration = true) ?? new HttpOptions();

    private static IConfiguration Configuration(IEnumerable<KeyValuePair<string, string?>> env) =>
        new ConfigurationBuilder().AddInMemoryCollection(env.Select(e => KeyValuePair.Create(e.Key.Replace("__", ":", StringComparison.Ordinal), e.Value))).Build();

    /// <summary>Walks the option path: properties by name (as the configuration binder matches them),
    /// list indices, dictionary keys.</summary>
    private static bool IsOptionPath(Type type, string[] path)
    {
        if (path.Length == 0)
        {
            return true;
        }

        if (type.IsGenericType && type.GetGenericTypeDefinition() == typeof(Dictionary<,>))
        {
            return IsOptionPath(type.GetGenericArguments()[1], path[1..]);
        }

        if (type.IsGenericType && type.GetGenericTypeDefinition() == typeof(List<>))
        {
            return int.TryParse(path[0], out _) && IsOptionPath(type.GetGenericArguments()[0], path[1..]);
        }

        var property = type.GetProperty(path[0], BindingFlags.Public | BindingFlags.Instance | BindingFlags.IgnoreCase);
        return property is not null && (property.CanWrite || typeof(IEnumerable).IsAssignableFrom(property.PropertyType)) && IsOptionPath(property.PropertyType, path[1..]);
    }

    /// <summary>A container's Tsp__* variables, as the pod sees them: its ConfigMaps', then its own;
    /// <c>$(VAR)</c> expanded from its other variables (the pod name, the pod IP from the downward API);
    /// a secret's value as a placeholder. Helper variables used only in <c>$(…)</c> are not returned.</summary>
    private static Dictionary<string, string?> EnvironmentOf(YamlMappingNode container, string podName = "pod-0")
    {
        var all = new Dictionary<string, string?>(StringComparer.Ordinal);
        if (container.Children.TryGetValue("envFrom", out var envFrom))
        {
            foreach (var source in ((YamlSequenceNode)envFrom).Cast<YamlMappingNode>())
            {
                var mapName = ((YamlMappingNode)source["configMapRef"])["name"].ToString();
                var map = Documents.Single(d => Scalar(d, "kind") == "ConfigMap" && Name(d) == mapName);
                foreach (var (key, value) in (YamlMappingNode)map["data"])
                {
                    all[key.ToString()] = value.ToString();
                }
            }
        }

        foreach (var entry in EnvEntries(container))
        {
            var name = Scalar(entry, "name");
            all[name] = entry.Children.TryGetValue("value", out var value)
                ? System.Text.RegularExpressions.Regex.Replace(value.ToString(), @"\$\((\w+)\)", m => all.TryGetValue(m.Groups[1].Value, out var v) ? v! : m.Value)
                : FromOutside((YamlMappingNode)entry["valueFrom"], podName);
        }

        var helpers = EnvEntries(container).Select(e => Scalar(e, "name")).Where(n => !n.StartsWith("Tsp__", StringComparison.Ordinal)).ToList();
        foreach (var helper in helpers)
        {
            Assert.Contains(EnvEntries(container), e => e.Children.TryGetValue("value", out var v) && v.ToString().Contains($"$({helper})", StringComparison.Ordinal));
            all.Remove(helper);
        }

        return all;
    }

    /// <summary>What Kubernetes fills in at run time: the pod's name or IP, or (secrets) a placeholder.</summary>
    private static string FromOutside(YamlMappingNode valueFrom, string podName) =>
        valueFrom.Children.TryGetValue("fieldRef", out var field)
            ? Scalar((YamlMappingNode)field, "fieldPath") switch
            {
                "metadata.name" => podName,
                "status.podIP" => "10.0.0.1",
                var other => throw new InvalidOperationException($"unexpected fieldRef {other}"),
            }
            : "from-secret";

    private static IEnumerable<YamlMappingNode> EnvEntries(YamlMappingNode container) =>
        container.Children.TryGetValue("env", out var env) ? ((YamlSequenceNode)env).Cast<YamlMappingNode>() : [];

    /// <summary>TSP's own workloads (not the Redis that deploy/k8s also offers).</summary>
    private static IEnumerable<YamlMappingNode> Workloads() => Documents.Where(d => Scalar(d, "kind") is "StatefulSet" or "Deployment" && Name(d).StartsWith("tsp-", StringComparison.Ordinal));

    private static YamlMappingNode PodSpec(YamlMappingNode workload) =>
        (YamlMappingNode)((YamlMappingNode)((YamlMappingNode)workload["spec"])["template"])["spec"];

    private static IEnumerable<YamlMappingNode> Containers(YamlMappingNode workload) => ((YamlSequenceNode)PodSpec(workload)["containers"]).Cast<YamlMappingNode>();

    private static string Name(YamlMappingNode document) => ((YamlMappingNode)document["metadata"])["name"].ToString();

    private static string Scalar(YamlMappingNode node, string key) => node.Children.TryGetValue(key, out var value) ? value.ToString() : string.Empty;

    private static List<YamlMappingNode> LoadManifests()
    {
        var documents = new List<YamlMappingNode>();
        foreach (var file in Directory.GetFiles(Path.Combine(Root, "deploy", "k8s"), "*.yaml").Order(StringComparer.Ordinal))
        {
            var stream = new YamlStream();
            using var reader = new StreamReader(file);
            stream.Load(reader);
            documents.AddRange(stream.Documents.Select(d => (YamlMappingNode)d.RootNode));
        }

        return documents;
    }
}
