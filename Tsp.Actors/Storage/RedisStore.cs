using Google.Protobuf;
using StackExchange.Redis;
using Tsp.Actors.Protocol;

namespace Tsp.Actors.Storage;

public sealed record StorageOptions
{
    /// <summary>How long a frame and node outputs stay in Redis (claim-check blobs).</summary>
    public TimeSpan BlobTtl { get; init; } = TimeSpan.FromHours(1);

    /// <summary>How many TP results each project's results log keeps (oldest trimmed first).</summary>
    public int ResultsRetention { get; init; } = 100_000;

    /// <summary>How long the log remembers which position a run's result got (so a run re-published
    /// after a crash is not logged twice).</summary>
    public TimeSpan ResultMarkerTtl { get; init; } = TimeSpan.FromDays(7);

    /// <summary>How many dead-letter records each project keeps.</summary>
    public int DeadLetterRetention { get; init; } = 10_000;
}

/// <summary>A TP result with its position in the project's results log.</summary>
public readonly record struct PositionedResult(long Position, TpResult Result);

/// <summary>
/// TSP's data plane in Redis: claim-check blobs (frames and node outputs), the replayable results
/// log and the dead-letter log. Uses only commands that both Redis and Garnet serve (no streams):
/// the results log is an INCR counter plus a sorted set scored by position.
/// </summary>
public sealed class RedisStore : IAsyncDisposable
{
    private readonly IConnectionMultiplexer _redis;
    private readonly IDatabase _db;
    private readonly bool _ownsConnection;

    public RedisStore(IConnectionMultiplexer redis, StorageOptions? options = null, bool ownsConnection = false)
    {
        _redis = redis;
        _db = redis.GetDatabase();
        _ownsConnection = ownsConnection;
        Options = options ?? new StorageOptions();
    }

    public StorageOptions Options { get; }

    public IConnectionMultiplexer Connection => _redis;

    public static async Task<RedisStore> ConnectAsync(string endpoint, StorageOptions? options = null)
    {
        var config = ConfigurationOptions.Parse(endpoint);
        config.AbortOnConnectFail = true;
        config.ConnectTimeout = 5000;
        var redis = await ConnectionMultiplexer.ConnectAsync(config);
        return new RedisStore(redis, options, ownsConnection: true);
    }

    public Task PutBlobAsync(string key, ReadOnlyMemory<byte> data) =>
        _db.StringSetAsync(key, data, Options.BlobTtl);

    /// <returns>The blob, or null when the key does not exist (expired or never written).</returns>
    public async Task<byte[]?> GetBlobAsync(string key) => (byte[]?)await _db.StringGetAsync(key);

    /// <returns>The blobs in key order; null for a missing key.</returns>
    public async Task<byte[]?[]> GetBlobsAsync(IReadOnlyList<string> keys)
    {
        if (keys.Count == 1)
        {
            return [await GetBlobAsync(keys[0])];
        }

        var values = await _db.StringGetAsync(keys.Select(k => (RedisKey)k).ToArray());
        return values.Select(v => (byte[]?)v).ToArray();
    }

    /// <summary>Appends a result to the project's log and returns its position (1, 2, 3, …).</summary>
    /// <param name="republish">The run may have been appended before (a re-publish after a crash):
    /// then its earlier position is reused and the entry written only if it is missing. One run is
    /// published by one entity at a time (sharding), so this needs no lock.</param>
    /// <returns>The position, and whether this call appended the result (false: it was there).</returns>
    public async Task<(long Position, bool Appended)> AppendResultAsync(TpResult result, bool republish = false)
    {
        var key = RedisKeys.Results(result.Project);
        var marker = RedisKeys.ResultPosition(result.Project, result.RunId);
        if (republish && (long?)await _db.StringGetAsync(marker) is { } earlier)
        {
            result.Position = earlier;
            if (await _db.SortedSetLengthAsync(key, earlier, earlier) > 0)
            {
                return (earlier, false);
            }

            await _db.SortedSetAddAsync(key, result.ToByteArray(), earlier);
            return (earlier, true);
        }

        var position = await _db.StringIncrementAsync(RedisKeys.ResultsSequence(result.Project));
        result.Position = position;
        // Marker first: a crash between the two leaves a reserved position that a re-publish fills.
        var mark = _db.StringSetAsync(marker, position, Options.ResultMarkerTtl);
        var add = _db.SortedSetAddAsync(key, result.ToByteArray(), position);
        if (position % 256 == 0)
        {
            // Trimming in steps keeps the log bounded without a second round trip per result.
            _ = _db.SortedSetRemoveRangeByRankAsync(key, 0, -Options.ResultsRetention - 1, CommandFlags.FireAndForget);
        }

        await Task.WhenAll(mark, add);
        return (position, true);
    }

    /// <summary>Whether the run's result is in the project's log.</summary>
    public async Task<bool> IsResultLoggedAsync(string project, string runId) =>
        (long?)await _db.StringGetAsync(RedisKeys.ResultPosition(project, runId)) is { } position &&
        await _db.SortedSetLengthAsync(RedisKeys.Results(project), position, position) > 0;

    /// <summary>Results with position ≥ <paramref name="fromPosition"/>, oldest first.</summary>
    public async Task<IReadOnlyList<PositionedResult>> ReadResultsAsync(string project, long fromPosition, int max)
    {
        var values = await _db.SortedSetRangeByScoreAsync(RedisKeys.Results(project), fromPosition, double.PositiveInfinity, take: max);
        return values.Select(v => TpResult.Parser.ParseFrom((byte[])v!)).Select(r => new PositionedResult(r.Position, r)).ToList();
    }

    /// <summary>The position the next result will get, minus one (0 for an empty log).</summary>
    public async Task<long> LatestPositionAsync(string project) =>
        (long?)await _db.StringGetAsync(RedisKeys.ResultsSequence(project)) ?? 0;

    public async Task AppendDeadLetterAsync(DeadLetter deadLetter)
    {
        var key = RedisKeys.DeadLetters(deadLetter.Project);
        var push = _db.ListLeftPushAsync(key, deadLetter.ToByteArray());
        _ = _db.ListTrimAsync(key, 0, Options.DeadLetterRetention - 1, CommandFlags.FireAndForget);
        await push;
    }

    /// <summary>The newest dead letters first.</summary>
    public async Task<IReadOnlyList<DeadLetter>> ReadDeadLettersAsync(string project, int max = 1000)
    {
        var values = await _db.ListRangeAsync(RedisKeys.DeadLetters(project), 0, max - 1);
        return values.Select(v => DeadLetter.Parser.ParseFrom((byte[])v!)).ToList();
    }

    public async ValueTask DisposeAsync()
    {
        if (_ownsConnection)
        {
            await _redis.CloseAsync();
            _redis.Dispose();
        }
    }
}
