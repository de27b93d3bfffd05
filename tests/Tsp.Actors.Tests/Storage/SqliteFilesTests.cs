using Microsoft.Data.Sqlite;
using Tsp.Actors.Storage;
using Tsp.Tests.Shared;

namespace Tsp.Actors.Tests.Storage;

/// <summary>How the standalone journal's SQLite file is made and opened.</summary>
public sealed class SqliteFilesTests
{
    [Fact]
    public void A_new_file_is_made_with_small_pages_in_wal_mode()
    {
        using var connection = SqliteFiles.Open(TestServers.TempSqlitePath());

        Assert.Equal(SqliteFiles.PageSize, Scalar<long>(connection, "PRAGMA page_size"));
        Assert.Equal("wal", Scalar<string>(connection, "PRAGMA journal_mode"));
    }

    [Fact]
    public void A_file_made_with_other_pages_keeps_them_and_gets_the_journal_tables_beside_its_own()
    {
        var path = TestServers.TempSqlitePath();
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using (var made = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Pooling = false }.ToString()))
        {
            made.Open();
            using var command = made.CreateCommand();
            command.CommandText = "PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE kept (x INTEGER); INSERT INTO kept VALUES (7);";
            command.ExecuteNonQuery();
        }

        using var connection = SqliteFiles.Open(path);

        Assert.Equal(4096L, Scalar<long>(connection, "PRAGMA page_size"));
        Assert.Equal(7L, Scalar<long>(connection, "SELECT x FROM kept"));
        Assert.Equal(2L, Scalar<long>(connection, "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('tsp_journal', 'tsp_snapshot')"));
    }

    private static T Scalar<T>(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return (T)command.ExecuteScalar()!;
    }
}
