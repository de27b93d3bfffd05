using Tsp.Actors.Protocol;
using Tsp.Actors.Workflows.Admission;

namespace Tsp.Actors.Workflows;

/// <summary>
/// Fills a run host's tables from what it wrote: its snapshot, then the events after it, in order.
/// Each step is safe to meet twice (a snapshot holds the effect of events written after its sequence
/// number, and those are replayed too): a run already held is not restored again, and an event whose
/// effect is in the state changes nothing. What recovery ends with is the host's to act on
/// (<c>OnRecovered</c>): live runs walk on or are published, queued ones wait for their turn.
/// </summary>
internal sealed class RunRecovery(RunTables tables)
{
    public void Restore(RunHostSnapshot snapshot)
    {
        foreach (var record in snapshot.Runs)
        {
            Restore(record);
        }

        foreach (var group in snapshot.Queued)
        {
            RestoreQueued(group);
        }

        foreach (var id in snapshot.FinishedRunIds)
        {
            tables.Admission.Finished.Add(id);
            tables.Admission.Note(id);
        }

        var keys = snapshot.FinishedRunKeys;
        for (var i = 0; i + 1 < keys.Count; i += 2)
        {
            tables.Admission.Finished.Add(new UInt128(keys[i], keys[i + 1]));
        }

        foreach (var (prefix, offset) in snapshot.HighestOffsets)
        {
            tables.Admission.NoteOffset(prefix, offset);
        }
    }

    public void Replay(RunEventBatch batch)
    {
        foreach (var e in batch.Events)
        {
            switch (e.EventCase)
            {
                case RunEvent.EventOneofCase.RunsStarted:
                    RestoreQueued(e.RunsStarted);
                    break;
                case RunEvent.EventOneofCase.RunStarted:
                    Restore(new RunRecord { Started = e.RunStarted });
                    break;
                case RunEvent.EventOneofCase.RunPublished:
                    tables.Forget(e.RunPublished.RunId);
                    break;
                default:
                    Replay(RunEvents.Unwrap(e));
                    break;
            }
        }
    }

    /// <summary>Restores accepted runs as queued (in order); the host starts those there is room for
    /// once recovery is over, and an event of one found later in the journal starts it at once.</summary>
    private void RestoreQueued(RunsStarted started)
    {
        if (tables.Admission.Restore(started, tables.IsLiveOrWaiting) is not { } group)
        {
            return;
        }

        tables.Frames.Hold(group.FrameKey, group.Count);
        tables.CountQueued(group.Count);
    }

    private void Restore(RunRecord record)
    {
        var runId = record.Started.RunId;
        if (tables.IsLiveOrWaiting(runId) || tables.Admission.TryGet(runId, out _))
        {
            return;
        }

        if (record.Events.Count == 0)
        {
            RestoreQueued(StartedGroups.GroupOfOne(record.Started));
            return;
        }

        tables.Frames.Hold(record.Started.FrameKey);
        if (tables.Resolve(record.Started) is { } workflow)
        {
            tables.Add(workflow, record);
        }
        else if (record.Events.Any(e => e.EventCase == RunEvent.EventOneofCase.RunCompleted))
        {
            // Cancelled while it waited for its project: finished, to be published.
            tables.AddNotDeployed(record);
        }
        else
        {
            tables.Wait(record);
        }
    }

    private void Replay(IRunEvent e)
    {
        if (tables.Live.TryGetValue(e.RunId, out var run))
        {
            run.Apply(e);
        }
        else if (tables.Admission.TryGet(e.RunId, out var queued))
        {
            // It had started before the crash: it resumes now, not in its queue turn.
            if (tables.Activate(tables.Admission.Take(e.RunId, queued)) is { } activated)
            {
                activated.Apply(e);
            }
            else
            {
                ReplayWaiting(e);
            }
        }
        else if (tables.Waiting.ContainsKey(e.RunId))
        {
            ReplayWaiting(e);
        }
    }

    private void ReplayWaiting(IRunEvent e)
    {
        if (e is RunCompleted && tables.Waiting.Remove(e.RunId, out var cancelled))
        {
            tables.AddNotDeployed(cancelled).Apply(e);
        }
        else
        {
            tables.Waiting[e.RunId].Events.Add(RunEvents.Wrap(e));
        }
    }
}
