using System.Diagnostics;
using System.Globalization;
using System.Text;
using Tsp.Actors.Protocol;
using Tsp.ServiceDefaults;

namespace Tsp.Seed;

/// <summary>
/// <c>top --seed HOST:PORT</c>: the cluster live in a terminal, refreshed in place: members and roles;
/// every orchestrator's queues with depth, credits and throughput; per node its rate and latency; per
/// model version its rate, batch size, queue and compute time; each project's results and Kafka lag;
/// the newest dead letters. Rates and latencies are over the last interval (the difference of two
/// cumulative answers).
/// </summary>
internal static class TopVerb
{
    public static async Task<int> RunAsync(IReadOnlyDictionary<string, string?> flags, TimeSpan interval, int iterations)
    {
        await using var client = await StatusClient.StartAsync(TspProcess.ReadOptions(flags), "top");
        using var stop = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            stop.Cancel();
        };
        var inPlace = !Console.IsOutputRedirected;
        ClusterStatus? previous = null;
        var sampled = Stopwatch.StartNew();
        for (var shown = 0; iterations == 0 || shown < iterations; shown++)
        {
            if (await client.AskAsync(localOnly: false) is not { } status)
            {
                return ExitCodes.Unreachable;
            }

            var frame = Render(status, previous, sampled.Elapsed, DateTimeOffset.Now);
            sampled.Restart();
            previous = status;
            // Home and clear to the end: the frame is redrawn where it was, without flicker.
            Console.Write(inPlace ? $"\u001b[H{frame.Replace("\n", "\u001b[K\n", StringComparison.Ordinal)}\u001b[J" : frame + "\n");
            if (iterations != 0 && shown + 1 >= iterations)
            {
                break;
            }

            try
            {
                await Task.Delay(interval, stop.Token);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }

        return ExitCodes.Ok;
    }

    /// <param name="previous">The answer before, for rates over <paramref name="elapsed"/>; null on the first.</param>
    public static string Render(ClusterStatus status, ClusterStatus? previous, TimeSpan elapsed, DateTimeOffset now)
    {
        var seconds = Math.Max(0.001, elapsed.TotalSeconds);
        var text = new StringBuilder();
        void Line(FormattableString line) => text.Append(line.ToString(CultureInfo.InvariantCulture)).Append('\n');

        Line($"TSP top  {now:HH:mm:ss}  answered by {status.AnsweredBy}  runs active {status.ActiveRuns} (waiting for a turn {status.QueuedRuns})");
        foreach (var missing in status.Unanswered)
        {
            Line($"  no answer from {missing}");
        }

        Line($"");
        Line($"{"MEMBER",-44} {"STATUS",-8} {"REACH",-11} ROLES");
        foreach (var m in status.Members)
        {
            Line($"{m.Address,-44} {m.Status,-8} {(m.Reachable ? "reachable" : "UNREACHABLE"),-11} {string.Join(',', m.Roles)}");
        }

        Line($"");
        Line($"{"QUEUE",-20} {"ROLE",-4} {"ROUTEES",7} {"CREDITS",9} {"WAITING",8} {"IN FLIGHT",9} {"TASKS/S",8} {"RETRIED",8} {"FAILED",7}  ORCHESTRATOR");
        foreach (var q in status.Queues.OrderBy(q => q.Name, StringComparer.Ordinal).ThenBy(q => q.Orchestrator, StringComparer.Ordinal))
        {
            var before = previous?.Queues.FirstOrDefault(p => p.Name == q.Name && p.Orchestrator == q.Orchestrator);
            var rate = before is null ? "-" : ((q.Dispatched - before.Dispatched) / seconds).ToString("0.0", CultureInfo.InvariantCulture);
            Line($"{q.Name,-20} {q.Role,-4} {q.Routees,7} {$"{q.FreeSlots}/{q.Slots}",9} {q.Waiting,8} {q.InFlight,9} {rate,8} {q.Retried,8} {q.Failed,7}  {q.Orchestrator}");
        }

        Line($"");
        Line($"{"NODE (project/node)",-40} {"QUEUE",-14} {"TASKS/S",8} {"MEAN MS",9} {"ALL MS",9} {"DONE",8} {"FAILED",7}");
        foreach (var node in Sum(status, s => s.Nodes, n => (n.Project, n.Node, n.Queue)).OrderBy(n => n.Key.Project, StringComparer.Ordinal).ThenBy(n => n.Key.Node, StringComparer.Ordinal))
        {
            var totals = node.Value;
            var before = previous is null ? null : Sum(previous, s => s.Nodes, n => (n.Project, n.Node, n.Queue)).GetValueOrDefault(node.Key);
            var tasks = totals.Sum(n => n.Succeeded + n.Failed);
            var totalSeconds = totals.Sum(n => n.Seconds);
            var earlierTasks = before?.Sum(n => n.Succeeded + n.Failed) ?? 0;
            var interval = tasks - earlierTasks;
            var intervalMs = interval > 0 ? ((totalSeconds - (before?.Sum(n => n.Seconds) ?? 0)) / interval * 1000).ToString("0.0", CultureInfo.InvariantCulture) : "-";
            var rate = before is null ? "-" : (interval / seconds).ToString("0.0", CultureInfo.InvariantCulture);
            var allMs = tasks > 0 ? (totalSeconds / tasks * 1000).ToString("0.0", CultureInfo.InvariantCulture) : "-";
            Line($"{$"{node.Key.Project}/{node.Key.Node}",-40} {node.Key.Queue,-14} {rate,8} {intervalMs,9} {allMs,9} {totals.Sum(n => n.Succeeded),8} {totals.Sum(n => n.Failed),7}");
        }

        Line($"");
        Line($"{"MODEL",-28} {"INFER/S",8} {"BATCH",6} {"QUEUE MS",9} {"COMPUTE MS",11} {"INFERENCES",11}");
        foreach (var model in Sum(status, s => s.Models, m => (m.Model, m.Version)).OrderBy(m => m.Key.Model, StringComparer.Ordinal).ThenBy(m => m.Key.Version, StringComparer.Ordinal))
        {
            var all = model.Value;
            var before = previous is null ? null : Sum(previous, s => s.Models, m => (m.Model, m.Version)).GetValueOrDefault(model.Key);
            long Delta(Func<ModelStats, long> f) => all.Sum(f) - (before?.Sum(f) ?? 0);
            double DeltaSeconds(Func<ModelStats, double> f) => all.Sum(f) - (before?.Sum(f) ?? 0);
            var (inferences, batches, rows) = before is null ? (all.Sum(m => m.Inferences), all.Sum(m => m.Batches), all.Sum(m => m.Rows)) : (Delta(m => m.Inferences), Delta(m => m.Batches), Delta(m => m.Rows));
            var (queueSeconds, computeSeconds) = before is null ? (all.Sum(m => m.QueueSeconds), all.Sum(m => m.ComputeSeconds)) : (DeltaSeconds(m => m.QueueSeconds), DeltaSeconds(m => m.ComputeSeconds));
            var rate = before is null ? "-" : (inferences / seconds).ToString("0.0", CultureInfo.InvariantCulture);
            Line($"{$"{model.Key.Model} v{model.Key.Version}",-28} {rate,8} {(batches > 0 ? ((double)rows / batches).ToString("0.0", CultureInfo.InvariantCulture) : "-"),6} {(inferences > 0 ? (queueSeconds / inferences * 1000).ToString("0.0", CultureInfo.InvariantCulture) : "-"),9} {(batches > 0 ? (computeSeconds / batches * 1000).ToString("0.0", CultureInfo.InvariantCulture) : "-"),11} {all.Sum(m => m.Inferences),11}");
        }

        Line($"");
        Line($"{"PROJECT",-28} {"RESULTS",8} {"KAFKA LAG",10} {"KAFKA IN FLIGHT",16} {"DEAD LETTERED",14}");
        foreach (var p in status.Projects)
        {
            var lag = p.KafkaPartitions.Where(k => k.NextOffset >= 0 && k.EndOffset >= 0).Sum(k => Math.Max(0, k.EndOffset - k.NextOffset));
            Line($"{p.Project,-28} {p.LatestPosition,8} {lag,10} {p.KafkaInFlightRuns,16} {p.DeadLettered,14}{(p.Paused ? "  paused" : "")}");
        }

        Line($"");
        Line($"RECENT FAILURES (dead letters, newest first)");
        foreach (var dead in status.RecentDeadLetters)
        {
            var reason = dead.Reason.Length > 100 ? dead.Reason[..100] + "…" : dead.Reason;
            Line($"  {DateTimeOffset.FromUnixTimeMilliseconds(dead.AtUnixMs).ToLocalTime():HH:mm:ss} {dead.Project} {dead.Origin} {dead.Reference}{(dead.NodeId.Length > 0 ? $" node {dead.NodeId}" : "")}: {reason}");
        }

        return text.ToString();
    }

    /// <summary>Every member's entries of one kind, grouped by what names them (a node, a model version).</summary>
    private static Dictionary<TKey, List<T>> Sum<T, TKey>(ClusterStatus status, Func<MemberStats, IEnumerable<T>> entries, Func<T, TKey> key)
        where TKey : notnull =>
        status.MemberStats.SelectMany(entries).GroupBy(key).ToDictionary(g => g.Key, g => g.ToList());
}
