using Akka.Actor;
using Akka.Cluster;
using StackExchange.Redis;
using Tsp.Actors.Nodes.Onnx;
using Tsp.Actors.Workflows;

namespace Tsp.Actors.Hosting;

/// <summary>One part of readiness and what it found.</summary>
public sealed record HealthCheck(string Name, bool Healthy, string Detail);

/// <summary>Whether a member may take work: every check healthy.</summary>
public sealed record Readiness(IReadOnlyList<HealthCheck> Checks)
{
    public bool Ready => Checks.All(c => c.Healthy);

    /// <summary>The failing checks in one line, for a probe's body and a log.</summary>
    public string Summary => Ready ? "ready" : string.Join("; ", Checks.Where(c => !c.Healthy).Select(c => $"{c.Name}: {c.Detail}"));
}

/// <summary>
/// A process's liveness and readiness, for the hosts' HTTP probes and the gRPC health service (one
/// answer for both). Live: the actor system runs. Ready: the member is Up in the cluster, Redis
/// answers, the journal answers (orchestrators), and the models of the repository are loaded (members
/// that run nodes).
/// </summary>
public sealed class TspHealth(TspOptions options, ActorSystem system, IConnectionMultiplexer redis, ModelPreload models)
{
    /// <summary>How long a dependency may take to answer before it counts as away.</summary>
    public static readonly TimeSpan CheckTimeout = TimeSpan.FromSeconds(2);

    /// <summary>False once the actor system has terminated (coordinated shutdown, or a fatal error):
    /// the process should be restarted.</summary>
    public bool Live => !system.WhenTerminated.IsCompleted;

    public async Task<Readiness> CheckAsync(CancellationToken cancellationToken = default)
    {
        var checks = new List<Task<HealthCheck>> { Task.FromResult(Member()), RedisAsync() };
        if (options.Has(TspRoles.Orchestrator))
        {
            checks.Add(JournalAsync(cancellationToken));
        }

        if (models.Applies)
        {
            checks.Add(Task.FromResult(models.Check()));
        }

        return new Readiness(await Task.WhenAll(checks));
    }

    private HealthCheck Member()
    {
        if (!Live)
        {
            return new HealthCheck("member", false, "the actor system has terminated");
        }

        var self = Cluster.Get(system).SelfMember;
        return new HealthCheck("member", self.Status == MemberStatus.Up, $"{self.Address} is {self.Status}");
    }

    private async Task<HealthCheck> RedisAsync()
    {
        var endpoint = string.Join(",", redis.GetEndPoints().Select(e => e.ToString()));
        try
        {
            var latency = await redis.GetDatabase().PingAsync().WaitAsync(CheckTimeout);
            return new HealthCheck("redis", true, $"{endpoint} answered in {latency.TotalMilliseconds:0.0} ms");
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            return new HealthCheck("redis", false, $"{endpoint} does not answer: {(e is TimeoutException ? $"no answer within {CheckTimeout.TotalSeconds:0} s" : e.Message)}");
        }
    }

    private async Task<HealthCheck> JournalAsync(CancellationToken cancellationToken)
    {
        var problem = await TspHostingExtensions.PingJournalAsync(options, CheckTimeout, cancellationToken);
        var journal = string.IsNullOrWhiteSpace(options.Postgres) ? $"SQLite {options.SqlitePath}" : "PostgreSQL";
        return new HealthCheck("journal", problem is null, problem ?? $"{journal} answers");
    }
}

/// <summary>
/// Loads the models a member that runs nodes serves when it starts, in the background, so that
/// readiness can wait for them (as Triton's does) and the first frames wait for no load: the models
/// the deployed workflows name on this member's roles, or, on a member that knows no workflow (a
/// worker), every model of the repository. A pass that left a model out is tried again by a
/// readiness check at most every <see cref="RetryEvery"/> (a model may arrive after the start).
/// </summary>
public sealed class ModelPreload(OnnxModels models, WorkflowCatalog catalog, TspOptions options) : Microsoft.Extensions.Hosting.IHostedService
{
    /// <summary>How often a readiness check loads again the models a pass left out.</summary>
    public static readonly TimeSpan RetryEvery = TimeSpan.FromSeconds(10);

    private volatile Task<IReadOnlyList<string>>? _loading;
    private long _started;

    /// <summary>Whether this process runs nodes, and so serves models.</summary>
    public bool Applies => options.Has(TspRoles.Gpu) || options.Has(TspRoles.Cpu);

    /// <summary>Finished once every model has loaded or failed to (null until started).</summary>
    public Task<IReadOnlyList<string>>? Loading => _loading;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (Applies && options.Onnx.LoadAtStart)
        {
            Load();
        }

        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>The models of deployed workflows' nodes on this member's roles; null: no workflow is known.</summary>
    public IReadOnlyCollection<string>? Wanted() =>
        !catalog.All.Any()
            ? null
            : catalog.All.SelectMany(w => w.Nodes)
                .Where(n => options.Has(n.Role) && n.Parameters.TryGetValue("model", out var model) && model.Length > 0)
                .Select(n => n.Parameters["model"])
                .Distinct(StringComparer.Ordinal)
                .ToList();

    public HealthCheck Check()
    {
        if (!options.Onnx.LoadAtStart)
        {
            return new HealthCheck("models", true, "loaded on first use (Tsp:Onnx:LoadAtStart is false)");
        }

        if (_loading is not { IsCompleted: true } loading)
        {
            return new HealthCheck("models", false, $"loading the models of {models.Repository.Root}");
        }

        var problems = loading.IsCompletedSuccessfully ? loading.Result : [loading.Exception?.GetBaseException().Message ?? "loading was cancelled"];
        if (problems.Count > 0)
        {
            // A model may arrive later; a broken one is not loaded again on every probe.
            if (System.Diagnostics.Stopwatch.GetElapsedTime(_started) >= RetryEvery)
            {
                Load();
            }

            return new HealthCheck("models", false, string.Join("; ", problems));
        }

        var loaded = models.Loaded;
        return new HealthCheck("models", true, loaded.Count == 0 ? $"no model to serve from {models.Repository.Root}" : string.Join(", ", loaded.Select(m => $"{m.Model} v{m.Version} on {m.Provider}")));
    }

    private void Load()
    {
        var wanted = Wanted();
        _started = System.Diagnostics.Stopwatch.GetTimestamp();
        _loading = Task.Run(() => models.LoadAllAsync(wanted), CancellationToken.None);
    }
}
