using System.IO.Hashing;
using System.Text;
using Akka.Cluster.Sharding;
using Tsp.Actors.Protocol;

namespace Tsp.Actors.Workflows;

/// <summary>Routes every <see cref="IRunMessage"/> to the run host that holds its run: host
/// <c>hash(run id) mod hosts</c> (XxHash32, the same in every process and every release). A
/// <see cref="StartRuns"/> names its host: the sender grouped its runs with <see cref="HostOf"/>.</summary>
/// <remarks>The number of hosts must not change while runs are unfinished: a run stays on the host that
/// persisted it, so a redelivered start would reach another host (it would be recognized only by the
/// results log's marker once finished).</remarks>
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

    /// <summary>Every run host's id, for what asks all of them (an operator's list or cancel of a project's runs).</summary>
    public static IEnumerable<string> AllHosts(int hosts) =>
        Enumerable.Range(0, Math.Max(1, hosts)).Select(h => h < HostNames.Length ? HostNames[h] : h.ToString(System.Globalization.CultureInfo.InvariantCulture));

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
        var host = XxHash32.HashToUInt32(runId) % (uint)Math.Max(1, hosts);
        return host < (uint)HostNames.Length ? HostNames[host] : host.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    private static readonly string[] HostNames = [.. Enumerable.Range(0, 64).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture))];
}
