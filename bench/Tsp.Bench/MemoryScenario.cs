using System.Diagnostics;
using System.Globalization;
using Tsp.Actors.Hosting;
using Tsp.Actors.Protocol;
using Tsp.Actors.Workflows;

namespace Tsp.Bench;

/// <summary>
/// <c>memory</c>: what an orchestrator holds per run in flight, and whether it gives it back. The
/// orchestrator is this process (roles seed and orchestrator, SQLite journal, the <c>scaleout</c>
/// workflow: one sleep node). With no worker up, <c>--messages</c> runs (10,000) are submitted: every one
/// is accepted, recorded and waiting in its queue. Managed heap after a full GC is read then, and again
/// after a worker process has run them all and left (SIGTERM). Three rounds: per-run cost =
/// (heap in flight − heap before) / runs; growth = heap after round 3 − heap after round 1. An uncounted
/// round first sets the baseline.
/// </summary>
internal static class MemoryScenario
{
    private const int Rounds = 3;
    // Per host: 125 × 64 hosts = 8,000 finished ids, full after the uncounted round, so the rounds
    // measure what stays, not the memory filling up.
    private const int FinishedRunMemory = 125;

    public static async Task<int> RunAsync(BenchOptions options)
    {
        var project = $"mem-{Guid.NewGuid():N}"[..16];
        // A smaller finished-run memory (a bounded cache of ids, 8 hosts × this) fills up during the
        // warm-up, so that growth across the measured rounds would be a leak, not the cache filling.
        await using var host = await ScaleoutScenario.StartOrchestratorAsync(options, project, tsp => tsp.RunHost = tsp.RunHost with { FinishedRunMemory = FinishedRunMemory });
        await using var workers = new WorkerProcesses($"127.0.0.1:{host.Options.Port}", options.Redis, TspRoles.Cpu);
        var frames = Enumerable.Range(0, 16).Select(_ => OrchestrationScenario.RandomFrame(project, options.Size)).ToList();
        var active = (ActiveRunCounter)host.Services.GetService(typeof(ActiveRunCounter))!;

        // One full round first, uncounted: code paths warm, pools (Akka remoting's buffer arenas) and
        // bounded caches at their size.
        await RoundAsync(host, workers, frames, active, options.Messages, options.InFlight);
        var baseline = HeapBytes();
        var perRun = new List<double>();
        var after = new List<long>();
        for (var round = 1; round <= Rounds; round++)
        {
            var before = HeapBytes();
            var (inFlight, runs) = await RoundAsync(host, workers, frames, active, options.Messages, options.InFlight);
            after.Add(HeapBytes());
            perRun.Add((double)(inFlight - before) / runs);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  round {round}: before={before >> 20} MiB in_flight={inFlight >> 20} MiB ({runs} runs, {perRun[^1]:0} B/run) after={after[^1] >> 20} MiB rss={Environment.WorkingSet >> 20} MiB"));
        }

        var figures = string.Create(CultureInfo.InvariantCulture,
            $"bytes_per_run={OrchestrationScenario.Median(perRun):0} baseline_mib={baseline / 1048576.0:0.0} after_round1_mib={after[0] / 1048576.0:0.0} after_round3_mib={after[^1] / 1048576.0:0.0} growth_kib={(after[^1] - after[0]) / 1024.0:0}");
        Console.WriteLine($"memory: {figures}");
        Results.Record(options, $"bench/run.sh memory --messages {options.Messages}", figures,
            $"median of {Rounds} rounds after an uncounted one; managed heap of the orchestrator (this process) after a full GC; {options.Messages} runs accepted and waiting (no worker up; at most RunHost:MaxActiveRuns={host.Options.RunHost.MaxActiveRuns} over {host.Options.RunHosts} hosts dispatched, the rest queued), then run by a Tsp.GpuNode process; RunHost:FinishedRunMemory={FinishedRunMemory}; SQLite journal, {options.Size} B frames, redis-server");
        return 0;
    }

    /// <summary>Submits the runs with no worker up (all wait), reads the heap, then lets a worker run
    /// them and leave. Returns the heap with the runs in flight and how many were in flight.</summary>
    private static async Task<(long HeapInFlight, long Runs)> RoundAsync(BenchHost host, WorkerProcesses workers, List<Frame> frames, ActiveRunCounter active, int runs, int concurrency)
    {
        using var submitting = new SemaphoreSlim(concurrency);
        var submissions = new List<Task<string>>(runs);
        for (var i = 0; i < runs; i++)
        {
            await submitting.WaitAsync();
            submissions.Add(SubmitAsync(host, frames[i % frames.Count], submitting));
        }

        var runIds = await Task.WhenAll(submissions);
        submissions.Clear();
        // Each run host dispatches at most its part of MaxActiveRuns; the rest of its runs wait in it, queued.
        var options = host.Options;
        var dispatched = runIds.GroupBy(id => RunMessageExtractor.HostOf(id, options.RunHosts)).Sum(g => Math.Min(g.Count(), Math.Max(1, options.RunHost.MaxActiveRuns / options.RunHosts)));
        var clock = Stopwatch.StartNew();
        while ((await host.QueueStatsAsync(ScaleoutScenario.Queue)).Pending < dispatched || active.Count < runs)
        {
            if (clock.Elapsed > TimeSpan.FromMinutes(1))
            {
                throw new TimeoutException($"{runs} accepted runs ({dispatched} of them dispatched) did not all reach their host and queue within a minute");
            }

            await Task.Delay(50);
        }

        var inFlight = active.Count;
        var heap = HeapBytes();

        var worker = workers.Start();
        for (var received = 0; received < runs; received++)
        {
            var result = await host.Results.ReadAsync();
            if (result.Status != RunStatus.Succeeded)
            {
                throw new InvalidOperationException($"run {result.RunId} failed: {result.Error}");
            }
        }

        // SIGTERM: the worker drains (nothing left) and leaves; its routees go with it.
        await workers.StopAsync(worker);
        await host.WaitForWorkersAsync(ScaleoutScenario.Queue, 0, TimeSpan.FromSeconds(60));
        return (heap, inFlight);
    }

    private static async Task<string> SubmitAsync(BenchHost host, Frame frame, SemaphoreSlim submitting)
    {
        try
        {
            var runId = Guid.CreateVersion7().ToString("N");
            var accepted = await host.Submitter.SubmitAsync(frame, runId);
            if (accepted.Outcome != StartOutcome.Accepted)
            {
                throw new InvalidOperationException($"run {runId} not accepted: {accepted.Outcome} {accepted.Error}");
            }

            return runId;
        }
        finally
        {
            submitting.Release();
        }
    }

    /// <summary>Live bytes after a full compacting collection: the heap's size less its free space.
    /// Not GC.GetTotalMemory, which the segments GC (libclrgc.so, what orchestrator processes run)
    /// reports at about twice the live bytes in .NET 10 (1 million strings of 128 B: 247 B each by
    /// GetTotalMemory, 127 B by this, the same under either GC).</summary>
    private static long HeapBytes()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        var info = GC.GetGCMemoryInfo(GCKind.FullBlocking);
        return info.HeapSizeBytes - info.FragmentedBytes;
    }
}
