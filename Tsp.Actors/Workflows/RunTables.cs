using Akka.Event;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Actors.Telemetry;
using Tsp.Actors.Workflows.Admission;

namespace Tsp.Actors.Workflows;

/// <summary>
/// Where a run host holds its runs, and the one place that moves a run from table to table: live
/// (being walked, or published and waiting for its RunPublished mark), queued for a turn
/// (<see cref="AdmissionQueue"/>), or waiting for its project to be deployed here. A run's frame is held
/// (<see cref="FrameLeases"/>) while the run is in any of them, and the orchestrator's counts
/// (<see cref="ActiveRunCounter"/>) follow every move. No journal, no messages: the host decides when a
/// run moves and persists; <see cref="RunRecovery"/> fills the tables from what was written.
/// </summary>
internal sealed class RunTables(RunServices services, RunHostTuning tuning, FrameLeases frames, ILoggingAdapter log)
{
    /// <summary>Live runs by id: walking, finishing, or published and not yet forgotten.</summary>
    public Dictionary<string, LiveRun> Live { get; } = new(StringComparer.Ordinal);

    /// <summary>Runs of a project that is not deployed on this orchestrator: held, not walked, until it is.</summary>
    public Dictionary<string, RunRecord> Waiting { get; } = new(StringComparer.Ordinal);

    public AdmissionQueue Admission { get; } = new(tuning.FinishedRunMemory);

    public FrameLeases Frames => frames;

    /// <summary>Live runs already published, kept only until their mark is written.</summary>
    public int PublishedUnmarked { get; private set; }

    /// <summary>Runs held in any table (published ones waiting for their mark included).</summary>
    public int Count => Live.Count + Waiting.Count + Admission.Count;

    /// <summary>This host's part of the orchestrator's <see cref="RunHostTuning.MaxActiveRuns"/>.</summary>
    public int ActiveRunsAllowed => Math.Max(1, tuning.MaxActiveRuns / Math.Max(1, services.Active.Hosts));

    /// <summary>Runs taking a turn: a published run waiting for its mark no longer takes one.</summary>
    public int Active => Live.Count - PublishedUnmarked;

    public bool HasRoom => Active < ActiveRunsAllowed;

    public bool IsLiveOrWaiting(string runId) => Live.ContainsKey(runId) || Waiting.ContainsKey(runId);

    /// <summary>The workflow a run walks: the version it started on (<see cref="WorkflowCatalog.For"/>),
    /// or the current one, said in the log, when this process never knew that version.</summary>
    public WorkflowDefinition? Resolve(RunStarted started)
    {
        var workflow = services.Catalog.For(started);
        if (workflow is not null && workflow.Hash != started.WorkflowHash)
        {
            log.Warning("run {0}: started on workflow {1} of '{2}', which this orchestrator does not know; resuming on {3}", started.RunId, started.WorkflowHash, started.Project, workflow.Hash);
        }

        return workflow;
    }

    /// <summary>A run becomes live (its frame is held by the caller: a start holds it before the run exists).</summary>
    public LiveRun Add(RunState state)
    {
        var run = new LiveRun(state) { Span = TspTracing.StartRunSpan("tsp.run", state.RunId, state.Started.Project) };
        Live.Add(state.RunId, run);
        Admission.Note(state.RunId);
        services.Active.Add(1);
        return run;
    }

    /// <summary>A run becomes live on <paramref name="workflow"/> with the events it had.</summary>
    public LiveRun Add(WorkflowDefinition workflow, RunRecord record)
    {
        var run = Add(RunState.Start(workflow, record.Started));
        foreach (var e in record.Events)
        {
            run.Apply(RunEvents.Unwrap(e));
        }

        return run;
    }

    /// <summary>A run whose project is not deployed here, live only to be cancelled and published
    /// (<see cref="WorkflowDefinition.NotDeployed"/>).</summary>
    public LiveRun AddNotDeployed(RunRecord record) =>
        Add(WorkflowDefinition.NotDeployed(record.Started.Project, record.Started.WorkflowHash), record);

    /// <summary>A run that left the queue becomes live, or waits when its project is not deployed.</summary>
    public LiveRun? Activate(RunStarted started)
    {
        CountQueued(-1);
        if (Resolve(started) is not { } workflow)
        {
            Wait(new RunRecord { Started = started });
            return null;
        }

        return Add(RunState.Start(workflow, started));
    }

    /// <summary>The next queued runs, oldest first, while there is room: live, or waiting for their project.</summary>
    public IEnumerable<LiveRun> TakeTurns()
    {
        while (HasRoom && Admission.TryTakeNext(out var started))
        {
            if (Activate(started) is { } run)
            {
                yield return run;
            }
        }
    }

    public void Wait(RunRecord record)
    {
        if (services.Catalog.IsDeployed(record.Started.Project))
        {
            log.Warning("run {0}: started on workflow {1} of '{2}'; it waits until this orchestrator knows the deployed versions", record.Started.RunId, record.Started.WorkflowHash, record.Started.Project);
        }
        else
        {
            log.Error("run {0}: project '{1}' is not deployed on this orchestrator ({2}); the run waits until it is", record.Started.RunId, record.Started.Project, services.Catalog.Describe());
        }

        Waiting.Add(record.Started.RunId, record);
        Admission.Note(record.Started.RunId);
    }

    /// <summary>A deployment arrived: the waiting runs whose project or version is known now become live.</summary>
    public List<LiveRun> WakeWaiting()
    {
        var woken = new List<LiveRun>();
        foreach (var record in Waiting.Values.ToList())
        {
            if (Resolve(record.Started) is not { } workflow)
            {
                continue;
            }

            Waiting.Remove(record.Started.RunId);
            log.Info("run {0}: project '{1}' is deployed (version {2}); the run goes on", record.Started.RunId, record.Started.Project, workflow.Hash);
            woken.Add(Add(workflow, record));
        }

        return woken;
    }

    /// <summary>A held run about to be ended by a cancel: a queued or waiting one becomes live for it
    /// (a queued one whose project is not deployed here goes through waiting). Null: not held.</summary>
    public LiveRun? TakeToEnd(string runId)
    {
        var run = Live.GetValueOrDefault(runId);
        if (run is null && Admission.TryGet(runId, out var queued))
        {
            run = Activate(Admission.Take(runId, queued));
        }

        if (run is null && Waiting.Remove(runId, out var waiting))
        {
            run = AddNotDeployed(waiting);
        }

        return run;
    }

    /// <summary>Counts runs that enter (positive) or leave (negative) the admission queue.</summary>
    public void CountQueued(int runs)
    {
        services.Active.Add(runs);
        services.Active.AddQueued(runs);
    }

    /// <summary>Its result is in the log: it stays live only until its mark is written.</summary>
    public void MarkPublished(LiveRun run)
    {
        run.Published = true;
        PublishedUnmarked++;
    }

    /// <summary>A live run whose end recovery knows: its frame is let go and its id joins the finished ones.</summary>
    public void Forget(LiveRun run)
    {
        var runId = run.RunId;
        if (!Live.Remove(runId))
        {
            return;
        }

        if (run.Published)
        {
            PublishedUnmarked--;
        }

        frames.Release(run.State.Started.FrameKey);
        services.Active.Add(-1);
        Admission.Finished.Add(runId);
        run.Release();
    }

    /// <summary>A run whose mark recovery found: forgotten wherever recovery put it so far (live,
    /// queued, or waiting for its project).</summary>
    public void Forget(string runId)
    {
        if (Live.TryGetValue(runId, out var run))
        {
            Forget(run);
            return;
        }

        RunStarted started;
        if (Admission.TryGet(runId, out var queued))
        {
            started = Admission.Take(runId, queued);
            CountQueued(-1);
        }
        else if (Waiting.Remove(runId, out var waiting))
        {
            started = waiting.Started;
        }
        else
        {
            return;
        }

        frames.Release(started.FrameKey);
        Admission.Finished.Add(runId);
    }
}
