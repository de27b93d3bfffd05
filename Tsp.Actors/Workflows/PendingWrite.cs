using Tsp.Actors.Protocol;

namespace Tsp.Actors.Workflows;

/// <summary>The events a run host has decided since its last journal write, each with what to do once
/// it is durable. They are written together as one <see cref="RunEventBatch"/>: the events that arise
/// while a host works through its mailbox cost one journal entry, not one each.</summary>
internal sealed class PendingWrite
{
    private readonly List<RunEvent> _events = [];
    private readonly List<Action?> _afterWrite = [];

    public int Count => _events.Count;

    /// <summary>The newest event, or null.</summary>
    public RunEvent? Last => _events.Count > 0 ? _events[^1] : null;

    public void Add(RunEvent e, Action? afterWrite)
    {
        _events.Add(e);
        _afterWrite.Add(afterWrite);
    }

    /// <summary>Runs <paramref name="action"/> after the newest event is durable, after what already waits for it.</summary>
    public void AfterLast(Action action) => _afterWrite[^1] = _afterWrite[^1] is { } earlier ? earlier + action : action;

    public (RunEventBatch Batch, Action?[] AfterWrite) Take()
    {
        var batch = new RunEventBatch();
        batch.Events.Add(_events);
        var afterWrite = _afterWrite.ToArray();
        _events.Clear();
        _afterWrite.Clear();
        return (batch, afterWrite);
    }
}
