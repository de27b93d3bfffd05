using System.Collections.Immutable;
using Akka.Actor;
using Akka.Configuration;
using Akka.Persistence;
using Akka.Persistence.Journal;
using Npgsql;

namespace Tsp.Actors.Storage;

/// <summary>
/// The shared journal (several orchestrators): Akka.Persistence on PostgreSQL, written with group
/// commit through the database's <see cref="PostgresJournalStore"/> — one statement and one commit for
/// the events of many actors. Akka.Persistence.Sql (linq2db) spent a sixth of the orchestration
/// benchmark's CPU building and sending its inserts.
/// </summary>
/// <remarks>
/// A delete keeps the highest row of a persistence id, marked deleted, so that its sequence numbers
/// continue. A write that cannot be serialized is rejected alone (<c>OnPersistRejected</c>).
/// </remarks>
public sealed class PostgresJournal : AsyncWriteJournal
{
    // Delete first, then mark the one row left in the range: the highest row stays (marked deleted)
    // so that the persistence id's sequence numbers go on from it.
    private const string DeleteSql = """
        DELETE FROM journal WHERE persistence_id = $1 AND sequence_number <= $2
        AND sequence_number < (SELECT MAX(sequence_number) FROM journal WHERE persistence_id = $1)
        """;

    private const string MarkDeletedSql = "UPDATE journal SET deleted = true WHERE persistence_id = $1 AND sequence_number <= $2 AND NOT deleted";

    private readonly string _connectionString;
    private readonly ExtendedActorSystem _system;
    private PostgresJournalStore? _store;

    public PostgresJournal(Config config)
    {
        _connectionString = PostgresJournalStore.ConnectionStringOf(config, "journal");
        _system = (ExtendedActorSystem)Context.System;
    }

    private PostgresJournalStore Store => _store ?? throw new ObjectDisposedException(nameof(PostgresJournal), "the journal has stopped");

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

    protected override Task<IImmutableList<Exception>> WriteMessagesAsync(IEnumerable<AtomicWrite> messages, CancellationToken cancellationToken)
    {
        var (writes, rejections) = JournalSerialization.Rows(messages, p =>
            new PostgresJournalRow(p.PersistenceId, p.SequenceNr, JournalSerialization.Serialize(_system, p.Payload), p.WriterGuid ?? ""));
        var rows = writes.SelectMany(w => w).ToList();
        if (rows.Count == 0)
        {
            return Task.FromResult(rejections!);
        }

        return Store.InsertAsync(rows).ContinueWith(
            t => t.IsCompletedSuccessfully ? rejections! : throw t.Exception!.InnerException!,
            CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
    }

    protected override Task DeleteMessagesToAsync(string persistenceId, long toSequenceNr, CancellationToken cancellationToken) =>
        Store.RunInOrderAsync(async connection =>
        {
            // One batch is one implicit transaction: both statements or neither.
            await using var batch = new NpgsqlBatch(connection);
            foreach (var sql in new[] { DeleteSql, MarkDeletedSql })
            {
                var command = new NpgsqlBatchCommand(sql);
                command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = persistenceId });
                command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = toSequenceNr });
                batch.BatchCommands.Add(command);
            }

            await batch.ExecuteNonQueryAsync(cancellationToken);
        });

    public override async Task ReplayMessagesAsync(IActorContext context, string persistenceId, long fromSequenceNr, long toSequenceNr, long max, Action<IPersistentRepresentation> recoveryCallback)
    {
        if (max <= 0 || toSequenceNr < fromSequenceNr)
        {
            return;
        }

        var store = Store;
        await store.EnsureTablesAsync();
        var rows = new List<(long Sequence, int Serializer, string Manifest, string Writer, byte[] Payload)>();
        await using (var connection = await store.DataSource.OpenConnectionAsync())
        await using (var command = new NpgsqlCommand(
            """
            SELECT sequence_number, identifier, manifest, writer_uuid, message FROM journal
            WHERE persistence_id = $1 AND sequence_number >= $2 AND sequence_number <= $3 AND NOT deleted
            ORDER BY sequence_number LIMIT $4
            """, connection))
        {
            command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = persistenceId });
            command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = fromSequenceNr });
            command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = toSequenceNr });
            command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = max });
            await using var reader = await command.ExecuteReaderAsync();
            while (await reader.ReadAsync())
            {
                rows.Add((reader.GetInt64(0), reader.IsDBNull(1) ? 0 : reader.GetInt32(1), reader.IsDBNull(2) ? "" : reader.GetString(2), reader.IsDBNull(3) ? "" : reader.GetString(3), (byte[])reader[4]));
            }
        }

        foreach (var row in rows)
        {
            var payload = _system.Serialization.Deserialize(row.Payload, row.Serializer, row.Manifest);
            recoveryCallback(new Persistent(payload, row.Sequence, persistenceId, "", false, ActorRefs.NoSender, row.Writer));
        }
    }

    public override async Task<long> ReadHighestSequenceNrAsync(string persistenceId, long fromSequenceNr, CancellationToken cancellationToken)
    {
        var store = Store;
        await store.EnsureTablesAsync();
        await using var connection = await store.DataSource.OpenConnectionAsync(cancellationToken);
        await using var command = new NpgsqlCommand("SELECT COALESCE(MAX(sequence_number), 0) FROM journal WHERE persistence_id = $1", connection);
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = persistenceId });
        return Convert.ToInt64(await command.ExecuteScalarAsync(cancellationToken), System.Globalization.CultureInfo.InvariantCulture);
    }
}
