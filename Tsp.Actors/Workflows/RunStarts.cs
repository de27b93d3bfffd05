using Akka.Actor;
using Tsp.Actors.Protocol;
using Tsp.Actors.Workflows.Admission;

namespace Tsp.Actors.Workflows;

/// <summary>
/// How a run host takes starts. Each start is answered at once, joined to the same run's start being
/// written, queued behind the others or made live (<see cref="StartRules"/> decides which); the starts
/// that arrive together are recorded as one journal write (<see cref="RunJournalWriter"/>) and answered
/// once it is durable; queued runs take their turns as room opens (<see cref="RunTables.TakeTurns"/>).
/// Each run that is to walk goes back to the host (<paramref name="walk"/>), which dispatches its nodes.
/// </summary>
internal sealed class RunStarts(RunTables tables, RunJournalWriter journal, WorkflowCatalog catalog, Action<LiveRun> walk)
{
    /// <summary>Starts a batch (runs one by one, then series); answers <paramref name="sender"/> once
    /// for the whole batch.</summary>
    public void StartAll(StartRuns batch, IActorRef sender)
    {
        var answer = new StartAnswer(sender, batch);
        answer.SendIfEmpty();
        for (var i = 0; i < batch.Runs.Count; i++)
        {
            Start(batch.Runs[i], answer, i);
        }

        var index = batch.Runs.Count;
        foreach (var series in batch.Series)
        {
            StartSeries(series, answer, index);
            index += series.RunOffsets.Count;
        }
    }

    /// <summary>Starts one run, or answers what is known about it, in slot <paramref name="index"/> of
    /// <paramref name="answer"/> (<see cref="StartRules"/> decides which). Starts that arrive together (a
    /// <see cref="StartRuns"/>, or a mailbox full of StartRun) share one journal write.</summary>
    public void Start(StartRun start, StartAnswer answer, int index)
    {
        var live = tables.Live.GetValueOrDefault(start.RunId);
        RunRecord? waiting = null;
        var held = live is not null
            ? live.StartWaiters is not null ? HeldRun.Starting : live.State.IsCompleted ? HeldRun.Completed : HeldRun.Running
            : tables.Waiting.TryGetValue(start.RunId, out waiting) ? HeldRun.Waiting : HeldRun.None;
        var verdict = StartRules.Decide(start, held, waiting?.Started.Project, tables.Admission, catalog, tables.HasRoom);
        switch (verdict.Action)
        {
            case StartAction.Answer:
                answer.Set(index, verdict.Outcome, verdict.Error);
                break;
            case StartAction.JoinStarting:
                live!.StartWaiters!.Add((answer, index));
                break;
            case StartAction.WaitForQueuedWrite:
                verdict.Queued.Group.WaitForWrite(answer, index, verdict.Queued.Index);
                break;
            case StartAction.Queue:
                Queue(start, verdict.Workflow!, answer, index);
                break;
            default:
                StartActive(start, verdict.Workflow!, answer, index);
                break;
        }
    }

    /// <summary>Records a run and queues it behind the others; it is answered once its write completes.</summary>
    private void Queue(StartRun start, WorkflowDefinition workflow, StartAnswer answer, int index)
    {
        tables.Frames.Hold(start.FrameKey);
        // Recorded before it is queued: the group's write callback joins the write that records it.
        journal.RecordStart(start, workflow.Hash, afterWrite: null);
        var place = tables.Admission.Enqueue(start, workflow.Hash, out var opened);
        tables.CountQueued(1);
        if (opened is not null)
        {
            journal.AfterRecorded(() =>
            {
                opened.Written();
                StartQueued();
            });
        }

        place.Group.WaitForWrite(answer, index, place.Index);
    }

    /// <summary>Starts the runs of a series (<see cref="StartRuns.Series"/>) in slots
    /// <paramref name="first"/>.. of <paramref name="answer"/>. Those that wait for a turn and that the
    /// host cannot know yet are recorded and queued as the series itself (<see cref="AdmissionQueue"/>);
    /// the others (a redelivery, runs that start at once) go one by one through <see cref="Start"/>.</summary>
    private void StartSeries(RunsStarted series, StartAnswer answer, int first)
    {
        var count = series.RunOffsets.Count;
        if (count == 0)
        {
            return;
        }

        var plan = StartRules.PlanSeries(series, tables.Admission, catalog, tables.ActiveRunsAllowed - tables.Live.Count);
        if (plan.Problem is { } problem)
        {
            for (var i = 0; i < count; i++)
            {
                answer.Set(first + i, StartOutcome.Rejected, problem);
            }

            return;
        }

        for (var i = 0; i < plan.OneByOne; i++)
        {
            Start(StartedGroups.StartOf(series, i), answer, first + i);
        }

        if (plan.Queued is not { } queued)
        {
            return;
        }

        journal.Record(new RunEvent { RunsStarted = queued }, afterWrite: null);
        var group = tables.Admission.EnqueueSeries(queued, durable: false);
        tables.Frames.Hold(group.FrameKey, group.Count);
        tables.CountQueued(group.Count);
        journal.AfterRecorded(() =>
        {
            group.Written();
            StartQueued();
        });
        group.WaitForWrite(answer, first + plan.OneByOne, 0, group.Count);
    }

    /// <summary>Starts a run that does not wait for a turn. A method of its own so that the closure it
    /// needs is allocated only here, not on every start.</summary>
    private void StartActive(StartRun start, WorkflowDefinition workflow, StartAnswer answer, int index)
    {
        // Held from now on (a snapshot taken while its start is being written must contain the run);
        // dispatched only once the start is durable.
        tables.Frames.Hold(start.FrameKey);
        var run = tables.Add(RunState.Start(workflow, StartedGroups.NewStarted(start, workflow.Hash)));
        run.StartWaiters = [(answer, index)];
        journal.RecordStart(start, workflow.Hash, () =>
        {
            foreach (var (waiter, slot) in run.StartWaiters!)
            {
                waiter.Set(slot, StartOutcome.Accepted);
            }

            run.StartWaiters = null;
            walk(run);
        });
    }

    /// <summary>Starts queued runs, oldest first, while there is room.</summary>
    public void StartQueued()
    {
        foreach (var run in tables.TakeTurns())
        {
            walk(run);
        }
    }
}
