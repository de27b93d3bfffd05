using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Akka.Actor;
using Microsoft.Extensions.Logging;
using Tsp.Actors.Telemetry;

namespace Tsp.Actors.Nodes;

/// <summary>Asks a node routee to stop taking tasks and answer <see cref="NodeDrained"/> once it holds none.</summary>
public sealed record DrainNode
{
    public static readonly DrainNode Instance = new();
}

/// <param name="FinishedWhileDraining">Tasks the routee finished after the drain began (those it held, and any its queue sent before it heard of the drain).</param>
public sealed record NodeDrained(string Worker, int FinishedWhileDraining);

/// <summary>Tells a routee its share of its member's slots for its queue (it announces it to its queue).</summary>
public sealed record SlotShare(int Slots);

/// <summary>
/// The node routees living in this process (whatever orchestrator deployed them). Capacity belongs to
/// the worker: a queue's slots on this member are what one orchestrator's pool deploys here (its
/// routees × their slots), and every orchestrator's routees of that queue share them, each announcing
/// its part (<see cref="SlotShare"/>) to its own queue. A second orchestrator adds routees here, not
/// slots. On SIGTERM the host
/// drains them before the member leaves the cluster: each tells its queue to send no more, finishes
/// what it holds, and only then does the member leave — so no task of a worker that is stopped in
/// an orderly way is retried elsewhere.
/// </summary>
public sealed class NodeRoutees : IDisposable
{
    private readonly ConcurrentDictionary<IActorRef, byte> _routees = new();
    private readonly Dictionary<string, QueueSlots> _queues = new(StringComparer.Ordinal);
    private readonly IDisposable[] _gauges;

    public NodeRoutees()
    {
        _gauges =
        [
            Gauge(TspMetrics.WorkerSlots, q => q.Capacity),
            Gauge(TspMetrics.WorkerTasks, q => Volatile.Read(ref q.InHand)),
            Gauge(TspMetrics.WorkerTasksPeak, q => Volatile.Read(ref q.Peak)),
        ];
    }

    public int Count => _routees.Count;

    /// <summary>A routee of <paramref name="queue"/> deployed by the orchestrator of <paramref name="queueRef"/>
    /// with <paramref name="slots"/> slots: every routee of the queue here is told its new share.</summary>
    internal void Add(IActorRef routee, string queue, IActorRef queueRef, int slots)
    {
        _routees.TryAdd(routee, 0);
        lock (_queues)
        {
            if (!_queues.TryGetValue(queue, out var slotsOf))
            {
                slotsOf = new QueueSlots();
                _queues.Add(queue, slotsOf);
            }

            slotsOf.Routees.Add((routee, queueRef.Path.Address, slots));
            Share(slotsOf);
        }
    }

    internal void Remove(IActorRef routee, string queue)
    {
        _routees.TryRemove(routee, out _);
        lock (_queues)
        {
            if (_queues.TryGetValue(queue, out var slotsOf) && slotsOf.Routees.RemoveAll(r => r.Routee.Equals(routee)) > 0)
            {
                Share(slotsOf);
            }
        }
    }

    /// <summary>A task of <paramref name="queue"/> starts (+1) or ends (−1) on this member.</summary>
    internal void CountTask(string queue, int change)
    {
        QueueSlots? slotsOf;
        lock (_queues)
        {
            slotsOf = _queues.GetValueOrDefault(queue);
        }

        if (slotsOf is null)
        {
            return;
        }

        var inHand = Interlocked.Add(ref slotsOf.InHand, change);
        int peak;
        while (inHand > (peak = Volatile.Read(ref slotsOf.Peak)) && Interlocked.CompareExchange(ref slotsOf.Peak, inHand, peak) != peak)
        {
        }
    }

    /// <summary>The queue's capacity here is one orchestrator's deployment (the largest, should they
    /// differ); it is split evenly over every routee of the queue here, the first ones taking the rest.</summary>
    private static void Share(QueueSlots slotsOf)
    {
        slotsOf.Capacity = slotsOf.Routees.GroupBy(r => r.Orchestrator).Select(g => g.Sum(r => r.Slots)).DefaultIfEmpty(0).Max();
        var count = slotsOf.Routees.Count;
        for (var i = 0; i < count; i++)
        {
            var share = (slotsOf.Capacity / count) + (i < slotsOf.Capacity % count ? 1 : 0);
            slotsOf.Routees[i].Routee.Tell(new SlotShare(share));
        }
    }

    private IDisposable Gauge(GaugeFamily family, Func<QueueSlots, long> value) =>
        family.Observe(() =>
        {
            lock (_queues)
            {
                return _queues.Select(q => new Measurement<long>(value(q.Value), new KeyValuePair<string, object?>("queue", q.Key))).ToList();
            }
        });

    public void Dispose()
    {
        foreach (var gauge in _gauges)
        {
            gauge.Dispose();
        }
    }

    private sealed class QueueSlots
    {
        public List<(IActorRef Routee, Address Orchestrator, int Slots)> Routees { get; } = [];

        public int Capacity { get; set; }

        public int InHand;

        public int Peak;
    }

    /// <summary>Drains every routee, waiting at most <paramref name="timeout"/>; a routee that does not
    /// finish in time is logged (its tasks are then retried elsewhere when the member leaves).</summary>
    public async Task DrainAsync(TimeSpan timeout, ILogger logger)
    {
        var routees = _routees.Keys.ToList();
        if (routees.Count == 0)
        {
            return;
        }

        logger.LogInformation("draining {Count} node routee(s): no new tasks, finishing the ones in hand (at most {Timeout:0} s)", routees.Count, timeout.TotalSeconds);
        var drains = routees.Select(async routee =>
        {
            try
            {
                return (await routee.Ask<NodeDrained>(DrainNode.Instance, timeout)).FinishedWhileDraining;
            }
            catch (Exception e) when (e is AskTimeoutException or TaskCanceledException)
            {
                logger.LogWarning("node routee {Routee} did not drain within {Timeout:0} s; its tasks will be retried elsewhere", routee.Path, timeout.TotalSeconds);
                return 0;
            }
        });
        var finished = (await Task.WhenAll(drains)).Sum();
        logger.LogInformation("node routees drained: {Finished} task(s) finished while draining", finished);
    }
}
