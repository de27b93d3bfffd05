using Tsp.Actors.Nodes.Onnx;
using Tsp.Actors.Dispatch;
using Tsp.Actors.Ingest;
using Tsp.Actors.Storage;

using Tsp.Actors.Workflows;

namespace Tsp.Actors.Hosting;

/// <summary>Every setting of a TSP process, bound from the <c>Tsp</c> configuration section
/// (appsettings.json, <c>Tsp__Redis</c>-style environment variables, command-line flags).</summary>
public sealed class TspOptions
{
    public const string Section = "Tsp";

    /// <summary>Redis endpoint (host:port or a StackExchange.Redis configuration string). Empty in
    /// standalone mode starts an embedded Garnet server.</summary>
    public string? Redis { get; set; }

    /// <summary>PostgreSQL connection string for the journal; empty uses SQLite at <see cref="SqlitePath"/>.</summary>
    public string? Postgres { get; set; }

    public string SqlitePath { get; set; } = Path.Combine(".tsp", "journal.db");

    /// <summary>Workflow files to deploy (orchestrator role).</summary>
    public List<string> Workflows { get; set; } = [];

    /// <summary>Queue settings by queue name; queues a workflow names but this omits get defaults for their role.</summary>
    public Dictionary<string, QueueOptions> Queues { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Address Akka remoting binds to (0.0.0.0 in a container).</summary>
    public string Host { get; set; } = "127.0.0.1";

    /// <summary>Address other members reach this one at (the container's DNS name); empty means <see cref="Host"/>.</summary>
    public string? PublicHost { get; set; }

    /// <summary>Akka remoting port; 0 picks a free one (standalone).</summary>
    public int Port { get; set; }

    /// <summary>Seed nodes as host:port; empty means this process is its own seed.</summary>
    public List<string> Seeds { get; set; } = [];

    /// <summary>Cluster roles of this process: any of seed, orchestrator, gpu, cpu.</summary>
    public List<string> Roles { get; set; } = [];

    /// <summary>Worker: the queues it serves and its slots for each, as <c>QUEUE[=SLOTS]</c> items
    /// (<c>gpu-model=2</c>); empty serves every queue of its roles. See <see cref="Nodes.ServedQueues"/>.</summary>
    public List<string> WorkerQueues { get; set; } = [];

    /// <exception cref="SettingException">An item of <see cref="WorkerQueues"/> is malformed.</exception>
    public Nodes.ServedQueues ServedQueues()
    {
        try
        {
            return Nodes.ServedQueues.Parse(WorkerQueues);
        }
        catch (FormatException e)
        {
            throw new SettingException($"Tsp:WorkerQueues (--queues): {e.Message}");
        }
    }

    /// <summary>Whether this process has <paramref name="role"/>; a process given no roles has all
    /// of them (standalone).</summary>
    public bool Has(string role) => Roles.Count == 0 || Roles.Contains(role);

    public int Shards { get; set; } = 64;

    /// <summary>Workflow-run hosts (sharded entities that hold the runs; a run's id picks its host):
    /// how many orchestrators can share the runs. Changing it makes new hosts; the old ones finish the
    /// runs they hold and retire (<see cref="Workflows.RunMessageExtractor"/>).</summary>
    public int RunHosts { get; set; } = 64;

    /// <summary>Snapshot cadence and finished-run memory of each run host.</summary>
    public RunHostTuning RunHost { get; set; } = new();

    /// <summary>On SIGTERM, how long a worker's node routees may take to finish the tasks they hold
    /// before the member leaves (the tasks still unfinished then are retried elsewhere).</summary>
    public TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Membership and failure handling (split brain resolver, failure detector).</summary>
    public ClusterTuning Cluster { get; set; } = new();

    /// <summary>TLS for Akka remoting: members, the status verb and ClusterClient subscribers.</summary>
    public RemotingTls Tls { get; set; } = new();

    /// <summary>How long the edge waits for a run to be accepted.</summary>
    public TimeSpan AskTimeout { get; set; } = TimeSpan.FromSeconds(10);

    public int MaxFrameBytes { get; set; } = 32 * 1024 * 1024;

    public StorageOptions Storage { get; set; } = new();

    public KafkaOptions Kafka { get; set; } = new();

    /// <summary>ONNX nodes: model repository, execution provider, threads.</summary>
    public OnnxOptions Onnx { get; set; } = new();

    /// <summary>How many live results a subscriber (gRPC or Akka remote) may fall behind before it is cut off.</summary>
    public int SubscriberBuffer { get; set; } = 1024;

    /// <summary>Threads of a pool of the CPU node routees' own; 0 runs them on the process's thread pool.</summary>
    public int CpuNodeThreads { get; set; }

    /// <summary>Checks what a member needs to join a cluster, before anything starts: roles it knows,
    /// seeds of the form HOST:PORT, ports in range, a readable TLS certificate when one is named.</summary>
    /// <exception cref="SettingException">The message names the setting and the bad value.</exception>
    public void CheckMembership()
    {
        if (Tls.Enabled)
        {
            Tls.Load().Dispose();
        }

        foreach (var role in Roles.Where(r => !TspRoles.All.Contains(r)))
        {
            throw new SettingException($"unknown role '{role}' (roles: {string.Join(", ", TspRoles.All)})");
        }

        ServedQueues();
        if (Port is < 0 or > 65535)
        {
            throw new SettingException($"port {Port} is out of range (0-65535)");
        }

        foreach (var seed in Seeds)
        {
            var colon = seed.LastIndexOf(':');
            var portText = colon > 0 ? seed[(colon + 1)..] : "";
            if (colon <= 0 || !int.TryParse(portText, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
            {
                throw new SettingException($"seed '{seed}' is not HOST:PORT (e.g. 10.0.0.5:4053)");
            }
        }
    }

    public QueueOptions QueueOptionsFor(string queue, string role) =>
        Queues.TryGetValue(queue, out var configured) ? configured with { Role = role } : QueueOptions.DefaultFor(role);
}

public static class TspRoles
{
    public const string Seed = "seed";
    public const string Orchestrator = "orchestrator";
    public const string Gpu = "gpu";
    public const string Cpu = "cpu";

    public static readonly IReadOnlyList<string> All = [Seed, Orchestrator, Gpu, Cpu];
}

/// <summary>
/// How the cluster decides that a member is gone. The split brain resolver downs the members on the
/// minority side of a partition (keep-majority) once the membership has been stable for
/// <see cref="StableAfter"/>; a crashed member is downed the same way, and only then are its tasks
/// retried and its run hosts restarted elsewhere. Shorter means faster failover but more risk of
/// downing a member that was only slow (a long GC pause, a saturated network).
/// </summary>
public sealed record ClusterTuning
{
    /// <summary>keep-majority (default), keep-oldest or static-quorum.</summary>
    public string SplitBrainStrategy { get; init; } = "keep-majority";

    /// <summary>Static-quorum only: the smallest side that survives.</summary>
    public int QuorumSize { get; init; }

    /// <summary>Stable membership needed before the resolver acts (Akka's default is 20 s).</summary>
    public TimeSpan StableAfter { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long heartbeats may be missing before a member is unreachable (Akka's default 3 s).</summary>
    public TimeSpan AcceptableHeartbeatPause { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>Prefix of the extra cluster role that carries these settings to the other members.</summary>
    public const string RolePrefix = "sbr/";

    /// <summary>These settings as a cluster role (members gossip their roles), so that every member can
    /// see whether the others resolve splits the same way; see <see cref="ClusterTimingsWatch"/>.</summary>
    public string AsRole() => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"{RolePrefix}{SplitBrainStrategy}/quorum-{QuorumSize}/stable-after-{(long)StableAfter.TotalMilliseconds}ms/heartbeat-pause-{(long)AcceptableHeartbeatPause.TotalMilliseconds}ms");
}

/// <summary>
/// TLS for Akka remoting with one certificate that every member shares (a PKCS#12 file with its
/// private key, the same on every member). A peer is accepted only if it presents exactly that
/// certificate (pinned by thumbprint), both ways: a process without it cannot join the cluster, read
/// <c>status</c> or subscribe through ClusterClient. Off (plaintext) when <see cref="Certificate"/> is empty.
/// </summary>
public sealed record RemotingTls
{
    /// <summary>Path of the .pfx (PKCS#12) file.</summary>
    public string? Certificate { get; init; }

    /// <summary>Its password, if it has one (give it as the environment variable Tsp__Tls__Password).</summary>
    public string? Password { get; init; }

    public bool Enabled => !string.IsNullOrWhiteSpace(Certificate);

    /// <exception cref="SettingException">The file is missing, unreadable, not PKCS#12, the password is
    /// wrong, or it holds no private key.</exception>
    public System.Security.Cryptography.X509Certificates.X509Certificate2 Load()
    {
        if (!File.Exists(Certificate))
        {
            throw new SettingException($"Tsp:Tls:Certificate: no such file '{Certificate}'");
        }

        System.Security.Cryptography.X509Certificates.X509Certificate2 certificate;
        try
        {
            certificate = System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadPkcs12FromFile(Certificate, Password);
        }
        catch (Exception e) when (e is System.Security.Cryptography.CryptographicException or IOException or UnauthorizedAccessException)
        {
            throw new SettingException($"Tsp:Tls:Certificate: cannot read '{Certificate}' as a PKCS#12 (.pfx) file with the password in Tsp:Tls:Password: {e.Message}");
        }

        if (!certificate.HasPrivateKey)
        {
            certificate.Dispose();
            throw new SettingException($"Tsp:Tls:Certificate: '{Certificate}' has no private key; remoting TLS needs the certificate with its key");
        }

        return certificate;
    }
}
