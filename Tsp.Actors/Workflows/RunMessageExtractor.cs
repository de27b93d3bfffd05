using System.Globalization;
using System.IO.Hashing;
using System.Text;
using Akka.Cluster.Sharding;
using Tsp.Actors.Protocol;

namespace Tsp.Actors.Workflows;

/// <summary>Routes every <see cref="IRunMessage"/> to the run host that holds its run: host
/// <c>hash(run id) mod hosts</c> (XxHash32, the same in every process and every release). A
/// <see cref="StartRuns"/> names its host: the sender grouped its runs with <see cref="HostOf"/>.</summary>
/// <remarks>
/// A host's id names its place and the number of hosts it was made for, <c>3of64</c>, so changing
/// <c>Tsp:RunHosts</c> makes new hosts rather than sending another count's runs to hosts that do not
/// hold them. The hosts of an earlier count (also those named by their index alone, from before ids
/// named the count) keep their unfinished runs: sharding remembers them, their tasks answer them
/// directly, and they retire once they hold none (<see cref="IsCurrent"/>). Host <c>i</c> lives in shard
/// <c>i mod shards</c>, so with as many shards as hosts every shard holds one and sharding's even
/// spread of shards is an even spread of hosts.
/// </remarks>
public sealed class RunMessageExtractor(int maxShards, int hosts) : HashCodeMessageExtractor(maxShards)
{
    public override string? EntityId(object message) => message switch
    {
        IRunMessage run => HostOf(run.RunId, hosts),
        StartRuns batch => batch.HostId,
        ListHostRuns list => list.HostId,
        CancelHostRuns cancel => cancel.HostId,
        _ => null,
    };

    public override string ShardId(string entityId, object? messageHint = null) =>
        TryParse(entityId, out var index, out _) ? (index % MaxNumberOfShards).ToString(CultureInfo.InvariantCulture) : base.ShardId(entityId, messageHint);

    /// <summary>Every run host's id, for what asks all of them (an operator's list or cancel of a project's runs).</summary>
    public static IEnumerable<string> AllHosts(int hosts) => Enumerable.Range(0, Math.Max(1, hosts)).Select(h => NameOf(h, Math.Max(1, hosts)));

    /// <summary>Whether <paramref name="hostId"/> is one of today's <paramref name="hosts"/> hosts; one of
    /// an earlier count gets no new run and retires once it holds none.</summary>
    public static bool IsCurrent(string hostId, int hosts) =>
        TryParse(hostId, out _, out var count) && count == Math.Max(1, hosts);

    public static string HostOf(string runId, int hosts)
    {
        // Called for every run message and every submitted run: hash without allocating (run ids are
        // at most 200 characters, so at most 800 UTF-8 bytes).
        var bytes = runId.Length <= 256 ? stackalloc byte[Encoding.UTF8.GetMaxByteCount(runId.Length)] : new byte[Encoding.UTF8.GetMaxByteCount(runId.Length)];
        var length = Encoding.UTF8.GetBytes(runId, bytes);
        return HostOfUtf8(bytes[..length], hosts);
    }

    /// <summary><see cref="HostOf"/> of a run id given as its UTF-8 bytes.</summary>
    public static string HostOfUtf8(ReadOnlySpan<byte> runId, int hosts)
    {
        var count = Math.Max(1, hosts);
        return NameOf((int)(XxHash32.HashToUInt32(runId) % (uint)count), count);
    }

    private static string NameOf(int index, int hosts)
    {
        // Every message names a host: the names of the configured count are made once.
        var names = s_names;
        if (names.Length != hosts)
        {
            s_names = names = [.. Enumerable.Range(0, hosts).Select(i => string.Create(CultureInfo.InvariantCulture, $"{i}of{hosts}"))];
        }

        return names[index];
    }

    private static bool TryParse(string hostId, out int index, out int hosts)
    {
        var split = hostId.IndexOf("of", StringComparison.Ordinal);
        hosts = 0;
        index = 0;
        return split > 0
            && int.TryParse(hostId.AsSpan(0, split), NumberStyles.None, CultureInfo.InvariantCulture, out index)
            && int.TryParse(hostId.AsSpan(split + 2), NumberStyles.None, CultureInfo.InvariantCulture, out hosts)
            && index < hosts;
    }

    private static volatile string[] s_names = [];
}
