using Akka.Hosting;
using Tsp.Actors.Storage;

namespace Tsp.Actors.Hosting;

/// <summary>The journal: PostgreSQL when configured, else SQLite, each TSP's own group-commit plugins; and its start-up check.</summary>
public static partial class TspHostingExtensions
{
    /// <summary>TSP's journal and snapshot store on PostgreSQL when configured (required by several
    /// orchestrators), else on a SQLite file. Both write with group commit: one transaction for the
    /// events of many actors (Storage/PostgresJournal, Storage/SqliteJournal).</summary>
    public static AkkaConfigurationBuilder AddTspJournal(this AkkaConfigurationBuilder builder, TspOptions options) =>
        builder.AddHocon(
            string.IsNullOrWhiteSpace(options.Postgres) ? SqliteJournalHocon(options.SqlitePath) : PostgresJournalHocon(options.Postgres),
            HoconAddMode.Prepend);

    /// <summary>Akka.Persistence configured for <see cref="PostgresJournal"/> and <see cref="PostgresSnapshotStore"/>.</summary>
    /// <remarks>After an outage the breakers try again every 2 s, not every 30 s (Akka's default): a run
    /// host whose recovery meets an open breaker stops and is restarted, so each open period is paid again.</remarks>
    public static string PostgresJournalHocon(string connectionString)
    {
        var connection = System.Text.Json.JsonSerializer.Serialize(connectionString);
        return $$"""
            akka.persistence.journal.plugin = "tsp.persistence.postgres-journal"
            akka.persistence.snapshot-store.plugin = "tsp.persistence.postgres-snapshots"
            tsp.persistence.postgres-journal {
              class = "{{typeof(PostgresJournal).FullName}}, {{typeof(PostgresJournal).Assembly.GetName().Name}}"
              plugin-dispatcher = "akka.actor.default-dispatcher"
              connection-string = {{connection}}
              circuit-breaker.reset-timeout = 2s
            }
            tsp.persistence.postgres-snapshots {
              class = "{{typeof(PostgresSnapshotStore).FullName}}, {{typeof(PostgresSnapshotStore).Assembly.GetName().Name}}"
              plugin-dispatcher = "akka.actor.default-dispatcher"
              connection-string = {{connection}}
              circuit-breaker.reset-timeout = 2s
            }
            """;
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
    /// <summary>Whether the PostgreSQL journal answers <c>SELECT 1</c> within <paramref name="timeout"/>;
    /// the SQLite journal is a local file and always does.</summary>
    /// <returns>Null when it answers, else what went wrong, with the server's address.</returns>
    public static async Task<string?> PingJournalAsync(TspOptions options, TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (string.IsNullOrWhiteSpace(options.Postgres))
        {
            return null;
        }

        var settings = new Npgsql.NpgsqlConnectionStringBuilder(options.Postgres) { Timeout = Math.Max(1, (int)timeout.TotalSeconds) };
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        try
        {
            await using var connection = new Npgsql.NpgsqlConnection(settings.ConnectionString);
            await connection.OpenAsync(deadline.Token);
            await using var command = new Npgsql.NpgsqlCommand("SELECT 1", connection);
            await command.ExecuteScalarAsync(deadline.Token);
            return null;
        }
        catch (Exception e) when (e is Npgsql.NpgsqlException or System.Net.Sockets.SocketException or TimeoutException or OperationCanceledException)
        {
            return $"PostgreSQL at {settings.Host}:{settings.Port}/{settings.Database} does not answer: {(e is OperationCanceledException ? $"no answer within {timeout.TotalSeconds:0} s" : e.Message)}";
        }
    }

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
}
