using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Tracing;
using System.Globalization;

namespace Tsp.Bench;

/// <summary>
/// <c>TSP_BENCH_ALLOC=1</c>: what the measured repeat allocated per run (ingest: per record), by type, and each collection's
/// generation, duration, promoted bytes and where its marking started from (stacks, handles, older
/// generations' cards…), and the time threads took to stop for it, from the runtime's own events in
/// this process (no tool to attach); and how many of the slowest runs were in flight across a
/// collection's pause (<see cref="PrintTail"/>). Allocation is sampled by the runtime, one event per ~100 KB, so a type's figure is good to
/// about that over the repeat. docs/profiling.md says when to use it.
/// </summary>
internal sealed class AllocationTicks : EventListener
{
    private const long BytesPerTick = 100_000;
    private readonly ConcurrentDictionary<string, long> _bytes = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<string> _collections = new();
    // GCMarkWithType's root kinds, by their number in the event.
    private static readonly string[] RootKinds = ["stack", "finalizer queue", "handles", "older generation", "sized ref", "overflow", "dependent handles", "new finalizer queue", "steal", "big"];
    private readonly Dictionary<string, long> _marked = new(StringComparer.Ordinal);
    // GCStart's Reason, by its number: why the runtime collected.
    private static readonly string[] Reasons = ["small allocation", "induced", "low memory", "empty", "large allocation", "out of space (small heap)", "out of space (large heap)", "induced, not forced", "stress", "low memory, blocking", "induced, compacting", "low memory host", "pm full", "low memory host, blocking", "bgc tuning soh", "bgc tuning loh", "bgc stepping", "induced, aggressive", "pinned object heap allocation"];
    private string _reason = "";
    // Each pause, from threads asked to stop to threads restarted, on the Stopwatch's clock (event
    // times are DateTimes; this pair maps one onto the other).
    private readonly ConcurrentQueue<(long From, long To)> _pauses = new();
    private readonly (DateTime Utc, long Ticks) _origin = (DateTime.UtcNow, Stopwatch.GetTimestamp());
    private long _pauseFrom;
    private DateTime _started;
    private DateTime _suspending;
    private double _suspendMs;
    private int _generation;
    private string _collection = "";

    protected override void OnEventSourceCreated(EventSource source)
    {
        if (source.Name == "Microsoft-Windows-DotNETRuntime")
        {
            // The GC keyword; verbose for the allocation ticks.
            EnableEvents(source, EventLevel.Verbose, (EventKeywords)0x1);
        }
    }

    protected override void OnEventWritten(EventWrittenEventArgs e)
    {
        var name = e.EventName ?? "";
        if (name.StartsWith("GCAllocationTick", StringComparison.Ordinal))
        {
            var large = Convert.ToInt32(Payload(e, "AllocationKind"), CultureInfo.InvariantCulture) == 1;
            var type = $"{Payload(e, "TypeName")}";
            if (type.StartsWith('<') && e.PayloadNames!.Contains("TypeID"))
            {
                // A nested type (a closure, an async state machine) is named without its declaring type.
                type = NestedTypeName(Convert.ToUInt64(Payload(e, "TypeID"), CultureInfo.InvariantCulture)) ?? type;
            }

            if (type == "System.Byte[]" && e.PayloadNames!.Contains("ObjectSize"))
            {
                // Buffers of one size are usually one cause (a frame, a pooled segment): say the size.
                type += $" (~{SizeClass(Convert.ToInt64(Payload(e, "ObjectSize"), CultureInfo.InvariantCulture))})";
            }

            _bytes.AddOrUpdate($"{type}{(large ? " (large object heap)" : "")}", BytesPerTick, (_, bytes) => bytes + BytesPerTick);
        }
        else if (name.StartsWith("GCSuspendEEBegin", StringComparison.Ordinal))
        {
            _suspending = e.TimeStamp;
            // Threads also stop for other reasons (the tiered JIT, a debugger); only a collection's
            // stop (reason 1) or its preparation (6) counts as a pause here.
            _pauseFrom = Convert.ToInt32(Payload(e, "Reason"), CultureInfo.InvariantCulture) is 1 or 6 ? StopwatchTicks(e.TimeStamp) : 0;
        }
        else if (name.StartsWith("GCRestartEEEnd", StringComparison.Ordinal) && _pauseFrom != 0)
        {
            _pauses.Enqueue((_pauseFrom, StopwatchTicks(e.TimeStamp)));
            _pauseFrom = 0;
        }
        else if (name.StartsWith("GCSuspendEEEnd", StringComparison.Ordinal))
        {
            _suspendMs = (e.TimeStamp - _suspending).TotalMilliseconds;
        }
        else if (name.StartsWith("GCStart", StringComparison.Ordinal))
        {
            _started = e.TimeStamp;
            _generation = Convert.ToInt32(Payload(e, "Depth"), CultureInfo.InvariantCulture);
            _reason = Convert.ToInt32(Payload(e, "Reason"), CultureInfo.InvariantCulture) is var reason && reason >= 0 && reason < Reasons.Length ? Reasons[reason] : "reason " + Payload(e, "Reason");
            _marked.Clear();
        }
        else if (name.StartsWith("GCMarkWithType", StringComparison.Ordinal))
        {
            var kind = Convert.ToInt32(Payload(e, "Type"), CultureInfo.InvariantCulture);
            var root = kind >= 0 && kind < RootKinds.Length ? RootKinds[kind] : $"root {kind}";
            _marked[root] = _marked.GetValueOrDefault(root) + Convert.ToInt64(Payload(e, "Bytes"), CultureInfo.InvariantCulture) / 1024;
        }
        else if (name.StartsWith("GCEnd", StringComparison.Ordinal))
        {
            _collection = string.Create(CultureInfo.InvariantCulture, $"gen{_generation} ({_reason}) {(e.TimeStamp - _started).TotalMilliseconds:0.0} ms");
        }
        else if (name.StartsWith("GCHeapStats", StringComparison.Ordinal))
        {
            // Promoted out of gen0 and out of gen1.
            var marked = string.Join(", ", _marked.Where(m => m.Value > 0).OrderByDescending(m => m.Value).Select(m => $"{m.Value} from {m.Key}"));
            _collections.Enqueue(string.Create(CultureInfo.InvariantCulture, $"{_collection} ({Kib(e, "TotalPromotedSize0")}+{Kib(e, "TotalPromotedSize1")} KiB promoted; marked KiB {marked}; threads stopped in {_suspendMs:0.0} ms)"));
        }
    }

    /// <summary>Forgets what was heard so far: what follows is the measured window.</summary>
    public void Clear()
    {
        _bytes.Clear();
        _collections.Clear();
        _pauses.Clear();
    }

    public void Print(int runs)
    {
        Console.WriteLine($"    allocated {_bytes.Values.Sum() / runs} B per run; the largest types:");
        foreach (var (type, bytes) in _bytes.OrderByDescending(kv => kv.Value).Take(40))
        {
            Console.WriteLine($"    {bytes / runs,8} B  {type}");
        }

        Console.WriteLine("    collections:");
        foreach (var collection in _collections)
        {
            Console.WriteLine($"      {collection}");
        }
    }

    /// <summary>Of the runs slower than <paramref name="p99Ms"/>, how many were in flight across a
    /// collection's pause, and the same share of all runs: when nearly every slow run and few others
    /// were, the tail is the collections'.</summary>
    /// <param name="spans">Each run's submit and result times (Stopwatch ticks).</param>
    public void PrintTail(IReadOnlyList<(long Submitted, long Done)> spans, double p99Ms)
    {
        var pauses = _pauses.ToArray();
        bool AcrossPause((long Submitted, long Done) run) => pauses.Any(p => p.From < run.Done && p.To > run.Submitted);
        var byPause = spans.ToLookup(AcrossPause);
        var slow = spans.Where(r => Stopwatch.GetElapsedTime(r.Submitted, r.Done).TotalMilliseconds > p99Ms).ToList();
        var slowAcross = slow.Count(AcrossPause);
        var allAcross = byPause[true].Count();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"    tail: {slowAcross} of the {slow.Count} runs above p99 were in flight across a collection's pause; {100.0 * allAcross / Math.Max(1, spans.Count):0.0} % of all runs were ({pauses.Length} pauses, {pauses.Sum(p => Stopwatch.GetElapsedTime(p.From, p.To).TotalMilliseconds):0} ms)"));
        // How wide the latencies are without the pauses: what a pause is added to.
        string Spread(IEnumerable<(long Submitted, long Done)> runs)
        {
            var ms = runs.Select(r => Stopwatch.GetElapsedTime(r.Submitted, r.Done).TotalMilliseconds).ToList();
            return ms.Count == 0 ? "none" : string.Create(CultureInfo.InvariantCulture, $"p50 {OrchestrationScenario.Percentile(ms, 0.5):0.0} p75 {OrchestrationScenario.Percentile(ms, 0.75):0.0} p90 {OrchestrationScenario.Percentile(ms, 0.9):0.0} p99 {OrchestrationScenario.Percentile(ms, 0.99):0.0} ms");
        }

        Console.WriteLine($"    latency of runs clear of pauses: {Spread(byPause[false])}; across one: {Spread(byPause[true])}");
        // Whether the slow runs clear of pauses finished together (one stall held them) or apart.
        var start = spans.Min(r => r.Submitted);
        var windows = slow.Where(r => !AcrossPause(r))
            .GroupBy(r => (long)(Stopwatch.GetElapsedTime(start, r.Done).TotalMilliseconds / 50))
            .OrderByDescending(g => g.Count()).ToList();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"    slow runs clear of pauses by when they finished (50 ms windows from the first submission): {string.Join(", ", windows.Take(8).Select(g => $"{g.Count()} at {g.Key * 50} ms"))}{(windows.Count > 8 ? $", {windows.Skip(8).Sum(g => g.Count())} in {windows.Count - 8} more" : "")}"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"    pauses began at (ms from the first submission): {string.Join(", ", pauses.Where(p => p.To > start).Select(p => $"{Stopwatch.GetElapsedTime(start, p.From).TotalMilliseconds:0}"))}"));
    }

    private long StopwatchTicks(DateTime at) =>
        _origin.Ticks + (long)((at.ToUniversalTime() - _origin.Utc).Ticks * ((double)Stopwatch.Frequency / TimeSpan.TicksPerSecond));

    /// <summary>The full name of the type whose method table is at <paramref name="typeId"/>: a
    /// nested type's event names only the type itself. Null when it cannot be resolved.</summary>
    private static string? NestedTypeName(ulong typeId)
    {
        try
        {
            return Type.GetTypeFromHandle(RuntimeTypeHandle.FromIntPtr((nint)typeId))?.FullName is { } full
                ? full[(full.LastIndexOf('.') + 1)..]
                : null;
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    private static string SizeClass(long bytes) =>
        bytes >= 1 << 20 ? $"{bytes >> 20} MiB" : bytes >= 1 << 10 ? $"{bytes >> 10} KiB" : $"{bytes} B";

    private static object? Payload(EventWrittenEventArgs e, string name) => e.Payload![e.PayloadNames!.IndexOf(name)];

    private static long Kib(EventWrittenEventArgs e, string name) => Convert.ToInt64(Payload(e, name), CultureInfo.InvariantCulture) / 1024;
}
