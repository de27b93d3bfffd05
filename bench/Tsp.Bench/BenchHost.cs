using System.Threading.Channels;
using Akka.Actor;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;
using OpenTelemetry.Metrics;
using Tsp.Actors.Dispatch;
using Tsp.Actors.Hosting;
using Tsp.Actors.Ingest;
using Tsp.Actors.Northbound;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Actors.Telemetry;

namespace Tsp.Bench;

/// <summary>A standalone TSP (every role, one process) for a scenario, with a subscriber on its project.</summary>
internal sealed class BenchHost : IAsyncDisposable
{
    private readonly IHost _host;
    private readonly string _workflow;
    private readonly IActorRef _subscriber;
    private readonly TspOptions _tsp;
    private readonly string _project;

    private BenchHost(IHost host, string project, string workflow, IActorRef subscriber, ChannelReader<TpResult> results, TspOptions tsp)
    {
        _host = host;
        _project = project;
        _workflow = workflow;
        _subscriber = subscriber;
        _tsp = tsp;
        Results = results;
    }

    public ChannelReader<TpResult> Results { get; }

    public RunSubmitter Submitter => _host.Services.GetRequiredService<RunSubmitter>();

    public IServiceProvider Services => _host.Services;

    public TspOptions Options => _host.Services.GetRequiredService<TspOptions>();

    /// <summary>The numbers of one of this orchestrator's queues.</summary>
    public Task<QueueStats> QueueStatsAsync(string queue) =>
        _host.Services.GetRequiredService<NodeQueues>().All[queue].Ask<QueueStats>(GetQueueStats.Instance, TimeSpan.FromSeconds(10));

    /// <summary>Waits until a queue counts exactly <paramref name="workers"/> routees (workers joined or removed).</summary>
    public async Task WaitForWorkersAsync(string queue, int workers, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while ((await QueueStatsAsync(queue)).Workers != workers)
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"queue {queue} did not reach {workers} routees within {timeout.TotalSeconds:0} s");
            }

            await Task.Delay(100);
        }
    }

    /// <param name="configure">Adjusts the options (journal, queues) before the host starts.</param>
    public static async Task<BenchHost> StartAsync(BenchOptions options, string project, string workflowYaml, Action<TspOptions>? configure = null)
    {
        var workflow = Path.Combine(Path.GetTempPath(), $"{project}.yaml");
        await File.WriteAllTextAsync(workflow, workflowYaml);
        var tsp = new TspOptions
        {
            Redis = options.Redis,
            SqlitePath = Path.Combine(Path.GetTempPath(), $"{project}.db"),
            Workflows = [workflow],
            Roles = [.. TspRoles.All],
            Storage = new StorageOptions { FinishedBlobTtl = TimeSpan.FromSeconds(10) },
        };
        if (options.Journal == "postgres")
        {
            tsp.Postgres = await CreatePostgresDatabaseAsync(project);
        }

        configure?.Invoke(tsp);
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Services.AddTspServices(tsp);
        if (options.Telemetry)
        {
            // What every process pays: the Tsp meter aggregated for its Prometheus endpoint.
            builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics.AddMeter(TspMetrics.MeterName, "System.Runtime").AddPrometheusExporter());
        }

        if (options.Traces)
        {
            // Every span made and recorded (as with an OTLP collector and a sample ratio of 1), not exported.
            var listener = new System.Diagnostics.ActivityListener
            {
                ShouldListenTo = source => source.Name == TspTracing.SourceName,
                Sample = (ref System.Diagnostics.ActivityCreationOptions<System.Diagnostics.ActivityContext> _) => System.Diagnostics.ActivitySamplingResult.AllDataAndRecorded,
            };
            System.Diagnostics.ActivitySource.AddActivityListener(listener);
            builder.Services.AddSingleton(listener);
        }

        builder.Services.AddAkka(TspHostingExtensions.SystemName, (akka, _) =>
        {
            akka.ConfigureLoggers(l => l.LogLevel = Akka.Event.LogLevel.WarningLevel);
            akka.AddTsp(tsp);
            if (options.Journal == "inmem")
            {
                // Not durable: only to see what the journal costs (the ceiling without it).
                akka.AddHocon("akka.persistence.journal.plugin = \"akka.persistence.journal.inmem\"\nakka.persistence.snapshot-store.plugin = \"akka.persistence.snapshot-store.inmem\"", HoconAddMode.Prepend);
            }
        });
        var host = builder.Build();
        await host.StartAsync();
        if (tsp.Roles.Contains(TspRoles.Cpu) || tsp.Roles.Contains(TspRoles.Gpu))
        {
            // Otherwise the routees come with worker processes the scenario starts.
            await host.Services.GetRequiredService<NodeQueues>().WaitForRouteesAsync(TimeSpan.FromSeconds(30));
        }

        var system = host.Services.GetRequiredService<ActorSystem>();
        var (subscriber, results) = await ResultSubscriptions.SubscribeAsync(system, project, TimeSpan.FromSeconds(30));
        return new BenchHost(host, project, workflow, subscriber, results, tsp);
    }

    public async ValueTask DisposeAsync()
    {
        _host.Services.GetRequiredService<ActorSystem>().Stop(_subscriber);
        await _host.StopAsync();
        _host.Dispose();
        File.Delete(_workflow);
        // Each repeat has its own journal: leave none behind (a SQLite one is tens of MB).
        foreach (var suffix in new[] { "", "-wal", "-shm" })
        {
            File.Delete(_tsp.SqlitePath + suffix);
        }

        await BenchRedis.DeleteProjectAsync(_tsp.Redis, _project);
        if (_tsp.Postgres is { Length: > 0 } postgres)
        {
            var database = new NpgsqlConnectionStringBuilder(postgres).Database;
            await using var connection = new NpgsqlConnection(PostgresServer + ";Database=postgres");
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand($"DROP DATABASE IF EXISTS {database} WITH (FORCE)", connection);
            await command.ExecuteNonQueryAsync();
        }
    }

    private static string PostgresServer =>
        Environment.GetEnvironmentVariable("TSP_TEST_POSTGRES") is { Length: > 0 } pg ? pg : "Host=127.0.0.1;Port=5432;Username=postgres;Password=postgres";

    private static async Task<string> CreatePostgresDatabaseAsync(string project)
    {
        var name = project.Replace('-', '_');
        await using (var connection = new NpgsqlConnection(PostgresServer + ";Database=postgres"))
        {
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand($"CREATE DATABASE {name}", connection);
            await command.ExecuteNonQueryAsync();
        }

        return $"{PostgresServer};Database={name}";
    }
}
