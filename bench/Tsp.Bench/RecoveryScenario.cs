using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Tsp.Actors.Hosting;
using Tsp.Actors.Protocol;

namespace Tsp.Bench;

/// <summary>
/// <c>recovery</c>: how long a worker crash holds up the runs it touched. The <c>scaleout</c> topology
/// with two workers under steady load (<c>--in-flight</c> runs, default 32); one worker is killed with
/// SIGKILL. Figures: <c>removed_s</c>, kill until the orchestrator's queue has dropped the dead worker's
/// routees (failure detector + split brain resolver's stable-after: the cluster's own timings), and
/// <c>recovery_s</c>, kill until the last run that was in flight at the kill has its result. Default
/// cluster timings unless <c>--stable-after</c> seconds is given (then also a 2 s heartbeat pause).
/// </summary>
internal static class RecoveryScenario
{
    public static async Task<int> RunAsync(BenchOptions options, double? stableAfterSeconds)
    {
        var removed = new List<double>();
        var recovered = new List<double>();
        var requeued = new List<double>();
        for (var repeat = 0; repeat < options.Repeats; repeat++)
        {
            var project = $"recov{repeat}-{Guid.NewGuid():N}"[..16];
            await using var host = await ScaleoutScenario.StartOrchestratorAsync(options, project, tsp =>
            {
                if (stableAfterSeconds is { } stable)
                {
                    tsp.Cluster = tsp.Cluster with { StableAfter = TimeSpan.FromSeconds(stable), AcceptableHeartbeatPause = TimeSpan.FromSeconds(2) };
                }
            });
            // Every member must use the same split brain resolver timings: the leader (lowest address,
            // often a worker) decides at its stable-after, but every member downs all at its own
            // stable-after + down-all-when-unstable; a shorter setting on one member downs the cluster.
            var clusterTimings = new Dictionary<string, string>
            {
                ["Tsp__Cluster__StableAfter"] = host.Options.Cluster.StableAfter.ToString("c", CultureInfo.InvariantCulture),
                ["Tsp__Cluster__AcceptableHeartbeatPause"] = host.Options.Cluster.AcceptableHeartbeatPause.ToString("c", CultureInfo.InvariantCulture),
            };
            await using var workers = new WorkerProcesses($"127.0.0.1:{host.Options.Port}", options.Redis, TspRoles.Cpu, clusterTimings);
            var victim = workers.Start();
            workers.Start();
            await host.WaitForWorkersAsync(ScaleoutScenario.Queue, 2, TimeSpan.FromSeconds(60));
            var frames = Enumerable.Range(0, 16).Select(_ => OrchestrationScenario.RandomFrame(project, options.Size)).ToList();
            await OrchestrationScenario.RunAsync(host, frames, 400, options.InFlight);

            var (removedS, recoveryS, requeuedTasks) = await KillUnderLoadAsync(host, workers, victim, frames, options.InFlight);
            removed.Add(removedS);
            recovered.Add(recoveryS);
            requeued.Add(requeuedTasks);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  repeat {repeat + 1}: removed_s={removedS:0.0} recovery_s={recoveryS:0.0} requeued={requeuedTasks}"));
        }

        var timings = stableAfterSeconds is { } s ? string.Create(CultureInfo.InvariantCulture, $"stable-after {s:0.#} s, heartbeat pause 2 s") : "default timings (stable-after 10 s, heartbeat pause 3 s)";
        var figures = string.Create(CultureInfo.InvariantCulture,
            $"removed_s={OrchestrationScenario.Median(removed):0.0} recovery_s={OrchestrationScenario.Median(recovered):0.0} requeued={OrchestrationScenario.Median(requeued):0}");
        Console.WriteLine($"recovery: {figures}");
        Results.Record(options, $"bench/run.sh recovery --in-flight {options.InFlight}" + (stableAfterSeconds is null ? "" : string.Create(CultureInfo.InvariantCulture, $" --stable-after {stableAfterSeconds}")), figures,
            $"median of {options.Repeats}; scaleout topology with 2 workers, one killed with SIGKILL under load; {timings}");
        return 0;
    }

    private static async Task<(double RemovedS, double RecoveryS, long Requeued)> KillUnderLoadAsync(BenchHost host, WorkerProcesses workers, Process victim, List<Frame> frames, int inFlight)
    {
        var submitted = new ConcurrentDictionary<string, long>();
        var completed = new ConcurrentDictionary<string, long>();
        using var slots = new SemaphoreSlim(inFlight);
        using var stop = new CancellationTokenSource();
        using var stopReading = new CancellationTokenSource();
        var consumer = Task.Run(async () =>
        {
            while (!stopReading.IsCancellationRequested)
            {
                TpResult result;
                try
                {
                    result = await host.Results.ReadAsync(stopReading.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                if (result.Status != RunStatus.Succeeded)
                {
                    throw new InvalidOperationException($"run {result.RunId} failed: {result.Error}");
                }

                completed[result.RunId] = Stopwatch.GetTimestamp();
                slots.Release();
            }
        });
        var producer = Task.Run(async () =>
        {
            var i = 0;
            while (!stop.IsCancellationRequested)
            {
                await slots.WaitAsync();
                var runId = Guid.CreateVersion7().ToString("N");
                submitted[runId] = Stopwatch.GetTimestamp();
                var accepted = await host.Submitter.SubmitAsync(frames[i++ % frames.Count], runId);
                if (accepted.Outcome != StartOutcome.Accepted)
                {
                    throw new InvalidOperationException($"run {runId} not accepted: {accepted.Outcome} {accepted.Error}");
                }
            }
        });

        // Steady load first, so the victim holds tasks when it dies.
        await Task.Delay(TimeSpan.FromSeconds(2));
        var requeuedBefore = (await host.QueueStatsAsync(ScaleoutScenario.Queue)).Requeued;
        var killedAt = Stopwatch.GetTimestamp();
        workers.Kill(victim);
        var inFlightAtKill = submitted.Keys.Where(id => !completed.ContainsKey(id)).ToList();

        var removedAt = 0L;
        var deadline = Stopwatch.StartNew();
        while (inFlightAtKill.Any(id => !completed.ContainsKey(id)) || removedAt == 0)
        {
            if (removedAt == 0 && (await host.QueueStatsAsync(ScaleoutScenario.Queue)).Workers == 1)
            {
                removedAt = Stopwatch.GetTimestamp();
            }

            if (deadline.Elapsed > TimeSpan.FromMinutes(3))
            {
                throw new TimeoutException("runs in flight at the kill did not finish within 3 minutes");
            }

            await Task.Delay(20);
        }

        var lastDone = inFlightAtKill.Max(id => completed[id]);
        await stop.CancelAsync();
        slots.Release(inFlight);
        await producer;
        while (completed.Count < submitted.Count)
        {
            await Task.Delay(20);
        }

        await stopReading.CancelAsync();
        await consumer;
        var requeued = (await host.QueueStatsAsync(ScaleoutScenario.Queue)).Requeued - requeuedBefore;
        return (Stopwatch.GetElapsedTime(killedAt, removedAt).TotalSeconds, Stopwatch.GetElapsedTime(killedAt, lastDone).TotalSeconds, requeued);
    }
}
