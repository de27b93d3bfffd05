namespace Tsp.Actors.Dispatch;

/// <summary>How a project shares a queue with the others (from its workflow's <c>scheduling</c>).</summary>
/// <param name="Weight">Its share of the slots against projects of the same priority (≥ 1).</param>
/// <param name="Priority">Higher goes first; a project whose tasks wait unserved for
/// <see cref="FairLanes{T}.AgingStep"/> counts as one priority higher for each such wait, so no project starves.</param>
/// <param name="MaxShare">At most this share of the queue's slots run its tasks at once (0 &lt; x ≤ 1).</param>
public readonly record struct LaneShare(int Weight, int Priority, double MaxShare)
{
    public static readonly LaneShare Default = new(1, 0, 1.0);

    public static LaneShare Of(int weight, int priority, double maxShare) =>
        new(Math.Max(1, weight), priority, maxShare is > 0 and <= 1 ? maxShare : 1.0);
}

/// <summary>
/// The tasks of one queue that wait for a slot, in one lane per project (within a lane the deepest
/// tasks of the workflow first, each depth first in, first out: runs under way finish before new runs
/// take slots). The next task comes from the lanes of the highest effective priority, shared between
/// them by deficit round robin in proportion to their weights (each round a lane earns its weight in
/// tasks), skipping a lane whose project already holds its maximum share of the queue's slots.
/// Pure: the queue tells it what it dispatched and when a task left a worker.
/// </summary>
/// <typeparam name="T">What waits: the queue's entry for a task.</typeparam>
/// <param name="clock">Milliseconds, for the tasks' waiting time (default: <see cref="Environment.TickCount64"/>).</param>
public sealed class FairLanes<T>(Func<long>? clock = null)
    where T : class
{
    private readonly Func<long> _clock = clock ?? (() => Environment.TickCount64);

    /// <summary>A lane that has waited this long since it was last served (or began to wait) counts one
    /// priority higher, and one more for each further step. Counted from its last service, not from its
    /// oldest task's arrival: two backlogs that arrived together would otherwise age alike, and the
    /// lower priority would wait for the whole higher backlog.</summary>
    public static readonly TimeSpan AgingStep = TimeSpan.FromSeconds(10);

    private readonly Dictionary<string, Lane> _lanes = new(StringComparer.Ordinal);

    // Lanes with waiting tasks, in round-robin order; the round continues where the last one stopped.
    private readonly List<Lane> _active = [];
    private int _cursor;

    public int Count { get; private set; }

    /// <summary>Tasks of <paramref name="project"/> that wait for a slot.</summary>
    public int Waiting(string project) => _lanes.TryGetValue(project, out var lane) ? lane.Tasks.Count : 0;

    /// <summary>Tasks of <paramref name="project"/> at workers now.</summary>
    public int InFlight(string project) => _lanes.TryGetValue(project, out var lane) ? lane.InFlight : 0;

    /// <param name="depth">Where the task is in its workflow (<c>NodeTask.Depth</c>): deeper tasks of a
    /// lane go first, so its runs under way finish before new ones take slots.</param>
    public LinkedListNode<T> AddLast(string project, LaneShare share, T item, int depth = 0) => Enter(project, share).Add(item, depth, first: false, this);

    /// <summary>A task that goes back to the front of its lane's tasks of its depth (a retry, a worker lost).</summary>
    public LinkedListNode<T> AddFirst(string project, LaneShare share, T item, int depth = 0) => Enter(project, share).Add(item, depth, first: true, this);

    public void Remove(string project, LinkedListNode<T> node)
    {
        var lane = _lanes[project];
        lane.Tasks.Remove(node);
        Count--;
        if (lane.Tasks.Count == 0)
        {
            Deactivate(lane);
        }
    }

    /// <summary>A task of <paramref name="project"/> that <see cref="Take"/> gave a worker left it
    /// (answered, failed, taken back or cancelled).</summary>
    public void Left(string project)
    {
        if (!_lanes.TryGetValue(project, out var lane))
        {
            return;
        }

        lane.InFlight--;
        if (lane.InFlight <= 0 && !lane.Active)
        {
            _lanes.Remove(project);
        }
    }

    /// <summary>The task to dispatch next given the queue's <paramref name="slots"/>, without taking it
    /// (the queue takes it with <see cref="Take"/> once it has a worker); null when every waiting lane is
    /// at its maximum share.</summary>
    public (string Project, LinkedListNode<T> Node)? Next(int slots)
    {
        if (Count == 0)
        {
            return null;
        }

        if (_active.Count == 1)
        {
            // One project waiting (the common case): no choice to make, only its share to respect.
            var only = _active[0];
            return only.MayRun(slots) ? (only.Project, only.Tasks.First!) : null;
        }

        var now = _clock();
        int? top = null;
        foreach (var lane in _active)
        {
            if (lane.MayRun(slots) && lane.EffectivePriority(now) is var priority && (top is null || priority > top))
            {
                top = priority;
            }
        }

        if (top is not { } highest)
        {
            return null;
        }

        // Deficit round robin over the lanes of the highest priority, in the order of the active list,
        // from where the last turn ended; when none has credit left, each earns its weight.
        for (var round = 0; round < 2; round++)
        {
            for (var i = 0; i < _active.Count; i++)
            {
                var at = (_cursor + i) % _active.Count;
                var lane = _active[at];
                if (lane.Deficit >= 1 && lane.MayRun(slots) && lane.EffectivePriority(now) == highest)
                {
                    _cursor = at;
                    return (lane.Project, lane.Tasks.First!);
                }
            }

            foreach (var lane in _active)
            {
                if (lane.MayRun(slots) && lane.EffectivePriority(now) == highest)
                {
                    lane.Deficit += lane.Share.Weight;
                }
            }
        }

        throw new InvalidOperationException("a lane of the highest priority earned credit and was not chosen");
    }

    /// <summary>Takes what <see cref="Next"/> chose out of its lane: it goes to a worker now.</summary>
    public void Take(string project, LinkedListNode<T> node)
    {
        var lane = _lanes[project];
        lane.InFlight++;
        lane.ServedAt = _clock();
        lane.Deficit = Math.Max(0, lane.Deficit - 1);
        lane.Tasks.Remove(node);
        Count--;
        if (lane.Tasks.Count == 0)
        {
            Deactivate(lane);
        }
        else if (lane.Deficit < 1)
        {
            // Its turn is spent: the round goes on with the next lane.
            _cursor = (_active.IndexOf(lane) + 1) % Math.Max(1, _active.Count);
        }
    }

    private Lane Enter(string project, LaneShare share)
    {
        if (!_lanes.TryGetValue(project, out var lane))
        {
            lane = new Lane(project);
            _lanes.Add(project, lane);
        }

        // The newest task's share wins: a redeployed workflow may change it.
        lane.Share = share;
        return lane;
    }

    private void Activate(Lane lane)
    {
        if (!lane.Active)
        {
            lane.Active = true;
            lane.ServedAt = _clock();
            _active.Add(lane);
        }
    }

    private void Deactivate(Lane lane)
    {
        // An emptied lane keeps no credit (deficit round robin): it cannot save up a burst.
        lane.Deficit = 0;
        lane.Active = false;
        var index = _active.IndexOf(lane);
        _active.RemoveAt(index);
        if (index < _cursor)
        {
            _cursor--;
        }

        if (_active.Count == 0 || _cursor >= _active.Count)
        {
            _cursor = 0;
        }

        if (lane.InFlight == 0)
        {
            _lanes.Remove(lane.Project);
        }
    }

    private sealed class Lane(string project)
    {
        public string Project { get; } = project;

        public LaneTasks Tasks { get; } = new();

        public LaneShare Share { get; set; } = LaneShare.Default;

        public double Deficit { get; set; }

        public int InFlight { get; set; }

        public bool Active { get; set; }

        /// <summary>Below its maximum share of <paramref name="slots"/> (always at least one task).</summary>
        public bool MayRun(int slots) => Share.MaxShare >= 1 || InFlight < Math.Max(1, (int)(Share.MaxShare * slots));

        /// <summary>When it last sent a task to a worker, or began to wait.</summary>
        public long ServedAt { get; set; }

        public int EffectivePriority(long now) =>
            Share.Priority + (int)((now - ServedAt) / (long)AgingStep.TotalMilliseconds);

        public LinkedListNode<T> Add(T item, int depth, bool first, FairLanes<T> lanes)
        {
            var node = Tasks.Add(item, depth, first);
            lanes.Count++;
            lanes.Activate(this);
            return node;
        }
    }

    /// <summary>A lane's waiting tasks: first in, first out per depth, the deepest depth first.</summary>
    private sealed class LaneTasks
    {
        // A workflow deeper than this shares the last level: order within it is arrival.
        private const int MaxDepth = 31;
        private readonly List<LinkedList<T>> _levels = [];

        public int Count { get; private set; }

        public LinkedListNode<T>? First
        {
            get
            {
                for (var level = _levels.Count - 1; level >= 0; level--)
                {
                    if (_levels[level].First is { } first)
                    {
                        return first;
                    }
                }

                return null;
            }
        }

        public LinkedListNode<T> Add(T item, int depth, bool first)
        {
            var level = Math.Clamp(depth, 0, MaxDepth);
            while (_levels.Count <= level)
            {
                _levels.Add(new LinkedList<T>());
            }

            Count++;
            return first ? _levels[level].AddFirst(item) : _levels[level].AddLast(item);
        }

        public void Remove(LinkedListNode<T> node)
        {
            (node.List ?? throw new InvalidOperationException("the task is not waiting")).Remove(node);
            Count--;
        }
    }
}
