using System.Collections.Immutable;
using System.Threading.Channels;
using Akka.Actor;
using Akka.Configuration;
using Akka.Event;
using Akka.Persistence;
using Akka.Persistence.Journal;
using Microsoft.Data.Sqlite;

namespace Tsp.Actors.Storage;

/// <summary>
/// The standalone journal: Akka.Persistence on one SQLite file, written with group commit. Every
/// write request that arrives while the previous transaction runs is written in the next one —
/// one transaction (one WAL append) for the events of many actors, through one connection and one
/// prepared statement. SQLite allows a single writer, so this is the most it can do; Akka.Persistence.Sql
/// (linq2db) built SQL per write and cost a third of the orchestration benchmark's throughput.
/// </summary>
/// <remarks>
/// Tables <c>tsp_journal</c> and <c>tsp_snapshot</c> (see <see cref="SqliteFiles"/>). A delete keeps the
/// highest row of a persistence id, marked deleted, so that its sequence numbers continue. A write
/// that cannot be serialized is rejected alone; a transaction that fails is retried request by
/// request, so one bad request fails only its own actor.
/// </remarks>
public sealed class SqliteJournal : AsyncWriteJournal
{
    private const int MaxRequestsPerTransaction = 512;

    private readonly string _path;
    private readonly ExtendedActorSystem _system;
    private readonly Channel<PendingWrite> _pending = Channel.CreateUnbounded<PendingWrite>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Lock _reading = new();
    private SqliteConnection? _reader;
    private Task? _writer;
    private Task? _checkpoints;

    public SqliteJournal(Config config)
    {
        _path = config.GetString("path") ?? throw new ConfigurationException("tsp sqlite journal needs a path");
        _system = (ExtendedActorSystem)Context.System;
    }

    protected override void PreStart()
    {
        base.PreStart();
        var writer = SqliteFiles.Open(_path);
        // The WAL is copied back into the database by a passive checkpoint on the reading connection
        // every second, not by the commit that crosses SQLite's threshold: that commit would stall
        // every write waiting behind it.
        using (var command = writer.CreateCommand())
        {
            command.CommandText = "PRAGMA wal_autocheckpoint = 0;";
            command.ExecuteNonQuery();
        }

        _reader = SqliteFiles.Open(_path);
        _writer = Task.Factory.StartNew(() => WriteLoop(writer), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        _checkpoints = CheckpointWhileWritingAsync(_writer);
    }

    protected override void PostStop()
    {
        _pending.Writer.TryComplete();
        _writer?.Wait(TimeSpan.FromSeconds(10));
        _checkpoints?.Wait(TimeSpan.FromSeconds(10));
        lock (_reading)
        {
            _reader?.Dispose();
            _reader = null;
        }

        base.PostStop();
    }

    protected override Task<IImmutableList<Exception>> WriteMessagesAsync(IEnumerable<AtomicWrite> messages, CancellationToken cancellationToken)
    {
        var rows = new List<JournalRow>();
        var rejections = ImmutableList.CreateBuilder<Exception>();
        var anyRejected = false;
        foreach (var write in messages)
        {
            try
            {
                rows.AddRange(((IImmutableList<IPersistentRepresentation>)write.Payload).Select(ToRow));
                rejections.Add(null!);
            }
            catch (Exception e)
            {
                rejections.Add(e);
                anyRejected = true;
            }
        }

        var result = anyRejected ? rejections.ToImmutable() : null;
        if (rows.Count == 0)
        {
            return Task.FromResult<IImmutableList<Exception>>(result!);
        }

        var pending = new PendingWrite(rows, null);
        _pending.Writer.TryWrite(pending);
        return pending.Done.Task.ContinueWith(
            t => t.IsCompletedSuccessfully ? (IImmutableList<Exception>)result! : throw t.Exception!.InnerException!,
            CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
    }

    protected override Task DeleteMessagesToAsync(string persistenceId, long toSequenceNr, CancellationToken cancellationToken)
    {
        var pending = new PendingWrite([], new JournalDelete(persistenceId, toSequenceNr));
        _pending.Writer.TryWrite(pending);
        return pending.Done.Task;
    }

    public override async Task ReplayMessagesAsync(IActorContext context, string persistenceId, long fromSequenceNr, long toSequenceNr, long max, Action<IPersistentRepresentation> recoveryCallback)
    {
        if (max <= 0 || toSequenceNr < fromSequenceNr)
        {
            return;
        }

        var rows = await ReadAsync(connection =>
        {
            using var command = connection.CreateCommand();
            command.CommandText = """
                SELECT sequence_nr, serializer_id, manifest, event_manifest, writer_uuid, payload FROM tsp_journal
                WHERE persistence_id = $id AND sequence_nr >= $from AND sequence_nr <= $to AND deleted = 0
                ORDER BY sequence_nr LIMIT $max
                """;
            command.Parameters.AddWithValue("$id", persistenceId);
            command.Parameters.AddWithValue("$from", fromSequenceNr);
            command.Parameters.AddWithValue("$to", toSequenceNr);
            command.Parameters.AddWithValue("$max", max);
            using var reader = command.ExecuteReader();
            var found = new List<(long Sequence, int Serializer, string Manifest, string EventManifest, string Writer, byte[] Payload)>();
            while (reader.Read())
            {
                found.Add((reader.GetInt64(0), reader.GetInt32(1), reader.GetString(2), reader.GetString(3), reader.GetString(4), (byte[])reader[5]));
            }

            return found;
        });
        foreach (var row in rows)
        {
            var payload = _system.Serialization.Deserialize(row.Payload, row.Serializer, row.Manifest);
            recoveryCallback(new Persistent(payload, row.Sequence, persistenceId, row.EventManifest, false, ActorRefs.NoSender, row.Writer));
        }
    }

    public override Task<long> ReadHighestSequenceNrAsync(string persistenceId, long fromSequenceNr, CancellationToken cancellationToken) =>
        ReadAsync(connection =>
        {
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT COALESCE(MAX(sequence_nr), 0) FROM tsp_journal WHERE persistence_id = $id";
            command.Parameters.AddWithValue("$id", persistenceId);
            return Convert.ToInt64(command.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
        });

    /// <summary>Serialized on the journal actor's thread: actor references need the system's transport information.</summary>
    private JournalRow ToRow(IPersistentRepresentation persistent)
    {
        var serializer = _system.Serialization.FindSerializerFor(persistent.Payload);
        var bytes = Akka.Serialization.Serialization.WithTransport<byte[]>(_system, () => serializer.ToBinary(persistent.Payload));
        var manifest = Akka.Serialization.Serialization.ManifestFor(serializer, persistent.Payload);
        return new JournalRow(persistent.PersistenceId, persistent.SequenceNr, serializer.Identifier, manifest, persistent.Manifest ?? "", persistent.WriterGuid ?? "", bytes);
    }

    /// <summary>Every second while the writer runs, and once when it has stopped.</summary>
    private async Task CheckpointWhileWritingAsync(Task writer)
    {
        while (!writer.IsCompleted)
        {
            await Task.WhenAny(writer, Task.Delay(TimeSpan.FromSeconds(1)));
            await Task.Run(Checkpoint);
        }
    }

    private void Checkpoint()
    {
        try
        {
            lock (_reading)
            {
                if (_reader is null)
                {
                    return;
                }

                using var command = _reader.CreateCommand();
                command.CommandText = "PRAGMA wal_checkpoint(PASSIVE);";
                command.ExecuteNonQuery();
            }
        }
        catch (SqliteException e)
        {
            _system.Log.Warning("sqlite journal {0}: checkpoint failed ({1}); the WAL grows until one succeeds", _path, e.Message);
        }
    }

    /// <summary>Reads (recovery only) share one connection; SQLite in WAL mode reads beside the writer.</summary>
    private Task<T> ReadAsync<T>(Func<SqliteConnection, T> read) =>
        Task.Run(() =>
        {
            lock (_reading)
            {
                return read(_reader!);
            }
        });

    /// <summary>One thread owns the write connection: it takes every request waiting and writes them in one transaction.</summary>
    private void WriteLoop(SqliteConnection connection)
    {
        using (connection)
        using (var statements = new JournalStatements(connection))
        {
            var batch = new List<PendingWrite>();
            while (_pending.Reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
            {
                batch.Clear();
                while (batch.Count < MaxRequestsPerTransaction && _pending.Reader.TryRead(out var next))
                {
                    batch.Add(next);
                }

                try
                {
                    statements.Execute(batch);
                    batch.ForEach(p => p.Done.TrySetResult());
                }
                catch (Exception) when (batch.Count > 1)
                {
                    // Find the culprit: each request alone, so the others still succeed.
                    foreach (var request in batch)
                    {
                        try
                        {
                            statements.Execute([request]);
                            request.Done.TrySetResult();
                        }
                        catch (Exception e)
                        {
                            request.Done.TrySetException(e);
                        }
                    }
                }
                catch (Exception e)
                {
                    batch[0].Done.TrySetException(e);
                }
            }
        }
    }

    private sealed record JournalRow(string PersistenceId, long SequenceNr, int SerializerId, string Manifest, string EventManifest, string WriterUuid, byte[] Payload);

    private sealed record JournalDelete(string PersistenceId, long ToSequenceNr);

    private sealed record PendingWrite(List<JournalRow> Rows, JournalDelete? Delete)
    {
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>The write connection's prepared statements.</summary>
    private sealed class JournalStatements : IDisposable
    {
        private readonly SqliteConnection _connection;
        private readonly SqliteCommand _insert;
        private readonly SqliteCommand _markDeleted;
        private readonly SqliteCommand _delete;

        public JournalStatements(SqliteConnection connection)
        {
            _connection = connection;
            _insert = Prepare("""
                INSERT INTO tsp_journal (persistence_id, sequence_nr, serializer_id, manifest, event_manifest, writer_uuid, payload, deleted)
                VALUES ($id, $seq, $serializer, $manifest, $event_manifest, $writer, $payload, 0)
                """, "$id", "$seq", "$serializer", "$manifest", "$event_manifest", "$writer", "$payload");
            _markDeleted = Prepare("UPDATE tsp_journal SET deleted = 1 WHERE persistence_id = $id AND sequence_nr <= $to AND deleted = 0", "$id", "$to");
            // The highest row stays (marked deleted): the persistence id's sequence numbers go on from it.
            _delete = Prepare("""
                DELETE FROM tsp_journal WHERE persistence_id = $id AND sequence_nr <= $to
                AND sequence_nr < (SELECT MAX(sequence_nr) FROM tsp_journal WHERE persistence_id = $id)
                """, "$id", "$to");
        }

        public void Execute(List<PendingWrite> batch)
        {
            using var transaction = _connection.BeginTransaction();
            foreach (var request in batch)
            {
                foreach (var row in request.Rows)
                {
                    _insert.Transaction = transaction;
                    Set(_insert, row.PersistenceId, row.SequenceNr, row.SerializerId, row.Manifest, row.EventManifest, row.WriterUuid, row.Payload);
                    _insert.ExecuteNonQuery();
                }

                if (request.Delete is { } delete)
                {
                    // Delete first: the update then marks at most the one row left in the range.
                    foreach (var command in new[] { _delete, _markDeleted })
                    {
                        command.Transaction = transaction;
                        Set(command, delete.PersistenceId, delete.ToSequenceNr);
                        command.ExecuteNonQuery();
                    }
                }
            }

            transaction.Commit();
        }

        public void Dispose()
        {
            _insert.Dispose();
            _markDeleted.Dispose();
            _delete.Dispose();
        }

        private static void Set(SqliteCommand command, params object[] values)
        {
            for (var i = 0; i < values.Length; i++)
            {
                command.Parameters[i].Value = values[i];
            }
        }

        private SqliteCommand Prepare(string sql, params string[] parameters)
        {
            var command = _connection.CreateCommand();
            command.CommandText = sql;
            foreach (var name in parameters)
            {
                command.Parameters.Add(new SqliteParameter { ParameterName = name });
            }

            return command;
        }
    }
}
