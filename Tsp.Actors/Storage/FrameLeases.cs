namespace Tsp.Actors.Storage;

/// <summary>
/// A frame's lifetime in Redis, from write to delete. There is one stored form: the frames of runs
/// submitted together (a Kafka batch's runs of one run host, or one gRPC Submit) are one string
/// (<see cref="RedisKeys.Frames"/>), written with the blob TTL, and each run reads its byte range
/// (<see cref="FrameSlice"/>). The run host that holds those runs leases the string once per run as
/// the run enters it (accepted, queued, recovered) and releases it when the run's result is
/// published; the last release deletes the string. A string from which no run started is deleted by
/// its writer at once; one whose host is lost expires with the TTL.
/// </summary>
/// <remarks>Only one host uses a string (the submitter groups runs by host before writing), so the
/// count lives in that host: no shared counter, nothing to keep in step across processes.</remarks>
public sealed class FrameLeases(RedisStore store, Action<string, string> onDeleteFailed)
{
    private readonly Dictionary<string, int> _users = new(StringComparer.Ordinal);

    /// <summary>Frame strings with at least one run that uses them.</summary>
    public int Count => _users.Count;

    /// <summary>Writes a string of frames; it lives for the blob TTL unless deleted first.</summary>
    public static Task WriteAsync(RedisStore store, string key, ReadOnlyMemory<byte> frames) => store.PutBlobAsync(key, frames);

    /// <summary>Counts <paramref name="runs"/> more runs that read from <paramref name="key"/>.</summary>
    public void Hold(string key, int runs = 1)
    {
        if (runs > 0 && key.Length > 0)
        {
            System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(_users, key, out _) += runs;
        }
    }

    public int UsersOf(string key) => _users.GetValueOrDefault(key);

    /// <summary>One run that read from <paramref name="key"/> is done; the last one deletes the string.</summary>
    /// <returns>Whether the string was the last user's and is being deleted.</returns>
    public bool Release(string key)
    {
        if (!_users.TryGetValue(key, out var users))
        {
            return false;
        }

        if (users > 1)
        {
            _users[key] = users - 1;
            return false;
        }

        _users.Remove(key);
        _ = store.DeleteBlobsAsync([key]).ContinueWith(
            t => onDeleteFailed(key, t.Exception?.GetBaseException().Message ?? "unknown"),
            CancellationToken.None,
            TaskContinuationOptions.OnlyOnFaulted,
            TaskScheduler.Default);
        return true;
    }
}
