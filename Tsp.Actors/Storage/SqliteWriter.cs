using System.Threading.Channels;
using Microsoft.Data.Sqlite;

namespace Tsp.Actors.Storage;

/// <summary>
/// The one writer of a SQLite file in this process, shared by <see cref="SqliteJournal"/> and
/// <see cref="SqliteSnapshotStore"/>. SQLite allows a single writer at a time; two connections
/// writing only wait on each other's lock. Here one thread owns one connection, and every write
/// waiting when a transaction starts goes into it (group commit, at most 512). A transaction that
/// fails is retried write by write, so only the culprit fails. The WAL is checkpointed (passively,
/// every second) on a connection of its own, so no commit stalls behind a checkpoint.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA1001", Justification = "Its event never makes an OS handle (nothing asks for its WaitHandle): a write racing the last Release may still set it.")]
public sealed class SqliteWriter
{
    private const int MaxWritesPerTransaction = 512;
    private static readonly Dictionary<string, SqliteWriter> Open = new(StringComparer.Ordinal);
    private static readonly Lock OpenGate = new();

    private readonly string _path;
    private readonly Channel<Write> _pending = Channel.CreateUnbounded<Write>(new UnboundedChannelOptions { SingleReader = true });
    // Wakes the write loop. Not the channel's own wait: blocking on it spins (sched_yield) before
    // sleeping, each time the loop runs dry, which cost a few per cent of a 2-core machine under load.
    private readonly ManualResetEventSlim _written = new(false, spinCount: 0);
    private readonly Task _writing;
    private readonly Task _checkpointing;
    private int _users;

    private SqliteWriter(string path)
    {
        _path = path;
        var connection = SqliteFiles.Open(path);
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "PRAGMA wal_autocheckpoint = 0;";
            command.ExecuteNonQuery();
        }

        _writing = Task.Factory.StartNew(() => WriteLoop(connection), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        _checkpointing = CheckpointWhileWritingAsync();
    }

    /// <summary>Called when a checkpoint fails (the WAL then grows until one succeeds).</summary>
    public event Action<SqliteException>? CheckpointFailed;

    /// <summary>The file's writer, started by its first user; give it back with <see cref="Release"/>.</summary>
    public static SqliteWriter Acquire(string path)
    {
        var full = Path.GetFullPath(path);
        lock (OpenGate)
        {
            if (!Open.TryGetValue(full, out var writer))
            {
                writer = new SqliteWriter(full);
                Open[full] = writer;
            }

            writer._users++;
            return writer;
        }
    }

    /// <summary>The last user's release writes what is pending, checkpoints and closes the file.</summary>
    public void Release()
    {
        lock (OpenGate)
        {
            if (--_users > 0)
            {
                return;
            }

            Open.Remove(_path);
        }

        _pending.Writer.TryComplete();
        _written.Set();
        _writing.Wait(TimeSpan.FromSeconds(10));
        _checkpointing.Wait(TimeSpan.FromSeconds(10));
    }

    /// <summary>Runs <paramref name="write"/> inside the next transaction; completes once it is committed.</summary>
    public Task WriteAsync(Action<SqliteWriteContext> write)
    {
        var pending = new Write(write);
        if (!_pending.Writer.TryWrite(pending))
        {
            throw new ObjectDisposedException(nameof(SqliteWriter), $"the writer of {_path} is closed");
        }

        _written.Set();
        return pending.Done.Task;
    }

    private void WriteLoop(SqliteConnection connection)
    {
        using var context = new SqliteWriteContext(connection);
        var batch = new List<Write>();
        while (true)
        {
            // Reset before reading: a write queued after the reads below sets it again.
            _written.Reset();
            batch.Clear();
            while (batch.Count < MaxWritesPerTransaction && _pending.Reader.TryRead(out var next))
            {
                batch.Add(next);
            }

            if (batch.Count == 0)
            {
                if (_pending.Reader.Completion.IsCompleted)
                {
                    return;
                }

                _written.Wait();
                continue;
            }

            try
            {
                context.Run(batch.Select(w => w.Apply));
                batch.ForEach(w => w.Done.TrySetResult());
            }
            catch (Exception) when (batch.Count > 1)
            {
                foreach (var write in batch)
                {
                    try
                    {
                        context.Run([write.Apply]);
                        write.Done.TrySetResult();
                    }
                    catch (Exception e)
                    {
                        write.Done.TrySetException(e);
                    }
                }
            }
            catch (Exception e)
            {
                batch[0].Done.TrySetException(e);
            }
        }
    }

    /// <summary>Every second while the writer runs, and once when it has stopped.</summary>
    private async Task CheckpointWhileWritingAsync()
    {
        using var connection = SqliteFiles.Open(_path);
        while (!_writing.IsCompleted)
        {
            await Task.WhenAny(_writing, Task.Delay(TimeSpan.FromSeconds(1)));
            try
            {
                using var command = connection.CreateCommand();
                command.CommandText = "PRAGMA wal_checkpoint(PASSIVE);";
                await Task.Run(() => command.ExecuteNonQuery());
            }
            catch (SqliteException e)
            {
                CheckpointFailed?.Invoke(e);
            }
        }
    }

    private sealed record Write(Action<SqliteWriteContext> Apply)
    {
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}

/// <summary>What a write sees: statements prepared once per SQL text, bound to the open transaction.</summary>
public sealed class SqliteWriteContext : IDisposable
{
    private readonly SqliteConnection _connection;
    private readonly Dictionary<string, SqliteCommand> _statements = new(StringComparer.Ordinal);
    private SqliteTransaction? _transaction;

    internal SqliteWriteContext(SqliteConnection connection) => _connection = connection;

    /// <summary>Executes <paramref name="sql"/> with positional values for its parameters, in order of first appearance.</summary>
    public int Execute(string sql, params object[] values)
    {
        if (!_statements.TryGetValue(sql, out var command))
        {
            command = _connection.CreateCommand();
            command.CommandText = sql;
            foreach (var name in System.Text.RegularExpressions.Regex.Matches(sql, @"\$\w+").Select(m => m.Value).Distinct(StringComparer.Ordinal))
            {
                command.Parameters.Add(new SqliteParameter { ParameterName = name });
            }

            _statements[sql] = command;
        }

        command.Transaction = _transaction;
        for (var i = 0; i < values.Length; i++)
        {
            command.Parameters[i].Value = values[i];
        }

        return command.ExecuteNonQuery();
    }

    internal void Run(IEnumerable<Action<SqliteWriteContext>> writes)
    {
        using var transaction = _connection.BeginTransaction();
        _transaction = transaction;
        try
        {
            foreach (var write in writes)
            {
                write(this);
            }

            transaction.Commit();
        }
        finally
        {
            _transaction = null;
        }
    }

    public void Dispose()
    {
        foreach (var command in _statements.Values)
        {
            command.Dispose();
        }

        _connection.Dispose();
    }
}
