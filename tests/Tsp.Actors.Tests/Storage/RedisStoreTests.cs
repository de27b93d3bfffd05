using Tsp.ServiceDefaults.Embedded;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Tests.Shared;

namespace Tsp.Actors.Tests.Storage;

/// <summary>The data plane on every server TSP runs on: real redis-server, a Redis Cluster of three
/// masters (each atomic step within one slot) and embedded Garnet.</summary>
public sealed class RedisStoreTests(EmbeddedRedisFixture garnet) : IClassFixture<EmbeddedRedisFixture>
{
    private Task<RedisStore> Connect(string server, StorageOptions? options = null) =>
        RedisStore.ConnectAsync(server switch { "garnet" => garnet.Server.ConnectionString, "cluster" => TestServers.RedisCluster, _ => TestServers.Redis }, options);

    [Fact]
    public async Task On_a_cluster_a_projects_runs_spread_over_the_masters_while_its_log_and_each_run_keep_one_slot()
    {
        await using var store = await Connect("cluster");
        var redis = store.Connection;
        var layout = redis.GetServer(redis.GetEndPoints()[0]).ClusterConfiguration!;
        const string project = "spread";

        int[] log = [.. new[] { RedisKeys.Results(project), RedisKeys.ResultsSequence(project), RedisKeys.DeadLetters(project), RedisKeys.DeadLettersSequence(project), RedisKeys.ResultPosition(project, "run-1"), RedisKeys.ResultPosition(project, "run-2") }
            .Select(k => redis.HashSlot(k)).Distinct()];
        Assert.Single(log);
        int[] run = [.. new[] { RedisKeys.NodeOutput(project, "run-1", "detect"), RedisKeys.NodeOutput(project, "run-1", "read"), RedisKeys.Preview(project, "run-1"), RedisKeys.DeadFrame(project, "run-1"), RedisKeys.RedrivenFrom(project, "run-1") }
            .Select(k => redis.HashSlot(k)).Distinct()];
        Assert.Single(run);

        var masters = Enumerable.Range(0, 60)
            .SelectMany(i => new[] { RedisKeys.NodeOutput(project, $"run-{i}", "detect"), RedisKeys.Frames(project, $"batch-{i}") })
            .Select(k => layout.GetBySlot(redis.HashSlot(k))!.EndPoint)
            .Distinct()
            .Count();
        Assert.Equal(3, masters);
    }

    [Theory]
    [InlineData("redis")]
    [InlineData("cluster")]
    [InlineData("garnet")]
    public async Task Results_get_consecutive_positions_and_replay_from_any_position(string server)
    {
        await using var store = await Connect(server);
        var project = TestServers.Unique("log");

        for (var i = 1; i <= 10; i++)
        {
            var result = new TpResult { Project = project, RunId = $"run-{i}", Status = RunStatus.Succeeded };
            Assert.Equal((i, true), await store.AppendResultAsync(result));
            Assert.Equal(i, result.Position);
        }

        var fromSeven = await store.ReadResultsAsync(project, 7, 100);
        Assert.Equal([7L, 8, 9, 10], fromSeven.Select(r => r.Position));
        Assert.Equal(["run-7", "run-8", "run-9", "run-10"], fromSeven.Select(r => r.Result.RunId));
        Assert.Equal([1L, 2, 3], (await store.ReadResultsAsync(project, 1, 3)).Select(r => r.Position));
        Assert.Empty(await store.ReadResultsAsync(project, 11, 100));
        Assert.Equal(10, await store.LatestPositionAsync(project));
    }

    [Theory]
    [InlineData("redis")]
    [InlineData("cluster")]
    [InlineData("garnet")]
    public async Task A_republished_run_keeps_its_one_entry_position_and_dead_letter(string server)
    {
        await using var store = await Connect(server);
        var project = TestServers.Unique("again");
        var result = new TpResult { Project = project, RunId = "run-a", Status = RunStatus.Failed, Error = "node x failed" };
        var deadLetter = new DeadLetter { Project = project, Origin = "run", Reference = "run-a", Reason = "node x failed" };
        await store.AppendResultAsync(new TpResult { Project = project, RunId = "run-0" });
        Assert.False(await store.IsResultLoggedAsync(project, "run-a"));
        Assert.Null(await store.GetResultAsync(project, "run-a"));

        Assert.Equal((2, true), await store.AppendResultAsync(result, deadLetter));
        Assert.Equal((2, false), await store.AppendResultAsync(result.Clone(), deadLetter));
        Assert.Equal((2, false), await store.AppendResultAsync(result.Clone(), deadLetter));

        var logged = await store.GetResultAsync(project, "run-a");
        Assert.NotNull(logged);
        Assert.Equal(2, logged.Position);
        Assert.Equal("node x failed", logged.Error);
        Assert.Equal([1L, 2], (await store.ReadResultsAsync(project, 0, 10)).Select(r => r.Position));
        Assert.Equal(["run-a"], (await store.ReadDeadLettersAsync(project)).Select(d => d.Reference));
    }

    [Theory]
    [InlineData("redis")]
    [InlineData("cluster")]
    [InlineData("garnet")]
    public async Task A_finished_runs_blobs_get_the_short_ttl_and_a_shorter_one_is_kept(string server)
    {
        await using var store = await Connect(server, new StorageOptions { FinishedBlobTtl = TimeSpan.FromSeconds(30) });
        var db = store.Connection.GetDatabase();
        var (frame, output) = (TestServers.Unique("frame"), TestServers.Unique("output"));
        await store.PutBlobAsync(frame, new byte[] { 1 });
        await db.StringSetAsync(output, new byte[] { 2 }, TimeSpan.FromSeconds(10));

        // A run's outputs (sharing its tag) among keys that hash anywhere, one of them missing.
        var runId = TestServers.Unique("run");
        var (pre, post) = (RedisKeys.NodeOutput("p", runId, "pre"), RedisKeys.NodeOutput("p", runId, "post"));
        await store.PutBlobAsync(pre, new byte[] { 3 });
        await db.StringSetAsync(post, new byte[] { 4 }, TimeSpan.FromSeconds(10));

        await store.ExpireFinishedAsync([frame, output, pre, TestServers.Unique("missing"), post]);

        Assert.InRange((await db.KeyTimeToLiveAsync(frame))!.Value.TotalSeconds, 1, 30);
        Assert.InRange((await db.KeyTimeToLiveAsync(output))!.Value.TotalSeconds, 1, 10);
        Assert.InRange((await db.KeyTimeToLiveAsync(pre))!.Value.TotalSeconds, 1, 30);
        Assert.InRange((await db.KeyTimeToLiveAsync(post))!.Value.TotalSeconds, 1, 10);
        Assert.NotNull(await store.GetBlobAsync(frame));
        Assert.NotNull(await store.GetBlobAsync(pre));
    }

    [Theory]
    [InlineData("redis")]
    [InlineData("cluster")]
    [InlineData("garnet")]
    public async Task The_results_log_keeps_only_its_retention(string server)
    {
        await using var store = await Connect(server, new StorageOptions { ResultsRetention = 100 });
        var project = TestServers.Unique("trim");

        for (var i = 0; i < 300; i++)
        {
            await store.AppendResultAsync(new TpResult { Project = project, RunId = $"r{i}" });
        }

        // Trimming runs every 256 appends: after 300 the log holds the newest 100 of the first 256, plus 44.
        var kept = await store.ReadResultsAsync(project, 0, 1000);
        Assert.Equal(144, kept.Count);
        Assert.Equal(157, kept[0].Position);
        Assert.Equal(300, kept[^1].Position);
    }

    [Theory]
    [InlineData("redis")]
    [InlineData("cluster")]
    [InlineData("garnet")]
    public async Task Dead_letters_are_listed_newest_first_and_bounded(string server)
    {
        await using var store = await Connect(server, new StorageOptions { DeadLetterRetention = 3 });
        var project = TestServers.Unique("dead");

        for (var i = 0; i < 5; i++)
        {
            await store.AppendDeadLetterAsync(new DeadLetter { Project = project, Origin = "kafka", Reference = $"t/0/{i}", Reason = "empty message" });
        }

        Assert.Equal(["t/0/4", "t/0/3", "t/0/2"], (await store.ReadDeadLettersAsync(project)).Select(d => d.Reference));
    }

    [Theory]
    [InlineData("redis")]
    [InlineData("cluster")]
    [InlineData("garnet")]
    public async Task Blobs_round_trip_expire_and_a_missing_key_reads_as_null(string server)
    {
        await using var store = await Connect(server, new StorageOptions { BlobTtl = TimeSpan.FromSeconds(30) });
        var project = TestServers.Unique("blob");
        var frame = RedisKeys.Frames(project, "r1");
        var output = RedisKeys.NodeOutput(project, "r1", "n");

        await store.PutBlobAsync(frame, new byte[] { 1, 2, 3 });
        await store.PutBlobAsync(output, new byte[70_000]);

        Assert.Equal(new byte[] { 1, 2, 3 }, await store.GetBlobAsync(frame));
        var both = await store.GetBlobsAsync([frame, output, RedisKeys.NodeOutput(project, "r1", "missing")]);
        Assert.Equal(3, both[0]!.Length);
        Assert.Equal(70_000, both[1]!.Length);
        Assert.Null(both[2]);
        var ttl = await store.Connection.GetDatabase().KeyTimeToLiveAsync(frame);
        Assert.InRange(ttl!.Value, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30));
    }

    [Theory]
    [InlineData("redis")]
    [InlineData("cluster")]
    [InlineData("garnet")]
    public async Task Node_inputs_read_ranges_of_a_frame_string_and_keys_take_carried_data_as_it_is_and_a_missing_one_as_null(string server)
    {
        await using var store = await Connect(server);
        var project = TestServers.Unique("inputs");
        var frames = RedisKeys.Frames(project, "b1");
        var output = RedisKeys.NodeOutput(project, "r1", "n");
        await store.PutBlobAsync(frames, "aaabbbbc"u8.ToArray());
        await store.PutBlobAsync(output, new byte[] { 9 });

        using var reads = await store.ReadInputsAsync(
        [
            new NodeInput { Key = frames, Offset = 3, Length = 4 },
            new NodeInput { Key = frames, Offset = 7, Length = 1 },
            new NodeInput { Key = output },
            new NodeInput { Key = frames, Offset = 6, Length = 5 },
            new NodeInput { Key = RedisKeys.Frames(project, "gone"), Offset = 0, Length = 1 },
            new NodeInput { Key = RedisKeys.NodeOutput(project, "r1", "gone") },
            new NodeInput { Key = RedisKeys.NodeOutput(project, "r1", "carried"), Data = Google.Protobuf.ByteString.CopyFrom(4, 2) },
        ]);

        var blobs = reads.Blobs;
        Assert.Equal("bbbb"u8.ToArray(), blobs[0]!.Value.ToArray());
        Assert.Equal("c"u8.ToArray(), blobs[1]!.Value.ToArray());
        Assert.Equal(new byte[] { 9 }, blobs[2]!.Value.ToArray());
        Assert.Null(blobs[3]);
        Assert.Null(blobs[4]);
        Assert.Null(blobs[5]);
        // Carried by its producer's reply: not read, though no key holds it.
        Assert.Equal(new byte[] { 4, 2 }, blobs[6]!.Value.ToArray());
    }
}

/// <summary>One Garnet for the class: its tests keep apart by project names, as they do on the shared
/// redis-server.</summary>
public sealed class EmbeddedRedisFixture : IDisposable
{
    public EmbeddedRedis Server { get; } = EmbeddedRedis.Start();

    public void Dispose() => Server.Dispose();
}
