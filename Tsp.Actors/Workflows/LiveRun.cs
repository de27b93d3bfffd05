using Tsp.Actors.Protocol;
using Tsp.Actors.Workflows.Admission;

namespace Tsp.Actors.Workflows;

/// <summary>A run its host is walking: its state, the events that made it (what a snapshot records),
/// and what the host has dispatched and not yet heard back about.</summary>
internal sealed class LiveRun(RunState state)
{
    public RunState State { get; set; } = state;

    /// <summary>Events applied after RunStarted, in order.</summary>
    public List<RunEvent> Events { get; } = [];

    /// <summary>Node index → when it was (last) sent to its queue (Environment.TickCount64).</summary>
    public Dictionary<int, long> Dispatched { get; } = [];

    /// <summary>Non-null while RunStarted is being written: who is waiting for the answer.</summary>
    public List<(StartAnswer Answer, int Index)>? StartWaiters { get; set; }

    /// <summary>Its events applied but not yet written.</summary>
    public int Unwritten { get; set; }

    /// <summary>RunCompleted is decided and being written.</summary>
    public bool Completing { get; set; }

    public RunRecord ToRecord()
    {
        var record = new RunRecord { Started = State.Started };
        record.Events.Add(Events);
        return record;
    }
}
