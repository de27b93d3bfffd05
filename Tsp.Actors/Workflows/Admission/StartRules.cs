using Tsp.Actors.Protocol;

namespace Tsp.Actors.Workflows.Admission;

/// <summary>What a run host holds of a run id, as far as a start of it is concerned.</summary>
internal enum HeldRun
{
    /// <summary>Nothing live or waiting (it may still be queued or remembered as finished).</summary>
    None,

    /// <summary>Live, its RunStarted still being written.</summary>
    Starting,

    /// <summary>Live and durable, not finished.</summary>
    Running,

    /// <summary>Live, RunCompleted written, its result being published.</summary>
    Completed,

    /// <summary>Held, but its project is not deployed on this orchestrator.</summary>
    Waiting,
}

internal enum StartAction
{
    /// <summary>Answer <see cref="StartVerdict.Outcome"/> (with <see cref="StartVerdict.Error"/>) now.</summary>
    Answer,

    /// <summary>The run is being started: answer with it once its start is written.</summary>
    JoinStarting,

    /// <summary>The run is queued in a write still open: answer once that write completes.</summary>
    WaitForQueuedWrite,

    /// <summary>Record it and queue it behind the others.</summary>
    Queue,

    /// <summary>Record it and dispatch it once its start is durable.</summary>
    StartNow,
}

/// <param name="Workflow">For <see cref="StartAction.Queue"/> and <see cref="StartAction.StartNow"/>: the project's workflow.</param>
/// <param name="Queued">For <see cref="StartAction.WaitForQueuedWrite"/>: where the run waits.</param>
/// <summary>How a series is started: rejected whole (<see cref="Problem"/>), or its first
/// <see cref="OneByOne"/> runs one by one through <see cref="StartRules.Decide"/> and the rest, when
/// <see cref="Queued"/> is set, recorded and queued as that one series.</summary>
internal readonly record struct SeriesPlan(string? Problem, int OneByOne, RunsStarted? Queued);

internal readonly record struct StartVerdict(StartAction Action, StartOutcome Outcome = StartOutcome.Unspecified, string Error = "", WorkflowDefinition? Workflow = null, QueuedSlot Queued = default);

/// <summary>
/// How a run host answers a start, as pure code: a start is idempotent (a run live or queued is
/// AlreadyRunning, a finished one AlreadyCompleted, answered only once what it refers to is durable),
/// bad input is Rejected with a reason that names it, and a new run starts at once only when the host
/// has room and nothing waits before it (first come, first served).
/// </summary>
internal static class StartRules
{
    public static StartVerdict Decide(StartRun start, HeldRun held, string? waitingProject, AdmissionQueue admission, WorkflowCatalog catalog, bool hasRoom)
    {
        switch (held)
        {
            case HeldRun.Starting:
                return new StartVerdict(StartAction.JoinStarting);
            case HeldRun.Running:
                return new StartVerdict(StartAction.Answer, StartOutcome.AlreadyRunning);
            case HeldRun.Completed:
                return new StartVerdict(StartAction.Answer, StartOutcome.AlreadyCompleted);
            case HeldRun.Waiting:
                return new StartVerdict(StartAction.Answer, StartOutcome.Rejected, $"run {start.RunId} of project '{waitingProject}' waits: the project is not deployed (deployed: {catalog.Describe()})");
        }

        var runId = start.RunId;
        if (admission.Finished.Contains(runId))
        {
            return new StartVerdict(StartAction.Answer, StartOutcome.AlreadyCompleted);
        }

        if (admission.TryGet(runId, out var queued))
        {
            return queued.Group.Durable
                ? new StartVerdict(StartAction.Answer, StartOutcome.AlreadyRunning)
                : new StartVerdict(StartAction.WaitForQueuedWrite, Queued: queued);
        }

        if (!catalog.TryGet(start.Project, out var workflow))
        {
            return new StartVerdict(StartAction.Answer, StartOutcome.Rejected, $"unknown project '{start.Project}' (deployed: {catalog.Describe()})");
        }

        if (start.FrameLength == 0 || start.FrameKey.Length == 0)
        {
            return new StartVerdict(StartAction.Answer, StartOutcome.Rejected, $"run {runId}: no frame (frame_key '{start.FrameKey}', frame_length 0): a run's frame is a byte range of a frame string");
        }

        return new StartVerdict(hasRoom && admission.Count == 0 ? StartAction.StartNow : StartAction.Queue, Workflow: workflow);
    }

    /// <summary>How to start the runs of a series (a Kafka partition's runs as a prefix and offsets).
    /// The runs that start at once (<paramref name="freeSlots"/>, when nothing waits) take the ordinary
    /// path; the rest queue as the series itself when the host cannot know any of them yet (no lookup,
    /// string or index entry per run); otherwise every run goes one by one.</summary>
    public static SeriesPlan PlanSeries(RunsStarted series, AdmissionQueue admission, WorkflowCatalog catalog, int freeSlots)
    {
        var count = series.RunOffsets.Count;
        var problem = !catalog.TryGet(series.Common?.Project ?? string.Empty, out var workflow)
            ? $"unknown project '{series.Common?.Project}' (deployed: {catalog.Describe()})"
            : StartedGroups.SeriesProblem(series);
        if (problem is not null)
        {
            return new SeriesPlan(problem, 0, null);
        }

        var atOnce = admission.Count == 0 ? Math.Clamp(freeSlots, 0, count) : 0;
        if (!admission.IsUnknownSeries(series, atOnce))
        {
            return new SeriesPlan(null, count, null);
        }

        var queued = new RunsStarted
        {
            Common = new RunStarted { Project = series.Common!.Project, FrameKey = series.Common.FrameKey, AcceptedAtUnixMs = series.Common.AcceptedAtUnixMs, WorkflowHash = workflow!.Hash },
            RunIdPrefix = series.RunIdPrefix,
        };
        StartedGroups.CopyRuns(series, atOnce, count, queued);
        return new SeriesPlan(null, atOnce, queued);
    }
}
