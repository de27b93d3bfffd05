namespace Tsp.Actors.Nodes;

/// <summary>
/// One queue's slots on one worker, lent to the routees that every orchestrator deployed here for that
/// queue. Capacity is the worker's: the sum of what the routees hold never exceeds it, whatever the
/// orchestrators do. Slots follow demand: routees whose queue has tasks waiting for a slot
/// (<see cref="SetWaiting"/>) split the capacity evenly by orchestrator; when no queue waits, every
/// orchestrator gets an even share so that the first task of any starts at once.
/// </summary>
/// <remarks>
/// A routee's share is told to its queue, which may dispatch up to it until it hears of a smaller one.
/// So a slot taken from one routee is lent to another only once it is free for sure: the routee holds
/// it (<see cref="Holder.Claim"/>) while it runs more tasks than its new share, or while its queue has
/// not acknowledged the smaller share (<see cref="Acknowledged"/>) — tasks the queue sent before that
/// are then already in hand, as messages between two actors keep their order.
/// </remarks>
/// <typeparam name="TRoutee">The routee's handle (an actor reference; tests use strings).</typeparam>
public sealed class SlotLedger<TRoutee>(int? servedSlots)
    where TRoutee : notnull
{
    private readonly List<Holder> _holders = [];
    private int _turn;

    // How many orchestrators share the slots now, and whether a share waits to grow: both change only
    // when the shares are worked out again, so a task's end reads them instead of working them out.
    private int _sharing = 1;
    private bool _growing;

    /// <summary>The worker's slots for the queue: those it was configured with, else one orchestrator's
    /// deployment here (the largest, should they differ); 0 when it serves the queue not at all.</summary>
    public int Capacity { get; private set; }

    public int InHand => _holders.Sum(h => h.InHand);

    public int Routees => _holders.Count;

    /// <summary>Slots that no routee holds, counting what each may still use.</summary>
    public int Unclaimed => Capacity - _holders.Sum(h => h.Claim);

    /// <summary>A routee of <paramref name="orchestrator"/>'s pool, deployed with <paramref name="deployedSlots"/> slots.</summary>
    public IReadOnlyList<(TRoutee Routee, int Slots)> Add(TRoutee routee, string orchestrator, int deployedSlots)
    {
        if (Find(routee) is not null)
        {
            return [];
        }

        var added = new Holder(routee, orchestrator, deployedSlots);
        _holders.Add(added);
        var changes = Rebalance();
        // A routee announces itself to its queue even with no slot yet: its queue must know it to tell
        // it that tasks wait.
        return changes.Any(c => EqualityComparer<TRoutee>.Default.Equals(c.Routee, routee)) ? changes : [.. changes, Tell(added, added.Granted)];
    }

    public IReadOnlyList<(TRoutee Routee, int Slots)> Remove(TRoutee routee)
    {
        _holders.RemoveAll(h => EqualityComparer<TRoutee>.Default.Equals(h.Routee, routee));
        return Rebalance();
    }

    /// <summary>The routee's queue has tasks that wait for a slot (or no longer has).</summary>
    public IReadOnlyList<(TRoutee Routee, int Slots)> SetWaiting(TRoutee routee, bool waiting)
    {
        if (Find(routee) is not { } holder || holder.Waiting == waiting)
        {
            return [];
        }

        holder.Waiting = waiting;
        return Rebalance();
    }

    /// <summary>The routee's queue heard of its share <paramref name="slots"/>.</summary>
    public IReadOnlyList<(TRoutee Routee, int Slots)> Acknowledged(TRoutee routee, int slots)
    {
        if (Find(routee) is not { } holder)
        {
            return [];
        }

        while (holder.Unacknowledged.TryDequeue(out var told) && told != slots)
        {
        }

        holder.Acknowledged = slots;
        return Lend();
    }

    /// <summary>A task starts (+1) or ends (−1) on the routee.</summary>
    public IReadOnlyList<(TRoutee Routee, int Slots)> CountTask(TRoutee routee, int change)
    {
        if (Find(routee) is not { } holder)
        {
            return [];
        }

        holder.InHand += change;
        if (change >= 0)
        {
            return [];
        }

        // Fewer slots than orchestrators that want them: the odd slots go round, one turn per task.
        // Otherwise a task's end costs nothing unless a share waits to grow.
        return Capacity % _sharing != 0 ? Rebalance(nextTurn: true) : _growing ? Lend() : [];
    }

    public int ShareOf(TRoutee routee) => Find(routee)?.Granted ?? 0;

    private Holder? Find(TRoutee routee)
    {
        foreach (var holder in _holders)
        {
            if (EqualityComparer<TRoutee>.Default.Equals(holder.Routee, routee))
            {
                return holder;
            }
        }

        return null;
    }

    /// <summary>New targets: shares above them shrink now; shares below grow as slots come free.</summary>
    private List<(TRoutee Routee, int Slots)> Rebalance(bool nextTurn = false)
    {
        Capacity = servedSlots ?? _holders.GroupBy(h => h.Orchestrator).Select(g => g.Sum(h => h.Deployed)).DefaultIfEmpty(0).Max();
        var sharing = Sharing();
        _sharing = Math.Max(1, sharing.Count);
        _turn = nextTurn ? _turn + 1 : _turn;
        foreach (var holder in _holders)
        {
            holder.Target = 0;
        }

        for (var o = 0; o < sharing.Count; o++)
        {
            var ofOrchestrator = Split(Capacity, sharing.Count, (o + _turn) % sharing.Count);
            var routees = _holders.Where(h => h.Orchestrator == sharing[o]).ToList();
            for (var r = 0; r < routees.Count; r++)
            {
                routees[r].Target = Split(ofOrchestrator, routees.Count, r);
            }
        }

        var changes = new List<(TRoutee, int)>();
        foreach (var holder in _holders.Where(h => h.Granted > h.Target))
        {
            changes.Add(Tell(holder, holder.Target));
        }

        changes.AddRange(Lend());
        return changes;
    }

    /// <summary>The orchestrators whose queues wait for slots; all of them when none waits.</summary>
    private List<string> Sharing()
    {
        var waiting = _holders.Where(h => h.Waiting).Select(h => h.Orchestrator).Distinct().ToList();
        return waiting.Count > 0 ? waiting : _holders.Select(h => h.Orchestrator).Distinct().ToList();
    }

    /// <summary>Grows the shares below their targets out of the slots nobody claims.</summary>
    private List<(TRoutee, int)> Lend()
    {
        var changes = new List<(TRoutee, int)>();
        var unclaimed = Unclaimed;
        foreach (var holder in _holders.Where(h => h.Granted < h.Target).OrderByDescending(h => h.Waiting))
        {
            if (unclaimed <= 0)
            {
                break;
            }

            var before = holder.Claim;
            var grown = holder.Granted + Math.Min(holder.Target - holder.Granted, unclaimed);
            changes.Add(Tell(holder, grown));
            unclaimed -= holder.Claim - before;
        }

        _growing = _holders.Exists(h => h.Granted < h.Target);
        return changes;
    }

    private static (TRoutee, int) Tell(Holder holder, int slots)
    {
        holder.Granted = slots;
        holder.Unacknowledged.Enqueue(slots);
        return (holder.Routee, slots);
    }

    /// <summary>Part <paramref name="index"/> of <paramref name="total"/> split <paramref name="parts"/> ways, the first ones taking the rest.</summary>
    private static int Split(int total, int parts, int index) => (total / parts) + (index < total % parts ? 1 : 0);

    private sealed class Holder(TRoutee routee, string orchestrator, int deployed)
    {
        public TRoutee Routee { get; } = routee;

        public string Orchestrator { get; } = orchestrator;

        public int Deployed { get; } = deployed;

        public int Target { get; set; }

        public int Granted { get; set; }

        public int Acknowledged { get; set; }

        /// <summary>Shares told to the queue that it has not acknowledged yet, oldest first.</summary>
        public Queue<int> Unacknowledged { get; } = new();

        public int InHand { get; set; }

        public bool Waiting { get; set; }

        /// <summary>What the routee may use: the most its queue may believe it has, or what it runs.</summary>
        public int Claim => Math.Max(InHand, Math.Max(Acknowledged, Unacknowledged.Count > 0 ? Math.Max(Granted, Unacknowledged.Max()) : Granted));
    }
}
