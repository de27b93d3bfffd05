using Google.Protobuf;
using StackExchange.Redis;
using Tsp.Actors.Protocol;
using Tsp.Actors.Telemetry;

namespace Tsp.Actors.Storage;

public sealed record StorageOptions
{
    /// <summary>How long a frame and node outputs stay in Redis (claim-check blobs).</summary>
    public TimeSpan BlobTtl { get; init; } = TimeSpan.FromHours(1);

    /// <summary>How long a finished run's frame and node outputs stay (for subscribers that fetch an
    /// output by its key). Blobs are large (tensors, images): at a few hundred runs per second an hour
    /// of them would fill Redis.</summary>
    public TimeSpan FinishedBlobTtl { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>How many TP results each project's results log keeps (oldest trimmed first).</summary>
    public int ResultsRetention { get; init; } = 100_000;

    /// <summary>How long the log remembers which position a run's result got (so a run re-published
    /// after a crash is not logged twice).</summary>
    public TimeSpan ResultMarkerTtl { get; init; } = TimeSpan.FromDays(7);

    /// <summary>How many dead-letter records each project keeps.</summary>
    public int DeadLetterRetention { get; init; } = 10_000;

    /// <summary>How long a failed run's frame is kept beside its dead letter, for a redrive.</summary>
    public TimeSpan DeadFrameTtl { get; init; } = TimeSpan.FromDays(7);

    /// <summary>How long a finished run's frame preview stays (for the dashboard's recent results).</summary>
    public TimeSpan PreviewTtl { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Each orchestrator keeps a preview of at most one finished run per project this often
    /// (<c>FramePreviews</c>): a copy of every frame would double Redis's traffic.</summary>
    public TimeSpan PreviewEvery { get; init; } = TimeSpan.FromSeconds(1);
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

    // Held while a command of a run's path is handed to the client (a few microseconds, never across
    // an await), so that no two threads meet on the client's own write lock. A command that meets it
    // held goes to the client's backlog queue instead, whose peeked segments keep every command that
    // passed through them referenced until the segment fills (dotnet/runtime#45546): young
    // collections promoted them, and gen2 grew by them. With this lock a young collection on the
    // orchestration bench promotes ~20 % less and takes ~20 % less time, and the gen2 collection that
    // came once per 20,000 runs mostly does not (bench/RESULTS.md).
    // Commands off the run's path (previews, dead letters, reads of the log) are not serialized: one
    // that meets the client's lock only takes the backlog once.
    private readonly Lock _issue = new();

    /// <summary>Hands a command to the client under <see cref="_issue"/>; <paramref name="command"/> is
    /// static and takes its arguments as <paramref name="state"/>, so a command costs no closure.</summary>
    private Task<T> Issue<TState, T>(TState state, Func<IDatabaseAsync, TState, Task<T>> command)
    {
        lock (_issue)
        {
            return command(_db, state);
        }
    }

    /// <summary>Sends a batch's commands under <see cref="_issue"/>.</summary>
    private void Send(IBatch batch)
    {
        lock (_issue)
        {
            batch.Execute();
        }
    }

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

    /// <summary>Whether <paramref name="error"/> says Redis could not be reached or could not serve yet
    /// (a restart, a failover, an AOF still loading) rather than that a command was wrong: the caller
    /// waits and repeats instead of failing what it was doing.</summary>
    public static bool IsUnavailable(Exception error) => error switch
    {
        RedisConnectionException or RedisTimeoutException => true,
        RedisServerException server => server.Message.StartsWith("LOADING", StringComparison.Ordinal)
            || server.Message.StartsWith("MASTERDOWN", StringComparison.Ordinal)
            || server.Message.StartsWith("TRYAGAIN", StringComparison.Ordinal)
            || server.Message.StartsWith("CLUSTERDOWN", StringComparison.Ordinal),
        AggregateException { InnerExceptions.Count: 1 } aggregate => IsUnavailable(aggregate.InnerExceptions[0]),
        _ => false,
    };

    public Task PutBlobAsync(string key, ReadOnlyMemory<byte> data) =>
        Issue((key, data, Options.BlobTtl), static (db, a) => db.StringSetAsync(a.key, a.data, a.BlobTtl));

    /// <summary>One command per key: the keys may hash to different slots of a cluster.</summary>
    public Task DeleteBlobsAsync(IReadOnlyList<string> keys)
    {
        if (keys.Count == 1)
        {
            return Issue(keys[0], static (db, key) => db.KeyDeleteAsync(key));
        }

        var batch = _db.CreateBatch();
        var deletes = keys.Select(k => batch.KeyDeleteAsync(k)).ToList();
        Send(batch);
        return Task.WhenAll(deletes);
    }

    /// <returns>The blob, or null when the key does not exist (expired or never written).</returns>
    public async Task<byte[]?> GetBlobAsync(string key) =>
        (byte[]?)await Issue(key, static (db, k) => db.StringGetAsync(k));

    public Task<bool> BlobExistsAsync(string key) => _db.KeyExistsAsync(key);

    /// <summary>Shortens the blobs' time to live to <see cref="StorageOptions.FinishedBlobTtl"/> (never lengthens it).</summary>
    public Task ExpireFinishedAsync(IReadOnlyList<string> keys)
    {
        if (keys.Count == 0)
        {
            return Task.CompletedTask;
        }

        var batch = _db.CreateBatch();
        var expiries = keys.Select(k => batch.KeyExpireAsync(k, Options.FinishedBlobTtl, ExpireWhen.LessThanCurrentExpiry)).ToList();
        Send(batch);
        return Task.WhenAll(expiries);
    }

    /// <summary>Writes a finished run's blobs with <see cref="StorageOptions.FinishedBlobTtl"/>, sent
    /// together: one command per key, as the keys may hash to different slots of a cluster.</summary>
    public Task PutFinishedBlobsAsync(IReadOnlyList<KeyValuePair<string, ReadOnlyMemory<byte>>> blobs)
    {
        if (blobs.Count == 1)
        {
            return Issue((blob: blobs[0], Options.FinishedBlobTtl), static (db, a) => db.StringSetAsync(a.blob.Key, a.blob.Value, a.FinishedBlobTtl));
        }

        var batch = _db.CreateBatch();
        var writes = new Task[blobs.Count];
        for (var i = 0; i < blobs.Count; i++)
        {
            writes[i] = batch.StringSetAsync(blobs[i].Key, blobs[i].Value, Options.FinishedBlobTtl);
        }

        Send(batch);
        return Task.WhenAll(writes);
    }

    /// <summary>Reads a node task's inputs. An input that carries its data (a parent's small output,
    /// <see cref="NodeTaskDone.Output"/>) is not read; an input with a length is that range of a string
    /// (a frame, <see cref="FrameLeases"/>), read with <c>GETRANGE</c> into a pooled buffer; other
    /// inputs are whole keys (outputs: tensors, boxes a node wrote).</summary>
    public async Task<NodeInputReads> ReadInputsAsync(IReadOnlyList<NodeInput> inputs)
    {
        var blobs = new ReadOnlyMemory<byte>?[inputs.Count];
        var owners = new IDisposable?[inputs.Count];
        var reads = new NodeInputReads(blobs, owners);
        try
        {
            // Most tasks have one or two inputs: the lists are made only when an input needs them.
            List<string>? keys = null;
            List<int>? keyed = null;
            List<(int Index, Task<RespResult> Reply)>? ranges = null;
            for (var i = 0; i < inputs.Count; i++)
            {
                var input = inputs[i];
                if (input.HasData)
                {
                    blobs[i] = input.Data.Memory;
                }
                else if (input.Length > 0)
                {
                    var end = (long)input.Offset + input.Length - 1;
                    var args = new RedisKeyOrValue[] { (RedisKey)input.Key, (RedisValue)input.Offset, (RedisValue)end };
                    (ranges ??= []).Add((i, Issue(args, static (db, a) => db.ExecuteRespAsync("GETRANGE", a))));
                }
                else
                {
                    (keys ??= []).Add(input.Key);
                    (keyed ??= []).Add(i);
                }
            }

            var whole = keys is not null ? GetBlobsAsync(keys) : null;
            foreach (var (index, reply) in ranges ?? [])
            {
                using var result = await reply;
                var lease = LeaseOf(result);
                owners[index] = lease;
                // GETRANGE answers an empty string, not nil, for a missing key: a short answer is one.
                blobs[index] = lease is { } bytes && bytes.Length == inputs[index].Length ? bytes.Memory : (ReadOnlyMemory<byte>?)null;
            }

            if (whole is not null)
            {
                var values = await whole;
                for (var k = 0; k < keyed!.Count; k++)
                {
                    blobs[keyed[k]] = values[k] is { } value ? value : (ReadOnlyMemory<byte>?)null;
                }
            }

            return reads;
        }
        catch
        {
            reads.Dispose();
            throw;
        }
    }

    // A lease that shares the reply's buffer (its own count on it), so the reply itself can be disposed.
    private static Lease<byte>? LeaseOf(RespResult result)
    {
        if (result.IsNull)
        {
            return null;
        }

        var reader = result.ReadScalar();
        return reader.ReadLease();
    }

    /// <returns>The blobs in key order; null for a missing key.</returns>
    public async Task<byte[]?[]> GetBlobsAsync(IReadOnlyList<string> keys)
    {
        if (keys.Count == 1)
        {
            return [await GetBlobAsync(keys[0])];
        }

        var slot = _redis.HashSlot(keys[0]);
        if (keys.Any(k => _redis.HashSlot(k) != slot))
        {
            // A cluster answers MGET only within one slot; a run's own keys share one (RedisKeys).
            return await Task.WhenAll(keys.Select(GetBlobAsync));
        }

        var values = await Issue(keys.Select(k => (RedisKey)k).ToArray(), static (db, many) => db.StringGetAsync(many));
        return values.Select(v => (byte[]?)v).ToArray();
    }

    /// <summary>Keeps a copy of a run's frame for <see cref="StorageOptions.PreviewTtl"/> under
    /// <see cref="RedisKeys.Preview"/>, before its frame string is released.</summary>
    public Task KeepPreviewAsync(string project, string runId, string frameKey, FrameSlice slice) =>
        CopySliceAsync(frameKey, slice, RedisKeys.Preview(project, runId), Options.PreviewTtl);

    /// <summary>Copies a run's slice of its frame string to <paramref name="target"/>. Through this
    /// process, not a script: the frames string and the run's keys hash to different slots of a
    /// cluster. Only previews (at most one per project and orchestrator each <c>PreviewEvery</c>) and
    /// failed runs' frames take this path.</summary>
    private async Task CopySliceAsync(string frameKey, FrameSlice slice, string target, TimeSpan ttl)
    {
        if (slice.Length == 0)
        {
            return;
        }

        var frame = (byte[]?)await _db.StringGetRangeAsync(frameKey, slice.Offset, (long)slice.Offset + slice.Length - 1);
        if (frame is { Length: > 0 })
        {
            await _db.StringSetAsync(target, frame, ttl);
        }
    }

    /// <summary>A finished run's frame, if a preview of it was kept and has not expired.</summary>
    public async Task<byte[]?> GetPreviewAsync(string project, string runId) =>
        (byte[]?)await _db.StringGetAsync(RedisKeys.Preview(project, runId));

    // Numbers a dead letter and pushes it: the id is appended to the serialized record as protobuf
    // field 7 (a varint; protobuf reads concatenated fields as one message), so it is assigned and
    // stored in the same atomic step.
    private const string PushDeadLetterLua = """
        local function pushDead()
          local n = redis.call('INCR', @deadSequence)
          local id = n
          local bytes = {string.char(56)}
          while n >= 128 do
            bytes[#bytes + 1] = string.char(n % 128 + 128)
            n = math.floor(n / 128)
          end
          bytes[#bytes + 1] = string.char(n)
          redis.call('LPUSH', @dead, @deadLetter .. table.concat(bytes))
          redis.call('LTRIM', @dead, 0, tonumber(@deadRetention) - 1)
          return id
        end

        """;

    private static readonly LuaScript DeadLetterScript = LuaScript.Prepare(PushDeadLetterLua + "return pushDead()");

    // One atomic step, so the log has no reserved-but-empty positions: when a result at position P
    // is visible (or published live), every position below P is already in the log. Subscribers rely
    // on that to resume without gaps. The run's marker makes a re-publish after a crash a no-op, and a
    // failed run's dead letter is written in the same step, so it exists exactly once. Its keys all
    // carry the project's hash tag: one slot of a cluster.
    private static readonly LuaScript AppendScript = LuaScript.Prepare(PushDeadLetterLua + """
        local earlier = redis.call('GET', @marker)
        if earlier then return {tonumber(earlier), 0} end
        local position = redis.call('INCR', @sequence)
        redis.call('ZADD', @results, position, @entry)
        redis.call('SET', @marker, position, 'EX', @markerTtl)
        if position % 256 == 0 then
          redis.call('ZREMRANGEBYRANK', @results, 0, -tonumber(@retention) - 1)
        end
        if @deadLetter ~= '' then
          pushDead()
        end
        return {position, 1}
        """);

    /// <summary>Appends a run's result to its project's log (1, 2, 3, …) and sets
    /// <see cref="TpResult.Position"/>. Idempotent per run: a run appended before keeps its one entry
    /// and position.</summary>
    /// <param name="deadLetter">For a failed run: written with the result, once.</param>
    /// <param name="deadFrame">For a failed run: its frame, copied to the dead letter's
    /// <see cref="DeadLetter.FrameKey"/> for <see cref="StorageOptions.DeadFrameTtl"/>.</param>
    /// <returns>The position, and whether this call appended the result (false: it was there).</returns>
    public async Task<(long Position, bool Appended)> AppendResultAsync(TpResult result, DeadLetter? deadLetter = null, RunFrame? deadFrame = null)
    {
        if (deadLetter is { FrameKey.Length: > 0 } && deadFrame is { } frame)
        {
            // Before the dead letter: once it is visible, its frame is there to redrive. A re-publish
            // after a crash copies it again, to the same key.
            await CopySliceAsync(frame.FrameKey, frame.Slice, deadLetter.FrameKey, Options.DeadFrameTtl);
        }

        // The position lives in the score; the stored entry is written without it and filled on read.
        result.Position = 0;
        var append = new
        {
            marker = (RedisKey)RedisKeys.ResultPosition(result.Project, result.RunId),
            sequence = (RedisKey)RedisKeys.ResultsSequence(result.Project),
            results = (RedisKey)RedisKeys.Results(result.Project),
            dead = (RedisKey)RedisKeys.DeadLetters(result.Project),
            entry = (RedisValue)result.ToByteArray(),
            markerTtl = (long)Options.ResultMarkerTtl.TotalSeconds,
            retention = Options.ResultsRetention,
            deadLetter = deadLetter is null ? RedisValue.EmptyString : (RedisValue)deadLetter.ToByteArray(),
            deadRetention = Options.DeadLetterRetention,
            deadSequence = (RedisKey)RedisKeys.DeadLettersSequence(result.Project),
        };
        var reply = (RedisResult[])(await Issue(append, static (db, a) => db.ScriptEvaluateAsync(AppendScript, a)))!;
        result.Position = (long)reply[0];
        var appended = (long)reply[1] == 1;
        if (appended && deadLetter is not null)
        {
            CountDeadLetter(deadLetter);
        }

        return (result.Position, appended);
    }

    /// <summary>Whether the run's result is in the project's log.</summary>
    public async Task<bool> IsResultLoggedAsync(string project, string runId) =>
        await GetResultAsync(project, runId) is not null;

    /// <summary>The run's result from the log; null when it is not there (not finished, unknown, or
    /// trimmed by retention).</summary>
    public async Task<TpResult?> GetResultAsync(string project, string runId)
    {
        if ((long?)await _db.StringGetAsync(RedisKeys.ResultPosition(project, runId)) is not { } position)
        {
            return null;
        }

        var entries = await ReadResultsAsync(project, position, 1);
        return entries is [{ Position: var found } entry] && found == position ? entry.Result : null;
    }

    /// <summary>Results with position ≥ <paramref name="fromPosition"/>, oldest first.</summary>
    public async Task<IReadOnlyList<PositionedResult>> ReadResultsAsync(string project, long fromPosition, int max)
    {
        var entries = await _db.SortedSetRangeByScoreWithScoresAsync(RedisKeys.Results(project), fromPosition, double.PositiveInfinity, take: max);
        return entries.Select(e =>
        {
            var result = TpResult.Parser.ParseFrom((byte[])e.Element!);
            result.Position = (long)e.Score;
            return new PositionedResult(result.Position, result);
        }).ToList();
    }

    /// <summary>The position the next result will get, minus one (0 for an empty log).</summary>
    public async Task<long> LatestPositionAsync(string project) =>
        (long?)await _db.StringGetAsync(RedisKeys.ResultsSequence(project)) ?? 0;

    /// <returns>The dead letter's id (its project's next number).</returns>
    public async Task<long> AppendDeadLetterAsync(DeadLetter deadLetter)
    {
        var id = (long)await _db.ScriptEvaluateAsync(DeadLetterScript, new
        {
            dead = (RedisKey)RedisKeys.DeadLetters(deadLetter.Project),
            deadSequence = (RedisKey)RedisKeys.DeadLettersSequence(deadLetter.Project),
            deadLetter = (RedisValue)deadLetter.ToByteArray(),
            deadRetention = Options.DeadLetterRetention,
        });
        CountDeadLetter(deadLetter);
        return id;
    }

    /// <summary>Notes the dead letter a redriven run comes from, for as long as its frame is kept.</summary>
    public Task NoteRedrivenAsync(string project, string runId, DeadLetter from) =>
        _db.StringSetAsync(RedisKeys.RedrivenFrom(project, runId), from.ToByteArray(), Options.DeadFrameTtl);

    /// <summary>The dead letter a redriven run comes from, if it was noted and has not expired.</summary>
    public async Task<DeadLetter?> GetRedrivenAsync(string project, string runId) =>
        (byte[]?)await _db.StringGetAsync(RedisKeys.RedrivenFrom(project, runId)) is { } bytes ? DeadLetter.Parser.ParseFrom(bytes) : null;

    private static void CountDeadLetter(DeadLetter deadLetter) =>
        TspMetrics.DeadLetters.Add(1, new KeyValuePair<string, object?>("project", deadLetter.Project), new KeyValuePair<string, object?>("origin", deadLetter.Origin));

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
