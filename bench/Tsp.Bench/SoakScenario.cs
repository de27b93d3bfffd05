using System.Collections;
using System.Diagnostics;
using System.Globalization;
using Tsp.Actors.Hosting;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;

namespace Tsp.Bench;

/// <summary>
/// <c>soak --minutes N</c>: the <c>scaleout</c> topology with two workers, first driven flat out to find
/// its maximum, then for N minutes at 80 % of it (open loop: runs are submitted on a clock, not when
/// others finish), with one worker killed (SIGKILL) every 60 s and a new one started at once. Each
/// minute prints its runs, p50/p99 latency, and the orchestrator's heap (after a full collection) and
/// RSS; the end counts every run: lost (no result), duplicates (a run delivered or logged twice), and
/// fits heap and RSS to a line (slope per minute, from the second minute on: the first fills caches).
/// </summary>
internal static class SoakScenario
{
    private static readonly TimeSpan KillEvery = TimeSpan.FromSeconds(60);

    public static async Task<int> RunAsync(BenchOptions options, int minutes)
    {
        var project = $"soak-{Guid.NewGuid():N}"[..16];
        await using var host = await ScaleoutScenario.StartOrchestratorAsync(options, project, tsp =>
            tsp.Storage = tsp.Storage with { ResultsRetention = 10_000_000 });
        await using var workers = new WorkerProcesses($"127.0.0.1:{host.Options.Port}", options.Redis, TspRoles.Cpu);
        workers.Start();
        workers.Start();
        await host.WaitForWorkersAsync(ScaleoutScenario.Queue, 2, TimeSpan.FromSeconds(60));
        var frames = Enumerable.Range(0, 16).Select(_ => OrchestrationScenario.RandomFrame(project, options.Size)).ToList();

        await OrchestrationScenario.RunAsync(host, frames, 500, options.InFlight);
        var (maximum, _) = await OrchestrationScenario.RunAsync(host, frames, 3000, options.InFlight);
        var rate = 0.8 * maximum;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"soak: maximum {maximum:0} runs/s, driving {rate:0} runs/s for {minutes} min, a worker killed every {KillEvery.TotalSeconds:0} s"));

        var soak = new Soak(host, frames, rate, minutes);
        var (submitted, completed, deliveredTwice) = await soak.RunAsync(workers);
        var loggedTwice = await CountLoggedTwiceAsync(host.Services.GetService(typeof(RedisStore)) as RedisStore ?? throw new InvalidOperationException("no RedisStore"), project, submitted);
        var lost = submitted - completed;
        var duplicates = deliveredTwice + loggedTwice;
        var heapSlope = Slope(soak.HeapKib);
        var rssSlope = Slope(soak.RssKib);
        var line = string.Create(CultureInfo.InvariantCulture,
            $"soak: minutes={minutes} runs={submitted} lost={lost} duplicates={duplicates} kills={soak.Kills} heap_slope_kib_per_min={heapSlope:0} rss_slope_kib_per_min={rssSlope:0}");
        Console.WriteLine(line);
        Results.Record(options, $"bench/run.sh soak --minutes {minutes}", line["soak: ".Length..] + string.Create(CultureInfo.InvariantCulture, $" max_per_s={maximum:0} rate_per_s={rate:0} p99_ms_per_min={string.Join('/', soak.P99Ms.Select(p => p.ToString("0", CultureInfo.InvariantCulture)))}"),
            $"scaleout topology (orchestrator in the bench process, SQLite; 2 Tsp.GpuNode workers, sleep {ScaleoutScenario.SleepMs:0} ms, {ScaleoutScenario.SlotsPerWorker} slots each), 80 % of the measured maximum, one worker killed (SIGKILL) every 60 s and replaced; heap/RSS of the orchestrator process, slopes from minute 2 on");
        return lost == 0 && duplicates == 0 ? 0 : 1;
    }

    /// <summary>Runs in the results log more than once (a result published twice after a crash).</summary>
    private static async Task<long> CountLoggedTwiceAsync(RedisStore store, string project, long submitted)
    {
        var seen = new BitArray(checked((int)submitted));
        long twice = 0;
        var from = 1L;
        while (true)
        {
            var page = await store.ReadResultsAsync(project, from, 10_000);
            if (page.Count == 0)
            {
                return twice;
            }

            foreach (var logged in page)
            {
                if (Soak.RunNumber(logged.Result.RunId) is { } n && n < submitted)
                {
                    twice += seen[(int)n] ? 1 : 0;
                    seen[(int)n] = true;
                }
            }

            from = page[^1].Position + 1;
        }
    }

    /// <summary>Least-squares slope per minute of the samples from the second minute on.</summary>
    private static double Slope(List<double> perMinute)
    {
        var samples = perMinute.Count > 2 ? perMinute.Skip(1).ToList() : perMinute;
        if (samples.Count < 2)
        {
            return 0;
        }

        var meanX = (samples.Count - 1) / 2.0;
        var meanY = samples.Average();
        var numerator = samples.Select((y, x) => (x - meanX) * (y - meanY)).Sum();
        var denominator = samples.Select((_, x) => (x - meanX) * (x - meanX)).Sum();
        return numerator / denominator;
    }

    /// <summary>One soak: run ids are numbers (soak000000042), so what it keeps per run is a timestamp
    /// in a preallocated array and a bit: its own memory stays flat and does not blur the orchestrator's.</summary>
    private sealed class Soak(BenchHost host, List<Frame> frames, double rate, int minutes)
    {
        private const string Prefix = "soak";
        private readonly long[] _submittedAt = new long[(int)Math.Ceiling(rate * minutes * 60 * 1.05) + 1024];
        private readonly BitArray _done = new((int)Math.Ceiling(rate * minutes * 60 * 1.05) + 1024);
        private readonly List<double> _latencies = [];
        private long _submitted;
        private long _completed;
        private long _deliveredTwice;
        private long _refused;

        public List<double> HeapKib { get; } = [];

        public List<double> RssKib { get; } = [];

        public List<double> P99Ms { get; } = [];

        public int Kills { get; private set; }

        public static long? RunNumber(string runId) =>
            runId.StartsWith(Prefix, StringComparison.Ordinal) && long.TryParse(runId.AsSpan(Prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : null;

        public async Task<(long Submitted, long Completed, long DeliveredTwice)> RunAsync(WorkerProcesses workers)
        {
            using var stopReading = new CancellationTokenSource();
            var reading = Task.Run(() => ReadAsync(stopReading.Token));
            var clock = Stopwatch.StartNew();
            var duration = TimeSpan.FromMinutes(minutes);
            var nextKill = KillEvery / 2;
            var nextMinute = TimeSpan.FromMinutes(1);
            var submissions = new List<Task>();
            while (clock.Elapsed < duration)
            {
                var due = (long)(clock.Elapsed.TotalSeconds * rate);
                while (_submitted < due && _submitted < _submittedAt.Length)
                {
                    submissions.Add(SubmitAsync(_submitted++));
                }

                submissions.RemoveAll(t => t.IsCompleted);
                if (clock.Elapsed >= nextKill)
                {
                    // The oldest worker dies without a word; a new one takes its place at once.
                    workers.Kill(workers.Running[0]);
                    workers.Start();
                    Kills++;
                    nextKill += KillEvery;
                }

                if (clock.Elapsed >= nextMinute)
                {
                    ReportMinute((int)nextMinute.TotalMinutes);
                    nextMinute += TimeSpan.FromMinutes(1);
                }

                await Task.Delay(10);
            }

            await Task.WhenAll(submissions);
            // The last runs finish; a run still without a result after this is lost.
            var drain = Stopwatch.StartNew();
            while (Interlocked.Read(ref _completed) < _submitted && drain.Elapsed < TimeSpan.FromSeconds(90))
            {
                await Task.Delay(100);
            }

            ReportMinute(minutes);
            await stopReading.CancelAsync();
            await reading;
            if (_refused > 0)
            {
                throw new InvalidOperationException($"{_refused} submissions were not accepted");
            }

            return (_submitted, Interlocked.Read(ref _completed), Interlocked.Read(ref _deliveredTwice));
        }

        private async Task SubmitAsync(long n)
        {
            Volatile.Write(ref _submittedAt[n], Stopwatch.GetTimestamp());
            var accepted = await host.Submitter.SubmitAsync(frames[(int)(n % frames.Count)], $"{Prefix}{n:D9}");
            if (accepted.Outcome != StartOutcome.Accepted)
            {
                Interlocked.Increment(ref _refused);
                Console.Error.WriteLine($"  run {n}: {accepted.Outcome} {accepted.Error}");
            }
        }

        private async Task ReadAsync(CancellationToken stop)
        {
            while (!stop.IsCancellationRequested)
            {
                TpResult result;
                try
                {
                    result = await host.Results.ReadAsync(stop);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                var now = Stopwatch.GetTimestamp();
                if (RunNumber(result.RunId) is not { } n || n >= _submittedAt.Length)
                {
                    continue;
                }

                if (result.Status != RunStatus.Succeeded)
                {
                    Console.Error.WriteLine($"  run {result.RunId} {result.Status}: {result.Error}");
                }

                lock (_latencies)
                {
                    if (_done[(int)n])
                    {
                        _deliveredTwice++;
                        continue;
                    }

                    _done[(int)n] = true;
                    _latencies.Add(Stopwatch.GetElapsedTime(Volatile.Read(ref _submittedAt[n]), now).TotalMilliseconds);
                }

                Interlocked.Increment(ref _completed);
            }
        }

        private void ReportMinute(int minute)
        {
            List<double> latencies;
            lock (_latencies)
            {
                latencies = [.. _latencies];
                _latencies.Clear();
            }

            var heap = GC.GetTotalMemory(forceFullCollection: true) / 1024.0;
            using var self = Process.GetCurrentProcess();
            var rss = self.WorkingSet64 / 1024.0;
            HeapKib.Add(heap);
            RssKib.Add(rss);
            var p50 = latencies.Count > 0 ? OrchestrationScenario.Percentile(latencies, 0.5) : 0;
            var p99 = latencies.Count > 0 ? OrchestrationScenario.Percentile(latencies, 0.99) : 0;
            P99Ms.Add(p99);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  minute {minute}: runs={latencies.Count} p50_ms={p50:0} p99_ms={p99:0} heap_kib={heap:0} rss_kib={rss:0} kills={Kills} in_flight={_submitted - Interlocked.Read(ref _completed)}"));
        }
    }
}
