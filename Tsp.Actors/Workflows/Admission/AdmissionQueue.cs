using Tsp.Actors.Protocol;

namespace Tsp.Actors.Workflows.Admission;

/// <summary>
/// The runs a host has accepted that wait for their turn (<see cref="RunHostTuning.MaxActiveRuns"/>),
/// in order of acceptance, and what the host knows of run ids: which are queued, which finished
/// recently, and per Kafka partition the highest offset it has seen. Pure: the host records, it
/// decides nothing about journals or actors; it tells this class when a write completed
/// (<see cref="QueuedGroup.Written"/>) and when a write closed (<see cref="CloseWrite"/>).
/// </summary>
/// <remarks>
/// <para>A queued run costs little: the runs of one write that share their common fields are one
/// <see cref="QueuedGroup"/> (the first run's RunStarted, then an id each), and a Kafka partition's
/// runs that the host cannot know yet (their offsets are above every offset of their prefix it has
/// seen) are one series group with no index entry per run: a run of it is found by parsing its id and
/// a binary search of its prefix's series.</para>
/// <para>Only durable runs leave the queue in turn (writes complete in order, so a run not yet
/// durable has none behind it that is). A run whose events recovery finds leaves out of turn
/// (<see cref="Take"/>), and its group skips it when its turn comes.</para>
/// </remarks>
internal sealed class AdmissionQueue
{
    private readonly SegmentedDictionary<QueuedSlot> _queued = new();
    private readonly Dictionary<string, List<QueuedGroup>> _series = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<QueuedGroup>>.AlternateLookup<ReadOnlySpan<char>> _seriesByPrefix;
    private readonly Dictionary<string, long> _highestOffsets = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long>.AlternateLookup<ReadOnlySpan<char>> _highestOffsetsByPrefix;
    private readonly Queue<QueuedGroup> _order = new();
    private int _queuedInSeries;

    // The queue's last group while the write that records its runs is still open: runs accepted in
    // that write that share its common fields join it.
    private QueuedGroup? _open;

    public AdmissionQueue(int finishedRunMemory)
    {
        Finished = new RecentIds(finishedRunMemory);
        _seriesByPrefix = _series.GetAlternateLookup<ReadOnlySpan<char>>();
        _highestOffsetsByPrefix = _highestOffsets.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    /// <summary>Runs waiting for their turn.</summary>
    public int Count => _queued.Count + _queuedInSeries;

    /// <summary>Finished runs, newest last.</summary>
    public RecentIds Finished { get; }

    /// <summary>Where a queued run waits: by id, or in a queued series by its offset.</summary>
    public bool TryGet(string runId, out QueuedSlot slot)
    {
        if (_queued.TryGetValue(runId, out slot))
        {
            return true;
        }

        if (_queuedInSeries > 0 && KafkaRunId.TryParse(runId, out var prefix, out var offset) && _seriesByPrefix.TryGetValue(prefix, out var groups))
        {
            foreach (var group in groups)
            {
                var index = group.IndexOfOffset(offset);
                if (index >= group.Next && !group.IsTaken(index))
                {
                    slot = new QueuedSlot(group, index);
                    return true;
                }
            }
        }

        return false;
    }

    /// <summary>Keeps the highest offset per prefix true: called for every run id that enters the host
    /// (started, queued, waiting, restored or remembered as finished).</summary>
    public void Note(string runId)
    {
        if (KafkaRunId.TryParse(runId, out var prefix, out var offset))
        {
            NoteOffset(prefix, offset);
        }
    }

    /// <summary>The highest offset of a run with <paramref name="prefix"/> that the host has seen (-1: none).</summary>
    public long HighestOffset(ReadOnlySpan<char> prefix) => _highestOffsetsByPrefix.TryGetValue(prefix, out var highest) ? highest : -1;

    /// <summary>Whether runs [from..] of a series hold offsets that increase and are all above every
    /// run of their prefix that the host has seen: then none of them needs looking up.</summary>
    public bool IsUnknownSeries(RunsStarted series, int from)
    {
        var offsets = series.RunOffsets;
        if (from >= offsets.Count || offsets[from] <= HighestOffset(series.RunIdPrefix))
        {
            return false;
        }

        // All of them, not only [from..]: the runs before `from` start one by one, and must differ from these.
        for (var i = 1; i < offsets.Count; i++)
        {
            if (offsets[i] <= offsets[i - 1])
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Queues a newly accepted run behind the others, in the queue's last group when that
    /// group is recorded by the same write and shares the run's common fields.</summary>
    /// <param name="opened">The new group the run opened (the caller marks it written once its write
    /// completes), or null when it joined the open one.</param>
    public QueuedSlot Enqueue(StartRun start, string workflowHash, out QueuedGroup? opened)
    {
        QueuedSlot slot;
        if (_open is { } open && open.Shares(start, workflowHash))
        {
            slot = new QueuedSlot(open, open.Add(start.RunId, start.SourceId, StartedGroups.SliceOf(start)));
            opened = null;
        }
        else
        {
            opened = _open = new QueuedGroup(StartedGroups.NewStarted(start, workflowHash), durable: false);
            _order.Enqueue(opened);
            slot = new QueuedSlot(opened, 0);
        }

        _queued.Add(start.RunId, slot);
        Note(start.RunId);
        return slot;
    }

    /// <summary>Queues a series whole at the end of the queue (nothing joins it): its runs are found by offset.</summary>
    public QueuedGroup EnqueueSeries(RunsStarted series, bool durable)
    {
        var group = new QueuedGroup(series, durable);
        _order.Enqueue(group);
        if (!_series.TryGetValue(series.RunIdPrefix, out var groups))
        {
            _series.Add(series.RunIdPrefix, groups = []);
        }

        groups.Add(group);
        _queuedInSeries += group.Count;
        NoteOffset(series.RunIdPrefix, group.LastOffset);
        _open = null;
        return group;
    }

    /// <summary>Restores runs recorded as accepted (a journal event or a snapshot's queue) as queued,
    /// in order: the runs of a series the host has not seen as that series, the others one by one,
    /// leaving out those <paramref name="isHeld"/> says the host holds already.</summary>
    /// <returns>The group they now wait in, or null when none was left.</returns>
    public QueuedGroup? Restore(RunsStarted started, Func<string, bool> isHeld)
    {
        if (started.RunIdPrefix.Length > 0 && IsUnknownSeries(started, 0))
        {
            return EnqueueSeries(started, durable: true);
        }

        QueuedGroup? group = null;
        for (var i = 0; i < StartedGroups.RunCount(started); i++)
        {
            var runId = StartedGroups.RunIdOf(started, i);
            if (isHeld(runId) || TryGet(runId, out _))
            {
                continue;
            }

            Note(runId);
            if (group is null)
            {
                group = new QueuedGroup(StartedGroups.StartedOf(started, i), durable: true);
                _queued.Add(runId, new QueuedSlot(group, 0));
            }
            else
            {
                _queued.Add(runId, new QueuedSlot(group, group.Add(runId, StartedGroups.SourceIdAt(started, i), StartedGroups.SliceAt(started, i))));
            }
        }

        if (group is not null)
        {
            _order.Enqueue(group);
            _open = null;
        }

        return group;
    }

    /// <summary>Takes a queued run out of the queue (its turn came, or recovery found events of it).</summary>
    public RunStarted Take(string runId, QueuedSlot slot)
    {
        if (slot.Group.Series is null)
        {
            _queued.Remove(runId);
        }
        else
        {
            // A run before Next had its turn and is never looked up again; one after it leaves out of turn.
            if (slot.Index >= slot.Group.Next)
            {
                slot.Group.Take(slot.Index);
            }

            _queuedInSeries--;
        }

        return slot.Group.StartedOf(slot.Index);
    }

    /// <summary>The next durable run in turn, taken out of the queue; false when the queue is empty or
    /// its next run is not durable yet.</summary>
    public bool TryTakeNext(out RunStarted started)
    {
        while (_order.TryPeek(out var group))
        {
            if (group.Next == group.Count)
            {
                Retire(group);
                continue;
            }

            if (!group.Durable)
            {
                break;
            }

            var index = group.Next++;
            if (group.Series is not null)
            {
                if (!group.IsTaken(index))
                {
                    started = Take(group.RunIdAt(index), new QueuedSlot(group, index));
                    return true;
                }

                continue;
            }

            var runId = group.RunIdAt(index);
            if (_queued.TryGetValue(runId, out var slot) && slot.Group == group && slot.Index == index)
            {
                started = Take(runId, slot);
                return true;
            }
        }

        started = null!;
        return false;
    }

    /// <summary>The write that the open group's runs are recorded in was handed to the journal: runs
    /// accepted from now on go into a group of their own.</summary>
    public void CloseWrite() => _open = null;

    /// <summary>The runs still waiting for their turn, in order, as a snapshot holds them.</summary>
    public IEnumerable<RunsStarted> StillQueued() => _order.Select(StillQueued).Where(g => StartedGroups.RunCount(g) > 0);

    private RunsStarted StillQueued(QueuedGroup group)
    {
        if (group.Series is { } series)
        {
            var left = new RunsStarted { Common = series.Common, RunIdPrefix = series.RunIdPrefix };
            for (var i = group.Next; i < group.Count; i++)
            {
                if (!group.IsTaken(i))
                {
                    StartedGroups.CopyRuns(series, i, i + 1, left);
                }
            }

            return left;
        }

        var waiting = StartedGroups.EmptyLike(group.First);
        for (var i = group.Next; i < group.Count; i++)
        {
            var runId = group.RunIdAt(i);
            if (_queued.TryGetValue(runId, out var slot) && slot.Group == group && slot.Index == i)
            {
                StartedGroups.AddRun(waiting, runId, group.SourceIdAt(i), group.SliceAt(i));
            }
        }

        return waiting;
    }

    private void Retire(QueuedGroup group)
    {
        _order.Dequeue();
        if (ReferenceEquals(group, _open))
        {
            _open = null;
        }

        if (group.Series is { } series && _series.TryGetValue(series.RunIdPrefix, out var groups))
        {
            groups.Remove(group);
            if (groups.Count == 0)
            {
                _series.Remove(series.RunIdPrefix);
            }
        }
    }

    /// <summary>Per Kafka run id prefix, the highest offset seen (what a snapshot keeps).</summary>
    public IReadOnlyDictionary<string, long> HighestOffsets => _highestOffsets;

    public void NoteOffset(ReadOnlySpan<char> prefix, long offset)
    {
        ref var highest = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(_highestOffsetsByPrefix, prefix, out var existed);
        if (!existed || offset > highest)
        {
            highest = offset;
        }
    }
}
