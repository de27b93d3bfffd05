using Akka.Actor;
using Akka.Configuration;
using Akka.Persistence;
using Akka.Persistence.Snapshot;
using Microsoft.Data.Sqlite;

namespace Tsp.Actors.Storage;

/// <summary>The standalone snapshot store, on the same SQLite file as <see cref="SqliteJournal"/>:
/// writes go through the file's <see cref="SqliteWriter"/>, loads through a connection of its own.</summary>
public sealed class SqliteSnapshotStore : SnapshotStore
{
    private readonly string _path;
    private readonly ExtendedActorSystem _system;
    // One load at a time; waiting loads are queued tasks, not blocked threads (see SqliteJournal).
    private readonly TaskFactory _loads = new(new ConcurrentExclusiveSchedulerPair().ExclusiveScheduler);
    private readonly Lock _gate = new();
    private SqliteConnection? _connection;
    private SqliteWriter? _writer;

    public SqliteSnapshotStore(Config config)
    {
        _path = config.GetString("path") ?? throw new ConfigurationException("tsp sqlite snapshot store needs a path");
        _system = (ExtendedActorSystem)Context.System;
    }

    protected override void PreStart()
    {
        base.PreStart();
        _writer = SqliteWriter.Acquire(_path);
        _connection = SqliteFiles.Open(_path);
    }

    protected override void PostStop()
    {
        _writer?.Release();
        lock (_gate)
        {
            _connection?.Dispose();
            _connection = null;
        }

        base.PostStop();
    }

    protected override async Task<SelectedSnapshot?> LoadAsync(string persistenceId, SnapshotSelectionCriteria criteria, CancellationToken cancellationToken)
    {
        var found = await UseAsync(connection =>
        {
            using var command = Command(connection, """
                SELECT sequence_nr, created, serializer_id, manifest, payload FROM tsp_snapshot
                WHERE persistence_id = $id AND sequence_nr <= $max_seq AND created <= $max_time AND sequence_nr >= $min_seq AND created >= $min_time
                ORDER BY sequence_nr DESC LIMIT 1
                """, persistenceId, criteria);
            using var reader = command.ExecuteReader();
            return reader.Read() ? (reader.GetInt64(0), reader.GetInt64(1), reader.GetInt32(2), reader.GetString(3), (byte[])reader[4]) : default((long, long, int, string, byte[])?);
        });
        if (found is not { } row)
        {
            return null;
        }

        var snapshot = _system.Serialization.Deserialize(row.Item5, row.Item3, row.Item4);
        return new SelectedSnapshot(new SnapshotMetadata(persistenceId, row.Item1, new DateTime(row.Item2, DateTimeKind.Utc)), snapshot);
    }

    protected override Task SaveAsync(SnapshotMetadata metadata, object snapshot, CancellationToken cancellationToken)
    {
        var payload = JournalSerialization.Serialize(_system, snapshot);
        return _writer!.WriteAsync(context => context.Execute(
            """
            INSERT OR REPLACE INTO tsp_snapshot (persistence_id, sequence_nr, created, serializer_id, manifest, payload)
            VALUES ($id, $seq, $created, $serializer, $manifest, $payload)
            """,
            metadata.PersistenceId, metadata.SequenceNr, metadata.Timestamp.Ticks, payload.SerializerId, payload.Manifest, payload.Bytes));
    }

    protected override Task DeleteAsync(SnapshotMetadata metadata, CancellationToken cancellationToken) =>
        _writer!.WriteAsync(context => context.Execute(
            "DELETE FROM tsp_snapshot WHERE persistence_id = $id AND sequence_nr = $seq",
            metadata.PersistenceId, metadata.SequenceNr));

    protected override Task DeleteAsync(string persistenceId, SnapshotSelectionCriteria criteria, CancellationToken cancellationToken) =>
        _writer!.WriteAsync(context => context.Execute(
            """
            DELETE FROM tsp_snapshot
            WHERE persistence_id = $id AND sequence_nr <= $max_seq AND created <= $max_time AND sequence_nr >= $min_seq AND created >= $min_time
            """,
            persistenceId, criteria.MaxSequenceNr, criteria.MaxTimeStamp.Ticks, criteria.MinSequenceNr, (criteria.MinTimestamp ?? DateTime.MinValue).Ticks));

    private static SqliteCommand Command(SqliteConnection connection, string sql, string persistenceId, SnapshotSelectionCriteria criteria)
    {
        var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Parameters.AddWithValue("$id", persistenceId);
        command.Parameters.AddWithValue("$max_seq", criteria.MaxSequenceNr);
        command.Parameters.AddWithValue("$max_time", criteria.MaxTimeStamp.Ticks);
        command.Parameters.AddWithValue("$min_seq", criteria.MinSequenceNr);
        command.Parameters.AddWithValue("$min_time", (criteria.MinTimestamp ?? DateTime.MinValue).Ticks);
        return command;
    }

    private Task<T> UseAsync<T>(Func<SqliteConnection, T> use) =>
        _loads.StartNew(() =>
        {
            lock (_gate)
            {
                return use(_connection ?? throw new ObjectDisposedException(nameof(SqliteSnapshotStore), "the snapshot store has stopped"));
            }
        });
}

/// <summary>Opens the standalone journal's SQLite file, tuned and with its tables.</summary>
public static class SqliteFiles
{
    /// <summary>The page size of a new file. A commit writes each page it dirtied whole into the WAL, and
    /// the journal's commits dirty one primary-key leaf per actor they touch: 1 KiB pages halve what a
    /// run writes to disk and what each checkpoint copies (docs/design.md, "Storage"). Journal rows are
    /// ~140 B (at most ~630), so they still fit a page.</summary>
    public const int PageSize = 1024;

    /// <summary>
    /// WAL (readers never block the writer), synchronous=NORMAL (no fsync per commit: a process
    /// crash loses nothing, a power loss may lose the last transactions), and a busy timeout inside
    /// SQLite (Microsoft.Data.Sqlite's own retry sleeps 150 ms per try). A new file gets
    /// <see cref="PageSize"/>; a file that exists keeps the page size it was made with.
    /// </summary>
    public static SqliteConnection Open(string path)
    {
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = full, Pooling = false }.ToString());
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"""
            PRAGMA page_size = {PageSize};
            PRAGMA journal_mode = WAL;
            PRAGMA synchronous = NORMAL;
            PRAGMA busy_timeout = 10000;
            CREATE TABLE IF NOT EXISTS tsp_journal (
              persistence_id TEXT NOT NULL, sequence_nr INTEGER NOT NULL, serializer_id INTEGER NOT NULL,
              manifest TEXT NOT NULL, event_manifest TEXT NOT NULL, writer_uuid TEXT NOT NULL,
              payload BLOB NOT NULL, deleted INTEGER NOT NULL,
              PRIMARY KEY (persistence_id, sequence_nr));
            CREATE TABLE IF NOT EXISTS tsp_snapshot (
              persistence_id TEXT NOT NULL, sequence_nr INTEGER NOT NULL, created INTEGER NOT NULL,
              serializer_id INTEGER NOT NULL, manifest TEXT NOT NULL, payload BLOB NOT NULL,
              PRIMARY KEY (persistence_id, sequence_nr));
            """;
        command.ExecuteNonQuery();
        return connection;
    }
}
