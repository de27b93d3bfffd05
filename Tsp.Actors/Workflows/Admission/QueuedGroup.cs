using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;

namespace Tsp.Actors.Workflows.Admission;

/// <summary>Where a queued run is: its group and its index there.</summary>
internal readonly record struct QueuedSlot(QueuedGroup Group, int Index);

/// <summary>Accepted runs waiting for their turn that were recorded by one write and share their
/// common fields: the first run's RunStarted, then only the ids (and source ids and slices) of the
/// others; or a series: the RunsStarted that recorded them, whose runs are found by offset and have no
/// entry in the queue's index.</summary>
internal sealed class QueuedGroup
{
    private List<string>? _moreRunIds;

    // Source ids of the runs after the first, kept only once one has one.
    private List<string>? _moreSourceIds;

    private List<FrameSlice>? _moreSlices;

    // Until the group's write completes: the starts to answer, repeats included, as runs of
    // consecutive answer slots for consecutive runs of the group (a StartRuns is one such run).
    private List<WaitingStarts>? _waiters;

    // Of a series: the runs that left the queue out of turn (recovery found events of them).
    private HashSet<int>? _taken;

    public QueuedGroup(RunStarted first, bool durable)
    {
        First = first;
        Durable = durable;
    }

    public QueuedGroup(RunsStarted series, bool durable)
    {
        Series = series;
        First = series.Common;
        Durable = durable;
    }

    /// <summary>The first run's RunStarted; of a series, only its common fields.</summary>
    public RunStarted First { get; }

    public RunsStarted? Series { get; }

    public string Project => First.Project;

    /// <summary>The frame string every run of the group reads from.</summary>
    public string FrameKey => First.FrameKey;

    public int Count => Series?.RunOffsets.Count ?? 1 + (_moreRunIds?.Count ?? 0);

    /// <summary>Runs before this index have had their turn (or left the queue earlier).</summary>
    public int Next { get; set; }

    /// <summary>Its runs' starts are written; only then may they be dispatched.</summary>
    public bool Durable { get; private set; }

    public long LastOffset => Series!.RunOffsets[^1];

    /// <summary>The index of the series run with <paramref name="offset"/>, or -1 (offsets increase).</summary>
    public int IndexOfOffset(long offset)
    {
        var offsets = Series!.RunOffsets;
        if (offsets.Count == 0 || offset < offsets[0] || offset > offsets[^1])
        {
            return -1;
        }

        var (low, high) = (0, offsets.Count - 1);
        while (low <= high)
        {
            var middle = low + ((high - low) / 2);
            var at = offsets[middle];
            if (at == offset)
            {
                return middle;
            }

            (low, high) = at < offset ? (middle + 1, high) : (low, middle - 1);
        }

        return -1;
    }

    public bool IsTaken(int index) => _taken?.Contains(index) == true;

    public void Take(int index) => (_taken ??= []).Add(index);

    public bool Shares(StartRun start, string workflowHash) =>
        Series is null
        && First.AcceptedAtUnixMs == start.AcceptedAtUnixMs
        && string.Equals(First.FrameKey, start.FrameKey, StringComparison.Ordinal)
        && string.Equals(First.Project, start.Project, StringComparison.Ordinal)
        && string.Equals(First.WorkflowHash, workflowHash, StringComparison.Ordinal);

    /// <returns>The run's index in the group.</returns>
    public int Add(string runId, string sourceId, FrameSlice slice)
    {
        (_moreSlices ??= []).Add(slice);
        var more = _moreRunIds ??= [];
        if (sourceId.Length > 0 && _moreSourceIds is null)
        {
            _moreSourceIds = [.. Enumerable.Repeat(string.Empty, more.Count)];
        }

        more.Add(runId);
        _moreSourceIds?.Add(sourceId);
        return more.Count;
    }

    public string RunIdAt(int index) => Series is { } series ? StartedGroups.RunIdOf(series, index) : index == 0 ? First.RunId : _moreRunIds![index - 1];

    public string SourceIdAt(int index) => Series is { } series ? StartedGroups.SourceIdAt(series, index) : index == 0 ? First.SourceId : _moreSourceIds?[index - 1] ?? string.Empty;

    public FrameSlice SliceAt(int index) => Series is { } series ? StartedGroups.SliceAt(series, index) : index == 0 ? StartedGroups.SliceOf(First) : _moreSlices![index - 1];

    public RunStarted StartedOf(int index)
    {
        if (Series is { } series)
        {
            return StartedGroups.StartedOf(series, index);
        }

        if (index == 0)
        {
            return First;
        }

        var started = First.Clone();
        started.RunId = RunIdAt(index);
        started.SourceId = SourceIdAt(index);
        (started.FrameOffset, started.FrameLength) = SliceAt(index);
        return started;
    }

    /// <summary>Answers slot <paramref name="slot"/> of <paramref name="answer"/> (and the
    /// <paramref name="count"/> - 1 after it) with the run at <paramref name="index"/> in this group
    /// (and those after it) once the group is written.</summary>
    public void WaitForWrite(StartAnswer answer, int slot, int index, int count = 1)
    {
        var waiters = _waiters ??= [];
        if (waiters.Count > 0)
        {
            ref var last = ref System.Runtime.InteropServices.CollectionsMarshal.AsSpan(waiters)[^1];
            if (ReferenceEquals(last.Answer, answer) && last.Slot + last.Count == slot && last.Index + last.Count == index)
            {
                last.Count += count;
                return;
            }
        }

        waiters.Add(new WaitingStarts(answer, slot, index) { Count = count });
    }

    /// <summary>The group's write completed: its runs may start, and every start waiting is Accepted.</summary>
    public void Written()
    {
        Durable = true;
        foreach (var waiting in _waiters ?? [])
        {
            for (var i = 0; i < waiting.Count; i++)
            {
                waiting.Answer.Set(waiting.Slot + i, StartOutcome.Accepted);
            }
        }

        _waiters = null;
    }

    private struct WaitingStarts(StartAnswer answer, int slot, int index)
    {
        public StartAnswer Answer { get; } = answer;

        public int Slot { get; } = slot;

        public int Index { get; } = index;

        public int Count { get; set; } = 1;
    }
}
