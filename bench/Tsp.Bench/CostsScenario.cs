using System.Diagnostics;
using System.Globalization;
using Akka.Actor;
using Akka.Configuration;
using Akka.Persistence;
using Tsp.Actors.Hosting;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;

namespace Tsp.Bench;

/// <summary>
/// <c>costs</c>: what one operation of each kind a run is made of costs, alone, at <c>--in-flight</c>
/// at once — the inputs of the capacity model in docs/scaling.md. For each: operations per second, and
/// CPU per operation on TSP's side (this process) and on Redis's (redis-server's /proc times).
/// <list type="bullet">
/// <item>a frame written to Redis and read back (<c>--size</c> bytes, 64 KiB) whole into an array, and
/// as a source node reads it (its range, into a pooled buffer), and a node's small output (100 bytes);</item>
/// <item>a result appended to a project's results log (the Lua script: marker, counter, log);</item>
/// <item>a finished run's five small outputs written by its host in one batch (<c>RedisStore.PutFinishedBlobsAsync</c>:
/// short nodes leave them to it), and five outputs given the finished-blob TTL (<c>RedisStore.ExpireFinishedAsync</c>: what longer nodes wrote);</item>
/// <item>a journal write of one event (300 B) by each of <c>--in-flight</c> persistent actors, one
/// after the other, on the SQLite journal: a run host that holds one run.</item>
/// </list>
/// </summary>
internal static class CostsScenario
{
    public static async Task<int> RunAsync(BenchOptions options)
    {
        await using var store = await RedisStore.ConnectAsync(options.Redis);
        var redisPid = RedisPid(options.Redis);
        var project = $"costs-{Guid.NewGuid():N}"[..16];
        var frame = new byte[options.Size];
        Random.Shared.NextBytes(frame);
        // As many frames as are in flight, written over and over: a running cluster reuses the memory
        // of finished runs' frames, while 20,000 fresh 64 KiB keys would mostly measure redis-server
        // faulting in new pages.
        var keys = Enumerable.Range(0, options.InFlight).Select(i => RedisKeys.Frames(project, $"f{i}")).ToList();

        var put = await MeasureAsync(options, redisPid, i => store.PutBlobAsync(keys[i % keys.Count], frame));
        var get = await MeasureAsync(options, redisPid, i => store.GetBlobAsync(keys[i % keys.Count]));
        // The same frame as a source node reads it: its byte range, into a pooled buffer (RedisStore.ReadInputsAsync).
        var input = (IReadOnlyList<NodeInput>[])[.. keys.Select(k => (IReadOnlyList<NodeInput>)[new NodeInput { Key = k, Offset = 0, Length = (uint)options.Size }])];
        var leased = await MeasureAsync(options, redisPid, async i =>
        {
            using var reads = await store.ReadInputsAsync(input[i % keys.Count]);
        });
        // A node's small output (a checksum, scores, boxes): 100 bytes written and read.
        var small = new byte[100];
        var smallPut = await MeasureAsync(options, redisPid, i => store.PutBlobAsync(keys[i % keys.Count], small));
        var smallGet = await MeasureAsync(options, redisPid, i => store.GetBlobAsync(keys[i % keys.Count]));
        await store.DeleteBlobsAsync(keys);
        // A finished run's five outputs get the finished-blob TTL (ResultPublisher), as many runs as are in flight.
        var outputs = Enumerable.Range(0, options.InFlight)
            .Select(r => SeedNodes.Select(n => RedisKeys.NodeOutput(project, $"r{r}", n)).ToArray()).ToList();
        // A finished run's five small outputs that their short nodes left to the host, written by it with
        // the finished-blob TTL in one batch (ResultPublisher).
        var held = outputs.Select(o => o.Select(k => KeyValuePair.Create(k, (ReadOnlyMemory<byte>)small)).ToList()).ToList();
        var heldPut = await MeasureAsync(options, redisPid, i => store.PutFinishedBlobsAsync(held[i % held.Count]));
        await Task.WhenAll(outputs.SelectMany(o => o).Select(k => store.PutBlobAsync(k, small)));
        var expiry = await MeasureAsync(options, redisPid, i => store.ExpireFinishedAsync(outputs[i % outputs.Count]));
        await store.DeleteBlobsAsync([.. outputs.SelectMany(o => o)]);
        var append = await MeasureAsync(options, redisPid, i => store.AppendResultAsync(Result(project, i)));
        await BenchRedis.DeleteProjectAsync(options.Redis, project);
        var journal = await JournalAsync(options);

        var figures = string.Create(CultureInfo.InvariantCulture,
            $"frame_put_per_s={put.PerSecond:0} frame_put_cpu_us={put.ClientUs:0}+{put.RedisUs:0} frame_get_per_s={get.PerSecond:0} frame_get_cpu_us={get.ClientUs:0}+{get.RedisUs:0} frame_input_read_cpu_us={leased.ClientUs:0}+{leased.RedisUs:0} small_put_per_s={smallPut.PerSecond:0} small_put_cpu_us={smallPut.ClientUs:0}+{smallPut.RedisUs:0} small_get_per_s={smallGet.PerSecond:0} small_get_cpu_us={smallGet.ClientUs:0}+{smallGet.RedisUs:0} result_append_per_s={append.PerSecond:0} result_append_cpu_us={append.ClientUs:0}+{append.RedisUs:0} held_outputs_put_cpu_us={heldPut.ClientUs:0}+{heldPut.RedisUs:0} finished_expiry_cpu_us={expiry.ClientUs:0}+{expiry.RedisUs:0} journal_write_per_s={journal.PerSecond:0} journal_write_cpu_us={journal.ClientUs:0}");
        Console.WriteLine($"costs: {figures}");
        Results.Record(options, $"bench/run.sh costs --messages {options.Messages} --size {options.Size} --in-flight {options.InFlight}", figures,
            $"each operation alone, {options.InFlight} at once; cpu_us = this process + redis-server per operation (journal: this process, SQLite inside it); redis-server on loopback, SQLite journal of 300 B events, one write at a time per persistent actor");
        return 0;
    }

    private static readonly string[] SeedNodes = ["pre", "model_a", "model_b", "join", "post"];

    private sealed record Cost(double PerSecond, double ClientUs, double RedisUs);

    private static TpResult Result(string project, int i)
    {
        var result = new TpResult { Project = project, RunId = $"r{i}", Status = RunStatus.Succeeded, SourceId = "cam" };
        foreach (var node in SeedNodes)
        {
            result.Nodes.Add(new NodeResult { NodeId = node, Status = NodeStatus.Completed, Metrics = { ["score"] = 0.5 } });
        }

        return result;
    }

    private static async Task<Cost> MeasureAsync(BenchOptions options, int? redisPid, Func<int, Task> operation)
    {
        var (cpu, redisCpu, clock) = (Process.GetCurrentProcess().TotalProcessorTime, RedisCpu(redisPid), Stopwatch.StartNew());
        var next = -1;
        await Task.WhenAll(Enumerable.Range(0, options.InFlight).Select(async _ =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < options.Messages)
            {
                await operation(i);
            }
        }));
        var seconds = clock.Elapsed.TotalSeconds;
        var client = (Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalMicroseconds / options.Messages;
        var server = (RedisCpu(redisPid) - redisCpu).TotalMicroseconds / options.Messages;
        return new Cost(options.Messages / seconds, client, server);
    }

    private static async Task<Cost> JournalAsync(BenchOptions options)
    {
        var path = Path.Combine(Path.GetTempPath(), $"tsp-costs-{Guid.NewGuid():N}.db");
        var config = ConfigurationFactory.ParseString(TspHostingExtensions.SqliteJournalHocon(path) + "\nakka.loglevel = WARNING");
        using var system = ActorSystem.Create("costs", config);
        var writers = Enumerable.Range(0, options.InFlight).Select(i => system.ActorOf(Props.Create(() => new Writer($"writer-{i}")))).ToList();
        // Recovery and the journal's schema first, uncounted.
        await Task.WhenAll(writers.Select(w => w.Ask<int>(new Write(1), TimeSpan.FromSeconds(60))));
        var perWriter = Math.Max(1, options.Messages / options.InFlight);
        var (cpu, clock) = (Process.GetCurrentProcess().TotalProcessorTime, Stopwatch.StartNew());
        await Task.WhenAll(writers.Select(w => w.Ask<int>(new Write(perWriter), TimeSpan.FromMinutes(5))));
        var writes = perWriter * writers.Count;
        var result = new Cost(writes / clock.Elapsed.TotalSeconds, (Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalMicroseconds / writes, 0);
        await system.Terminate();
        foreach (var file in Directory.GetFiles(Path.GetDirectoryName(path)!, Path.GetFileName(path) + "*"))
        {
            File.Delete(file);
        }

        return result;
    }

    private sealed record Write(int Count);

    /// <summary>Persists one event at a time, as a run host that holds one run writes its events.</summary>
    private sealed class Writer : ReceivePersistentActor
    {
        private static readonly byte[] Event = new byte[300];
        private int _left;
        private IActorRef? _asker;

        public Writer(string id)
        {
            PersistenceId = id;
            Command<Write>(write =>
            {
                (_left, _asker) = (write.Count, Sender);
                Next();
            });
        }

        public override string PersistenceId { get; }

        private void Next()
        {
            if (_left-- == 0)
            {
                _asker!.Tell(0);
                return;
            }

            PersistAsync(Event, _ => Next());
        }
    }

    internal static int? RedisPid(string endpoint)
    {
        using var redis = StackExchange.Redis.ConnectionMultiplexer.Connect(endpoint + ",allowAdmin=true");
        var info = redis.GetServer(redis.GetEndPoints()[0]).Info("server").SelectMany(g => g).FirstOrDefault(p => p.Key == "process_id").Value;
        return int.TryParse(info, NumberStyles.None, CultureInfo.InvariantCulture, out var pid) && File.Exists($"/proc/{pid}/stat") ? pid : null;
    }

    /// <summary>redis-server's user + system CPU so far (0 where it is not a local process).</summary>
    internal static TimeSpan RedisCpu(int? pid)
    {
        if (pid is not { } id)
        {
            return TimeSpan.Zero;
        }

        // Fields after the command name (in parentheses): utime and stime are the 12th and 13th.
        var stat = File.ReadAllText($"/proc/{id}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        var ticks = long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
        return TimeSpan.FromSeconds(ticks / 100.0);
    }
}
