using Akka.Actor;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;
using Tsp.Actors.Hosting;
using Tsp.Actors.Nodes;

namespace Tsp.Tests.Shared;

/// <summary>
/// The real servers the tests talk to. <c>./test.sh</c> installs and starts them; the endpoints can be
/// moved with TSP_TEST_REDIS and TSP_TEST_POSTGRES. A missing server fails the test, it never skips it.
/// </summary>
public static class TestServers
{
    public static string Redis => Environment.GetEnvironmentVariable("TSP_TEST_REDIS") is { Length: > 0 } redis ? redis : "127.0.0.1:6379";

    /// <summary>A Redis Cluster of three masters (scripts/servers.sh), every endpoint named, as an
    /// operator gives it (<c>--redis host1:port1,host2:port2,…</c>).</summary>
    public static string RedisCluster => Environment.GetEnvironmentVariable("TSP_TEST_REDIS_CLUSTER") is { Length: > 0 } cluster
        ? cluster
        : "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";

    public static string PostgresServer => Environment.GetEnvironmentVariable("TSP_TEST_POSTGRES") is { Length: > 0 } pg
        ? pg
        : "Host=127.0.0.1;Port=5432;Username=postgres;Password=postgres";

    /// <summary>A name unique to one test, for projects and databases (Redis keys and journals never collide).</summary>
    public static string Unique(string prefix) => $"{prefix}-{Guid.NewGuid():N}"[..(prefix.Length + 13)];

    /// <summary>Creates a fresh database (remember-entities rows live in the journal) and returns its connection string.</summary>
    public static async Task<string> CreatePostgresDatabaseAsync()
    {
        var name = Unique("tsp_test").Replace('-', '_');
        await using (var connection = new NpgsqlConnection(PostgresServer + ";Database=postgres"))
        {
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand($"CREATE DATABASE {name}", connection);
            await command.ExecuteNonQueryAsync();
        }

        return $"{PostgresServer};Database={name}";
    }

    public static string TempSqlitePath() => Path.Combine(Path.GetTempPath(), "tsp-tests", Unique("journal") + ".db");

    /// <summary>Reads the project's results log until it holds <paramref name="count"/> results or
    /// <paramref name="timeout"/> has passed; returns what it holds then (the caller asserts on it).</summary>
    public static async Task<IReadOnlyList<Tsp.Actors.Storage.PositionedResult>> WaitForResultsAsync(Tsp.Actors.Storage.RedisStore store, string project, int count, TimeSpan timeout)
    {
        var deadline = global::System.Diagnostics.Stopwatch.StartNew();
        var logged = await store.ReadResultsAsync(project, 0, count + 100);
        while (logged.Count < count && deadline.Elapsed < timeout)
        {
            await Task.Delay(100);
            logged = await store.ReadResultsAsync(project, 0, count + 100);
        }

        return logged;
    }

    public static string WriteWorkflow(string yaml)
    {
        var path = Path.Combine(Path.GetTempPath(), "tsp-tests", Unique("workflow") + ".yaml");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, yaml);
        return path;
    }

    /// <summary>A one-process TSP (every role) on the given options, started.</summary>
    public static async Task<IHost> StartHostAsync(TspOptions options, NodeProcessorRegistry? processors = null)
    {
        if (options.Roles.Count == 0)
        {
            options.Roles = [.. TspRoles.All];
        }

        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Services.AddTspServices(options, processors);
        builder.Services.AddAkka(TspHostingExtensions.SystemName, (akka, _) =>
        {
            akka.ConfigureLoggers(l => l.LogLevel = Akka.Event.LogLevel.WarningLevel);
            akka.AddTsp(options);
        });
        var host = builder.Build();
        await host.StartAsync();
        return host;
    }

    public static ActorSystem System(this IHost host) => host.Services.GetRequiredService<ActorSystem>();
}
