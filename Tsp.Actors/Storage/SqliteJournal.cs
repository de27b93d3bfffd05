using System.Collections.Immutable;
using Akka.Actor;
using Akka.Configuration;
using Akka.Event;
using Akka.Persistence;
using Akka.Persistence.Journal;
using Microsoft.Data.Sqlite;

namespace Tsp.Actors.Storage;

/// <summary>
/// The standalone journal: Akka.Persistence on one SQLite file, written with group commit through
/// the file's <see cref="SqliteWriter"/> — one transaction (one WAL append) for the events of many
/// actors, through one connection and prepared statements. SQLite allows a single writer, so this is
/// the most it can do; Akka.Persistence.Sql (linq2db) built SQL per write and cost a third of the
/// orchestration benchmark's throughput.
/// </summary>
/// <remarks>
/// Tables <c>tsp_journal</c> and <c>tsp_snapshot</c> (see <see cref="SqliteFiles"/>). A delete keeps the
/// highest row of a persistence id, marked deleted, so that its sequence numbers continue; deletes are
/// gathered for <see cref="DeleteEvery"/> and written together. A write
/// that cannot be serialized is rejected alone (<c>OnPersistRejected</c>); a transaction that fails is
/// retried write by write, so one bad write fails only its own actor. Reads (recovery) use their own
/// connection: WAL lets them read beside the writer.
/// </remarks>
public sealed class SqliteJournal : AsyncWriteJournal, IWithTimers
{
    private const string InsertSql = """
        INSERT INTO tsp_journal (persistence_id, sequence_nr, serializer_id, manifest, event_manifest, writer_uuid, payload, deleted)
        VALUES ($id, $seq, $serializer, $manifest, $event_manifest, $writer, $payload, 0)
        """;

    // Delete first, then mark the one row left in the range: the highest row stays (marked deleted)
    // so that the persistence id's sequence numbers go on from it.
    private const string DeleteSql = """
        DELETE FROM tsp_journal WHERE persistence_id = $id AND sequence_nr <= $to
        AND sequence_nr < (SELECT MAX(sequence_nr) FROM tsp_journal WHERE persistence_id = $id)
        """;

    private const string MarkDeletedSql = "UPDATE tsp_journal SET deleted = 1 WHERE persistence_id = $id AND sequence_nr <= $to AND deleted = 0";

    /// <summary>How long a delete waits for others to share its transaction; docs/design.md, "Storage",
    /// has what it saves.</summary>
    public static readonly TimeSpan DeleteEvery = TimeSpan.FromSeconds(3);

    private readonly string _path;
    private readonly ExtendedActorSystem _system;
    // One read at a time on the read connection; waiting reads are queued tasks, not blocked threads
    // (40 actors recovering at once would otherwise starve the thread pool Akka runs on).
    private readonly TaskFactory _reads = new(new ConcurrentExclusiveSchedulerPair().ExclusiveScheduler);
    private readonly Lock _reading = new();
    // Deletes asked for and not yet handed to the writer: per persistence id the highest sequence number.
    private readonly Dictionary<string, long> _deletes = new(StringComparer.Ordinal);
    private TaskCompletionSource? _deleted;
    private SqliteConnection? _reader;
    private SqliteWriter? _writer;
    private Action<SqliteException>? _onCheckpointFailed;

    public SqliteJournal(Config config)
    {
        _path = config.GetString("path") ?? throw new ConfigurationException("tsp sqlite journal needs a path");
        _system = (ExtendedActorSystem)Context.System;
    }

    protected override void PreStart()
    {
        base.PreStart();
        _writer = SqliteWriter.Acquire(_path);
        _onCheckpointFailed = e => _system.Log.Warning("sqlite journal {0}: checkpoint failed ({1}); the WAL grows until one succeeds", _path, e.Message);
        _writer.CheckpointFailed += _onCheckpointFailed;
        _reader = SqliteFiles.Open(_path);
    }

    protected override void PostStop()
    {
        if (_writer is not null)
        {
            // Handed over before the release, which writes what is pending.
            FlushDeletes();
            _writer.CheckpointFailed -= _onCheckpointFailed;
            _writer.Release();
        }

        lock (_reading)
        {
            _reader?.Dispose();
            _reader = null;
        }

        base.PostStop();
    }

    protected override Task<IImmutableList<Exception>> WriteMessagesAsync(IEnumerable<AtomicWrite> messages, CancellationToken cancellationToken)
    {
        var (writes, result) = JournalSerialization.Rows(messages, ToRow);
        var rows = writes.SelectMany(w => w).ToList();
        if (rows.Count == 0)
        {
            return Task.FromResult(result!);
        }

        return _writer!.WriteAsync(context =>
            {
                foreach (var row in rows)
                {
                    context.Execute(InsertSql, row.PersistenceId, row.SequenceNr, row.Payload.SerializerId, row.Payload.Manifest, row.EventManifest, row.WriterUuid, row.Payload.Bytes);
                }
            })
            .ContinueWith(
                t => t.IsCompletedSuccessfully ? (IImmutableList<Exception>)result! : throw t.Exception!.InnerException!,
                CancellationToken.None,
                TaskContinuationOptions.ExecuteSynchronously,
                TaskScheduler.Default);
    }

    /// <summary>Deletes wait up to <see cref="DeleteEvery"/> and go to the writer together, as one
    /// transaction; each completes when that transaction commits. A crash before then loses nothing: the
    /// rows stay until the actor's next delete, which covers them (recovery starts after the snapshot).</summary>
    /// <remarks>Each run host deletes its events after each snapshot, and the table interleaves the rows of
    /// every host in the order they were written: a page holds rows of several hosts, and a delete of one
    /// host's rows rewrites each page it touches. Done one host at a time, a page went to the WAL once per
    /// host on it; together, the deletes of many hosts rewrite it once, or free it.</remarks>
    protected override Task DeleteMessagesToAsync(string persistenceId, long toSequenceNr, CancellationToken cancellationToken)
    {
        ref var to = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(_deletes, persistenceId, out _);
        to = Math.Max(to, toSequenceNr);
        if (_deleted is null)
        {
            _deleted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Timers.StartSingleTimer(DeletesDue.Instance, DeletesDue.Instance, DeleteEvery);
        }

        return _deleted.Task;
    }

    protected override bool ReceivePluginInternal(object message)
    {
        if (message is not DeletesDue)
        {
            return false;
        }

        FlushDeletes();
        return true;
    }

    public ITimerScheduler Timers { get; set; } = null!;

    private void FlushDeletes()
    {
        if (_deleted is null)
        {
            return;
        }

        var deletes = _deletes.ToArray();
        var deleted = _deleted;
        _deletes.Clear();
        _deleted = null;
        _writer!.WriteAsync(context =>
            {
                foreach (var (persistenceId, to) in deletes)
                {
                    context.Execute(DeleteSql, persistenceId, to);
                    context.Execute(MarkDeletedSql, persistenceId, to);
                }
            })
            .ContinueWith(
                t =>
                {
                    if (t.IsCompletedSuccessfully)
                    {
                        deleted.TrySetResult();
                    }
                    else
                    {
                        deleted.TrySetException(t.Exception!.InnerExceptions);
                    }
                },
                CancellationToken.None,
                TaskContinuationOptions.ExecuteSynchronously,
                TaskScheduler.Default);
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

    private JournalRow ToRow(IPersistentRepresentation persistent) =>
        new(persistent.PersistenceId, persistent.SequenceNr, JournalSerialization.Serialize(_system, persistent.Payload), persistent.Manifest ?? "", persistent.WriterGuid ?? "");

    /// <summary>Reads (recovery only) share one connection; SQLite in WAL mode reads beside the writer.</summary>
    private Task<T> ReadAsync<T>(Func<SqliteConnection, T> read) =>
        _reads.StartNew(() =>
        {
            lock (_reading)
            {
                return read(_reader ?? throw new ObjectDisposedException(nameof(SqliteJournal), "the journal has stopped"));
            }
        });

    private sealed class DeletesDue
    {
        public static readonly DeletesDue Instance = new();
    }

    private sealed record JournalRow(string PersistenceId, long SequenceNr, SerializedPayload Payload, string EventManifest, string WriterUuid);
}
