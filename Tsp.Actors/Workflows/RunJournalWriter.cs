using Tsp.Actors.Protocol;
using Tsp.Actors.Telemetry;
using Tsp.Actors.Workflows.Admission;

namespace Tsp.Actors.Workflows;

/// <summary>
/// How a run host writes its journal: the events it decides while it works through its mailbox are
/// one <see cref="RunEventBatch"/> entry (at most <see cref="MaxEventsPerWrite"/>), flushed by a
/// message behind everything already queued; each event may carry what to do once it is durable.
/// Starts that share their common fields join the open write's last <see cref="RunsStarted"/>.
/// An event nothing waits on (<see cref="RecordLate"/>) waits for the host's next write instead of
/// asking for one, up to a delay: most join a write made anyway.
/// </summary>
/// <remarks>The host hands in how to persist (its <c>PersistAsync</c>), how to defer (its
/// <c>DeferAsync</c>, for an action after writes already handed to the journal), how to ask for a
/// flush (a message to itself) and for a late one (a timer); it hears of every write handed to the
/// journal through <c>onFlushed</c>.</remarks>
internal sealed class RunJournalWriter(
    Action<RunEventBatch, Action?[]> persist,
    Action<Action> defer,
    Action requestFlush,
    Action requestLateFlush,
    Action<RunEventBatch> onFlushed)
{
    public const int MaxEventsPerWrite = 512;

    private readonly List<RunEvent> _events = [];
    private readonly List<Action?> _afterWrite = [];
    private readonly List<RunEvent> _late = [];
    private readonly List<Action?> _afterLateWrite = [];

    /// <summary>Queues an event for the next write; <paramref name="afterWrite"/> runs once it is durable.</summary>
    /// <remarks>A full write is flushed before <paramref name="e"/> is added, not after, so that
    /// <paramref name="e"/> is always in the open write when this returns (a queued group's write
    /// callback relies on it).</remarks>
    public void Record(RunEvent e, Action? afterWrite)
    {
        if (_events.Count >= MaxEventsPerWrite)
        {
            Flush();
        }

        if (_events.Count == 0)
        {
            requestFlush();
        }

        _events.Add(e);
        _afterWrite.Add(afterWrite);
    }

    /// <summary>Queues an event for the next write, whenever that is: it asks for none sooner than the
    /// late flush. Written after the events recorded with it, so only an event that no later event of
    /// its run may precede belongs here (a run's last).</summary>
    public void RecordLate(RunEvent e, Action? afterWrite)
    {
        if (_late.Count >= MaxEventsPerWrite)
        {
            Flush();
        }

        if (_late.Count == 0 && _events.Count == 0)
        {
            requestLateFlush();
        }

        _late.Add(e);
        _afterLateWrite.Add(afterWrite);
    }

    /// <summary>Records a run's start: added to the open write's last event when that is a
    /// <see cref="RunsStarted"/> the run shares its common fields with (the runs of one StartRuns),
    /// otherwise as a new one.</summary>
    public void RecordStart(StartRun start, string workflowHash, Action? afterWrite)
    {
        if (_events.Count > 0 && _events[^1].RunsStarted is { } open && StartedGroups.Shares(open, start, workflowHash))
        {
            StartedGroups.AddRun(open, start.RunId, start.SourceId, StartedGroups.SliceOf(start));
            if (afterWrite is not null)
            {
                AfterLast(afterWrite);
            }

            return;
        }

        var e = StartedGroups.NewGroup(start, workflowHash);
        StartedGroups.AddRun(e, start.RunId, start.SourceId, StartedGroups.SliceOf(start));
        Record(new RunEvent { RunsStarted = e }, afterWrite);
    }

    /// <summary>Runs <paramref name="action"/> once everything recorded so far is durable (late events
    /// aside: they may be written later).</summary>
    public void AfterRecorded(Action action)
    {
        if (_events.Count > 0)
        {
            AfterLast(action);
        }
        else
        {
            // Already handed to the journal: deferred handlers run after the pending writes' handlers.
            defer(action);
        }
    }

    /// <summary>Hands what is recorded to the journal as one entry.</summary>
    public void Flush()
    {
        if (_events.Count == 0 && _late.Count == 0)
        {
            return;
        }

        var batch = new RunEventBatch();
        batch.Events.Add(_events);
        batch.Events.Add(_late);
        _afterWrite.AddRange(_afterLateWrite);
        var afterWrite = _afterWrite.ToArray();
        if (TspMetrics.JournalWrite.Enabled)
        {
            var handedOver = System.Diagnostics.Stopwatch.GetTimestamp();
            afterWrite[^1] += () => TspMetrics.JournalWrite.Record(System.Diagnostics.Stopwatch.GetElapsedTime(handedOver).TotalSeconds);
        }
        _events.Clear();
        _afterWrite.Clear();
        _late.Clear();
        _afterLateWrite.Clear();
        persist(batch, afterWrite);
        onFlushed(batch);
    }

    private void AfterLast(Action action) => _afterWrite[^1] = _afterWrite[^1] is { } earlier ? earlier + action : action;
}
