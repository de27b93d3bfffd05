using Akka.Actor;
using Akka.Configuration;
using Akka.Persistence;
using Akka.Persistence.Snapshot;
using Npgsql;

namespace Tsp.Actors.Storage;

/// <summary>The shared snapshot store, in the same database as <see cref="PostgresJournal"/> (table
/// <c>snapshot</c>, Akka.Persistence.Sql's layout). Snapshots are rare (one per host every
/// <c>RunHost:SnapshotEvery</c> events), so each is a statement of its own on a pooled connection.</summary>
public sealed class PostgresSnapshotStore : SnapshotStore
{
    private const string Criteria = "persistence_id = $1 AND sequence_number <= $2 AND created <= $3 AND sequence_number >= $4 AND created >= $5";

    private readonly string _connectionString;
    private readonly ExtendedActorSystem _system;
    private PostgresJournalStore? _store;

    public PostgresSnapshotStore(Config config)
    {
        _connectionString = PostgresJournalStore.ConnectionStringOf(config, "snapshot store");
        _system = (ExtendedActorSystem)Context.System;
    }

    private PostgresJournalStore Store => _store ?? throw new ObjectDisposedException(nameof(PostgresSnapshotStore), "the snapshot store has stopped");

    protected override void PreStart()
    {
        base.PreStart();
        _store = PostgresJournalStore.Acquire(_connectionString);
    }

    protected override void PostStop()
    {
        _store?.Release();
        _store = null;
        base.PostStop();
    }

    protected override async Task<SelectedSnapshot?> LoadAsync(string persistenceId, SnapshotSelectionCriteria criteria, CancellationToken cancellationToken)
    {
        (long Sequence, long Created, int Serializer, string Manifest, byte[] Payload)? found = null;
        await ExecuteAsync(
            $"SELECT sequence_number, created, serializer_id, manifest, snapshot FROM snapshot WHERE {Criteria} ORDER BY sequence_number DESC LIMIT 1",
            command => AddCriteria(command, persistenceId, criteria),
            async command =>
            {
                await using var reader = await command.ExecuteReaderAsync(cancellationToken);
                if (await reader.ReadAsync(cancellationToken))
                {
                    found = (reader.GetInt64(0), reader.GetInt64(1), reader.IsDBNull(2) ? 0 : reader.GetInt32(2), reader.IsDBNull(3) ? "" : reader.GetString(3), (byte[])reader[4]);
                }
            });
        if (found is not { } row)
        {
            return null;
        }

        var snapshot = _system.Serialization.Deserialize(row.Payload, row.Serializer, row.Manifest);
        return new SelectedSnapshot(new SnapshotMetadata(persistenceId, row.Sequence, new DateTime(row.Created, DateTimeKind.Utc)), snapshot);
    }

    protected override Task SaveAsync(SnapshotMetadata metadata, object snapshot, CancellationToken cancellationToken)
    {
        var payload = JournalSerialization.Serialize(_system, snapshot);
        return ExecuteAsync(
            """
            INSERT INTO snapshot (persistence_id, sequence_number, created, snapshot, manifest, serializer_id) VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (persistence_id, sequence_number) DO UPDATE
            SET created = excluded.created, snapshot = excluded.snapshot, manifest = excluded.manifest, serializer_id = excluded.serializer_id
            """,
            command =>
            {
                command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = metadata.PersistenceId });
                command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = metadata.SequenceNr });
                command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = metadata.Timestamp.Ticks });
                command.Parameters.Add(new NpgsqlParameter<byte[]> { TypedValue = payload.Bytes });
                command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = payload.Manifest });
                command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = payload.SerializerId });
            },
            command => command.ExecuteNonQueryAsync(cancellationToken));
    }

    protected override Task DeleteAsync(SnapshotMetadata metadata, CancellationToken cancellationToken) =>
        ExecuteAsync(
            "DELETE FROM snapshot WHERE persistence_id = $1 AND sequence_number = $2",
            command =>
            {
                command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = metadata.PersistenceId });
                command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = metadata.SequenceNr });
            },
            command => command.ExecuteNonQueryAsync(cancellationToken));

    protected override Task DeleteAsync(string persistenceId, SnapshotSelectionCriteria criteria, CancellationToken cancellationToken) =>
        ExecuteAsync(
            $"DELETE FROM snapshot WHERE {Criteria}",
            command => AddCriteria(command, persistenceId, criteria),
            command => command.ExecuteNonQueryAsync(cancellationToken));

    private static void AddCriteria(NpgsqlCommand command, string persistenceId, SnapshotSelectionCriteria criteria)
    {
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = persistenceId });
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = criteria.MaxSequenceNr });
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = criteria.MaxTimeStamp.Ticks });
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = criteria.MinSequenceNr });
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = (criteria.MinTimestamp ?? DateTime.MinValue).Ticks });
    }

    private async Task ExecuteAsync(string sql, Action<NpgsqlCommand> bind, Func<NpgsqlCommand, Task> run)
    {
        var store = Store;
        await store.EnsureTablesAsync();
        await using var connection = await store.DataSource.OpenConnectionAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        bind(command);
        await run(command);
    }
}
