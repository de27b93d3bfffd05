using System.Data;
using System.Threading.Channels;
using Npgsql;
using NpgsqlTypes;

namespace Tsp.Actors.Storage;

/// <summary>One journal row as <see cref="PostgresJournal"/> writes it.</summary>
public sealed record PostgresJournalRow(string PersistenceId, long SequenceNr, SerializedPayload Payload, string WriterUuid);

/// <summary>
/// What this process shares of one PostgreSQL journal database: the connection pool, the tables, and
/// the writer. The writer is one connection and one loop: every insert waiting when it starts a
/// statement goes into that statement (group commit: one <c>INSERT … SELECT FROM unnest(…)</c>, one
/// round trip and one commit for up to 512 writes), so a commit's cost is shared by the writes of many
/// actors, and writes and deletes are applied in the order Akka issued them. One writer, not several
/// side by side: with four, each committing smaller statements, PostgreSQL spent 2.2 times the CPU per
/// run and the orchestration bench ran 1,400 runs/s against 1,951 (docs/design.md, "Storage"). A
/// statement that fails is retried write by write, so only the culprit fails.
/// </summary>
/// <remarks>
/// The tables have Akka.Persistence.Sql's PostgreSQL layout (<c>journal</c>, <c>snapshot</c>), so a
/// database it wrote is read as it stands. Not created: its <c>created</c> and <c>sequence_number</c>
/// indexes, which serve its persistence queries only (TSP runs none) and cost every insert.
/// </remarks>
public sealed class PostgresJournalStore
{
    private const int MaxWritesPerStatement = 512;

    private const string InsertSql = """
        INSERT INTO journal (created, deleted, persistence_id, sequence_number, message, manifest, identifier, writer_uuid)
        SELECT $1, false, * FROM unnest($2::text[], $3::bigint[], $4::bytea[], $5::text[], $6::integer[], $7::text[])
        """;

    // Idempotent; the advisory lock keeps two processes that start together
    // from racing on the catalog (CREATE … IF NOT EXISTS is not safe against a concurrent one).
    private const string CreateTablesSql = """
        SELECT pg_advisory_xact_lock(7305121);
        CREATE TABLE IF NOT EXISTS journal (
          ordering bigint GENERATED ALWAYS AS IDENTITY NOT NULL,
          created bigint NOT NULL,
          deleted boolean NOT NULL,
          persistence_id text NOT NULL,
          sequence_number bigint NOT NULL,
          message bytea NOT NULL,
          manifest text,
          identifier integer,
          writer_uuid text,
          CONSTRAINT "PK_journal" PRIMARY KEY (ordering),
          CONSTRAINT journal_uq UNIQUE (persistence_id, sequence_number));
        CREATE TABLE IF NOT EXISTS snapshot (
          persistence_id text NOT NULL,
          sequence_number bigint NOT NULL,
          created bigint NOT NULL,
          snapshot bytea,
          manifest text,
          serializer_id integer,
          CONSTRAINT "PK_snapshot" PRIMARY KEY (persistence_id, sequence_number));
        """;

    private static readonly Dictionary<string, PostgresJournalStore> Open = new(StringComparer.Ordinal);
    private static readonly Lock OpenGate = new();

    private readonly string _key;
    private readonly Writer _writer;
    private readonly Lock _tablesGate = new();
    private Task? _tables;
    private int _users;

    private PostgresJournalStore(string connectionString)
    {
        _key = connectionString;
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        Where = $"{builder.Host}:{builder.Port}/{builder.Database}";
        DataSource = NpgsqlDataSource.Create(builder);
        _writer = new Writer(this);
    }

    /// <summary>Host, port and database, for messages (never the password).</summary>
    public string Where { get; }

    /// <summary>Pooled connections for reads (recovery) and snapshots.</summary>
    public NpgsqlDataSource DataSource { get; }

    /// <summary>The plugin section's <c>connection-string</c>, which the journal and the snapshot store both need.</summary>
    public static string ConnectionStringOf(Akka.Configuration.Config config, string plugin) =>
        config.GetString("connection-string") is { Length: > 0 } connection
            ? connection
            : throw new Akka.Configuration.ConfigurationException($"tsp postgres {plugin} needs a connection-string");

    /// <summary>The database's store, started by its first user; give it back with <see cref="Release"/>.</summary>
    public static PostgresJournalStore Acquire(string connectionString)
    {
        lock (OpenGate)
        {
            if (!Open.TryGetValue(connectionString, out var store))
            {
                store = new PostgresJournalStore(connectionString);
                Open[connectionString] = store;
            }

            store._users++;
            return store;
        }
    }

    /// <summary>The last user's release writes what is pending and closes the connections.</summary>
    public void Release()
    {
        lock (OpenGate)
        {
            if (--_users > 0)
            {
                return;
            }

            Open.Remove(_key);
        }

        _writer.Complete();
        _writer.Loop.Wait(TimeSpan.FromSeconds(10));
        DataSource.Dispose();
    }

    /// <summary>Creates the tables once per process; a failed attempt (the database away) is tried again
    /// by the next call.</summary>
    public Task EnsureTablesAsync()
    {
        lock (_tablesGate)
        {
            if (_tables is null || _tables.IsFaulted || _tables.IsCanceled)
            {
                _tables = CreateTablesAsync();
            }

            return _tables;
        }
    }

    /// <summary>Inserts the rows together (all or none); completes once committed.</summary>
    public Task InsertAsync(IReadOnlyList<PostgresJournalRow> rows) => _writer.Enqueue(new Write(rows, null));

    /// <summary>Runs <paramref name="work"/> alone on the writer's connection, after the writes queued before it.</summary>
    public Task RunInOrderAsync(Func<NpgsqlConnection, Task> work) => _writer.Enqueue(new Write(null, work));

    private async Task CreateTablesAsync()
    {
        await using var connection = await DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await using (var command = new NpgsqlCommand(CreateTablesSql, connection, transaction))
        {
            await command.ExecuteNonQueryAsync();
        }

        await transaction.CommitAsync();
    }

    private sealed record Write(IReadOnlyList<PostgresJournalRow>? Rows, Func<NpgsqlConnection, Task>? Work)
    {
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private sealed class Writer
    {
        private readonly PostgresJournalStore _store;
        private readonly Channel<Write> _pending = Channel.CreateUnbounded<Write>(new UnboundedChannelOptions { SingleReader = true });
        private NpgsqlConnection? _connection;
        private NpgsqlCommand? _insert;

        public Writer(PostgresJournalStore store)
        {
            _store = store;
            Loop = Task.Run(RunAsync);
        }

        public Task Loop { get; }

        public Task Enqueue(Write item)
        {
            if (!_pending.Writer.TryWrite(item))
            {
                throw new ObjectDisposedException(nameof(PostgresJournalStore), $"the journal of {_store.Where} is closed");
            }

            return item.Done.Task;
        }

        public void Complete() => _pending.Writer.TryComplete();

        private async Task RunAsync()
        {
            var batch = new List<Write>();
            while (await _pending.Reader.WaitToReadAsync())
            {
                batch.Clear();
                if (_pending.Reader.TryPeek(out var first) && first.Work is not null)
                {
                    _pending.Reader.TryRead(out _);
                    await CompleteAsync([first], RunWorkAsync);
                    continue;
                }

                while (batch.Count < MaxWritesPerStatement && _pending.Reader.TryPeek(out var next) && next.Rows is not null)
                {
                    _pending.Reader.TryRead(out _);
                    batch.Add(next);
                }

                await CompleteAsync(batch, InsertAsync);
            }

            await CloseAsync();
        }

        /// <summary>Runs the items as one statement; if that fails with several, each alone, so only the culprit fails.</summary>
        private static async Task CompleteAsync(List<Write> items, Func<List<Write>, Task> run)
        {
            try
            {
                await run(items);
                items.ForEach(i => i.Done.TrySetResult());
            }
            catch (Exception) when (items.Count > 1)
            {
                foreach (var item in items)
                {
                    try
                    {
                        await run([item]);
                        item.Done.TrySetResult();
                    }
                    catch (Exception e)
                    {
                        item.Done.TrySetException(e);
                    }
                }
            }
            catch (Exception e)
            {
                items[0].Done.TrySetException(e);
            }
        }

        private async Task InsertAsync(List<Write> items)
        {
            var rows = items.Sum(i => i.Rows!.Count);
            var (ids, sequences, messages, manifests, identifiers, writers) =
                (new string[rows], new long[rows], new byte[rows][], new string[rows], new int[rows], new string[rows]);
            var r = 0;
            foreach (var item in items)
            {
                foreach (var row in item.Rows!)
                {
                    (ids[r], sequences[r], messages[r], manifests[r], identifiers[r], writers[r]) =
                        (row.PersistenceId, row.SequenceNr, row.Payload.Bytes, row.Payload.Manifest, row.Payload.SerializerId, row.WriterUuid);
                    r++;
                }
            }

            var insert = await InsertCommandAsync();
            insert.Parameters[0].Value = DateTime.UtcNow.Ticks;
            (insert.Parameters[1].Value, insert.Parameters[2].Value, insert.Parameters[3].Value) = (ids, sequences, messages);
            (insert.Parameters[4].Value, insert.Parameters[5].Value, insert.Parameters[6].Value) = (manifests, identifiers, writers);
            await RunAsync(() => insert.ExecuteNonQueryAsync());
        }

        private async Task RunWorkAsync(List<Write> items)
        {
            await InsertCommandAsync();
            await RunAsync(() => items[0].Work!(_connection!));
        }

        /// <summary>A connection that broke is dropped, so the next statement opens a new one.</summary>
        private async Task RunAsync(Func<Task> statement)
        {
            try
            {
                await statement();
            }
            catch (Exception) when (_connection is not { State: ConnectionState.Open } || _connection.FullState.HasFlag(ConnectionState.Broken))
            {
                await CloseAsync();
                throw;
            }
        }

        /// <summary>The writer's connection (opened, and the tables made, on first use) with its prepared insert.</summary>
        private async Task<NpgsqlCommand> InsertCommandAsync()
        {
            if (_insert is { } ready)
            {
                return ready;
            }

            await _store.EnsureTablesAsync();
            var connection = await _store.DataSource.OpenConnectionAsync();
            try
            {
                var insert = new NpgsqlCommand(InsertSql, connection);
                insert.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Bigint });
                insert.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
                insert.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bigint });
                insert.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bytea });
                insert.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
                insert.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Integer });
                insert.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
                await insert.PrepareAsync();
                (_connection, _insert) = (connection, insert);
                return insert;
            }
            catch
            {
                await connection.DisposeAsync();
                throw;
            }
        }

        private async Task CloseAsync()
        {
            if (_insert is not null)
            {
                await _insert.DisposeAsync();
            }

            if (_connection is not null)
            {
                await _connection.DisposeAsync();
            }

            (_connection, _insert) = (null, null);
        }
    }
}
