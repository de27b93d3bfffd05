using System.Globalization;
using Tsp.Actors.Dispatch;
using Tsp.Actors.Hosting;

namespace Tsp.Bench;

/// <summary>
/// <c>scaleout</c>: does adding worker processes add throughput? An orchestrator (this process, roles
/// seed and orchestrator, SQLite journal) and 1, 2, then 3 Tsp.GpuNode processes (role cpu) on
/// loopback; one latency-bound node (<c>sleep</c> 20 ms) and 4 slots per worker, so a worker can do at
/// most 200 runs/s whatever its cores. <c>--messages</c> runs per worker (1,000) are measured after a
/// warm-up, <c>--in-flight</c> (64) at a time. Efficiency of N workers = rate(N) / (N × rate(1)).
/// Then again with a CPU-bound node after the sleep node (<c>spin</c>, 2 ms of a busy core per run):
/// what adding processes gives when cores, not slots, are the limit.
/// </summary>
internal static class ScaleoutScenario
{
    public const string Queue = "cpu-scale";
    public const int SlotsPerWorker = 4;
    public const double SleepMs = 20;
    private const int MaxWorkers = 3;

    public const double SpinMs = 2;

    public static async Task<int> RunAsync(BenchOptions options)
    {
        var (sleepOnly, sleepCpu) = await RatesAsync(options, spinMs: 0);
        var (withSpin, spinCpu) = await RatesAsync(options, SpinMs);
        var ideal = SlotsPerWorker * 1000 / SleepMs;
        var figures = string.Create(CultureInfo.InvariantCulture,
            $"w1_per_s={sleepOnly[1]:0} w2_per_s={sleepOnly[2]:0} w3_per_s={sleepOnly[3]:0} efficiency_2={sleepOnly[2] / (2 * sleepOnly[1]):0.00} efficiency_3={sleepOnly[3] / (3 * sleepOnly[1]):0.00} w1_of_ideal={sleepOnly[1] / ideal:0.00} spin_w1_per_s={withSpin[1]:0} spin_w2_per_s={withSpin[2]:0} spin_w3_per_s={withSpin[3]:0} spin_efficiency_2={withSpin[2] / (2 * withSpin[1]):0.00} spin_efficiency_3={withSpin[3] / (3 * withSpin[1]):0.00} cpu_us_per_run={sleepCpu[1]:0}/{sleepCpu[2]:0}/{sleepCpu[3]:0} spin_cpu_us_per_run={spinCpu[1]:0}/{spinCpu[2]:0}/{spinCpu[3]:0} cores={Environment.ProcessorCount}");
        Console.WriteLine($"scaleout: {figures}");
        Results.Record(options, $"bench/run.sh scaleout --messages {options.Messages} --in-flight {options.InFlight}", figures,
            $"median of {options.Repeats}; orchestrator in the bench process (SQLite), 1–3 Tsp.GpuNode processes on loopback, one sleep {SleepMs:0} ms node ({SlotsPerWorker} slots per worker, ideal {ideal:0} runs/s per worker), then with a spin {SpinMs:0} ms node after it; {options.Size} B frames, redis-server");
        return 0;
    }

    /// <returns>Median runs/s by number of workers (index 1–3), and the CPU per run of every process
    /// (orchestrator, workers, redis-server) in µs.</returns>
    private static async Task<(double[] Rates, double[] CpuUs)> RatesAsync(BenchOptions options, double spinMs)
    {
        var rates = Enumerable.Range(0, MaxWorkers + 1).Select(_ => new List<double>()).ToArray();
        var cpus = Enumerable.Range(0, MaxWorkers + 1).Select(_ => new List<double>()).ToArray();
        var redisPid = CostsScenario.RedisPid(options.Redis);
        for (var repeat = 0; repeat < options.Repeats; repeat++)
        {
            var project = $"scale{repeat}-{Guid.NewGuid():N}"[..16];
            await using var host = await StartOrchestratorAsync(options, project, spinMs: spinMs);
            await using var workers = new WorkerProcesses($"127.0.0.1:{host.Options.Port}", options.Redis, TspRoles.Cpu);
            var frames = Enumerable.Range(0, 16).Select(_ => OrchestrationScenario.RandomFrame(project, options.Size)).ToList();
            for (var n = 1; n <= MaxWorkers; n++)
            {
                workers.Start();
                await host.WaitForWorkersAsync(Queue, n, TimeSpan.FromSeconds(60));
                await OrchestrationScenario.RunAsync(host, frames, 100 * n, options.InFlight);
                TimeSpan Cpu() => System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime + CostsScenario.RedisCpu(redisPid)
                    + workers.Running.Aggregate(TimeSpan.Zero, (sum, worker) => sum + worker.TotalProcessorTime);
                var before = Cpu();
                var (rate, _) = await OrchestrationScenario.RunAsync(host, frames, options.Messages * n, options.InFlight);
                rates[n].Add(rate);
                cpus[n].Add((Cpu() - before).TotalMicroseconds / (options.Messages * n));
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {(spinMs > 0 ? "sleep+spin" : "sleep")} repeat {repeat + 1}: workers={n} runs_per_s={rate:0}"));
            }
        }

        return ([.. rates.Select(r => r.Count > 0 ? OrchestrationScenario.Median(r) : 0)], [.. cpus.Select(c => c.Count > 0 ? OrchestrationScenario.Median(c) : 0)]);
    }

    /// <summary>This process as the seed and orchestrator, with no node roles: the routees come with workers.</summary>
    /// <param name="spinMs">Above 0: a CPU-bound node of that many milliseconds after the sleep node.</param>
    public static Task<BenchHost> StartOrchestratorAsync(BenchOptions options, string project, Action<TspOptions>? configure = null, double spinMs = 0) =>
        BenchHost.StartAsync(options, project, $$"""
            project: {{project}}
            nodes:
              - { id: work, processor: sleep, role: cpu, queue: {{Queue}}, params: { ms: {{SleepMs.ToString(CultureInfo.InvariantCulture)}} } }
            {{(spinMs > 0 ? $"  - {{ id: burn, processor: spin, role: cpu, queue: {Queue}, after: [work], params: {{ ms: {spinMs.ToString(CultureInfo.InvariantCulture)} }} }}" : "")}}
            """, tsp =>
        {
            tsp.Roles = [TspRoles.Seed, TspRoles.Orchestrator];
            tsp.Port = TspHostingExtensions.FreePort();
            tsp.Queues[Queue] = new QueueOptions { Role = TspRoles.Cpu, RouteesPerMember = 1, SlotsPerRoutee = SlotsPerWorker };
            configure?.Invoke(tsp);
        });
}
