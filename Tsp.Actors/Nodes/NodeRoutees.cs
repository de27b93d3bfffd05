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
public sealed record SlotShare(int Slots, int Capacity);

/// <summary>
/// The node routees living in this process (whatever orchestrator deployed them). Capacity belongs to
/// the worker: a queue's slots on this member are those the worker serves it with (<c>--queues
/// gpu-model=2</c>), else what one orchestrator's pool deploys here (its routees × their slots); every
/// orchestrator's routees of that queue share them by demand (<see cref="SlotLedger{TRoutee}"/>), each
/// announcing its part (<see cref="SlotShare"/>) to its own queue. A second orchestrator adds routees
/// here, not slots; a queue the worker does not serve gets none. On SIGTERM the host
/// drains them before the member leaves the cluster: each tells its queue to send no more, finishes
/// what it holds, and only then does the member leave — so no task of a worker that is stopped in
/// an orderly way is retried elsewhere.
/// </summary>
public sealed class NodeRoutees : IDisposable
{
    private readonly ConcurrentDictionary<IActorRef, byte> _routees = new();
    private readonly Dictionary<string, QueueSlots> _queues = new(StringComparer.Ordinal);
    private readonly ServedQueues _served;
    private readonly IDisposable[] _gauges;

    public NodeRoutees(ServedQueues served)
    {
        _served = served;
        _gauges =
        [
            Gauge(TspMetrics.WorkerSlots, q => q.Ledger.Capacity),
            Gauge(TspMetrics.WorkerTasks, q => q.InHand),
            Gauge(TspMetrics.WorkerTasksPeak, q => q.Peak),
        ];
    }

    public int Count => _routees.Count;

    /// <summary>A routee of <paramref name="queue"/> deployed by the orchestrator of <paramref name="queueRef"/>
    /// with <paramref name="slots"/> slots; it is told its share of the member's slots.</summary>
    internal void Add(IActorRef routee, string queue, IActorRef queueRef, int slots)
    {
        _routees.TryAdd(routee, 0);
        Change(queue, ledger => ledger.Add(routee, queueRef.Path.Address.ToString(), slots), create: true);
    }

    internal void Remove(IActorRef routee, string queue)
    {
        _routees.TryRemove(routee, out _);
        Change(queue, ledger => ledger.Remove(routee));
    }

    /// <summary>The routee's queue has tasks waiting for a slot, or no longer has.</summary>
    internal void SetWaiting(IActorRef routee, string queue, bool waiting) => Change(queue, ledger => ledger.SetWaiting(routee, waiting));

    /// <summary>The routee's queue heard of its share.</summary>
    internal void Acknowledged(IActorRef routee, string queue, int slots) => Change(queue, ledger => ledger.Acknowledged(routee, slots));

    /// <summary>A task of <paramref name="queue"/> starts (+1) or ends (−1) on <paramref name="routee"/>.</summary>
    internal void CountTask(IActorRef routee, string queue, int change)
    {
        // Twice per task: no closure, and the common case tells nobody anything.
        lock (_queues)
        {
            if (!_queues.TryGetValue(queue, out var slotsOf))
            {
                return;
            }

            var shares = slotsOf.Ledger.CountTask(routee, change);
            slotsOf.InHand += change;
            slotsOf.Peak = Math.Max(slotsOf.Peak, slotsOf.InHand);
            foreach (var (to, share) in shares)
            {
                to.Tell(new SlotShare(share, slotsOf.Ledger.Capacity));
            }
        }
    }

    private void Change(string queue, Func<SlotLedger<IActorRef>, IReadOnlyList<(IActorRef Routee, int Slots)>> change, bool create = false)
    {
        lock (_queues)
        {
            if (!_queues.TryGetValue(queue, out var slotsOf))
            {
                if (!create)
                {
                    return;
                }

                slotsOf = new QueueSlots(new SlotLedger<IActorRef>(_served.SlotsFor(queue)));
                _queues.Add(queue, slotsOf);
            }

            foreach (var (routee, share) in change(slotsOf.Ledger))
            {
                routee.Tell(new SlotShare(share, slotsOf.Ledger.Capacity));
            }
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

    private sealed class QueueSlots(SlotLedger<IActorRef> ledger)
    {
        public SlotLedger<IActorRef> Ledger { get; } = ledger;

        public int InHand { get; set; }

        public int Peak { get; set; }
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
