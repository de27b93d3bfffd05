using Tsp.Actors.Protocol;

namespace Tsp.Actors.Workflows;

/// <summary>Where a run host holds a run, as far as a cancel of it is concerned.</summary>
internal enum CancelPlace
{
    /// <summary>Not held, and not remembered as finished.</summary>
    Unknown,

    /// <summary>Remembered as finished (its id among the admission queue's recent finished runs).</summary>
    Finished,

    /// <summary>Waiting in the admission queue, past the host's active limit.</summary>
    Queued,

    /// <summary>Held while its project is not deployed on this orchestrator.</summary>
    WaitingForProject,

    /// <summary>Live: dispatched, or completing.</summary>
    Live,
}

/// <param name="Project">The run's project, where the host knows it.</param>
/// <param name="Finishing">Live and past cancelling: its completion is being written, or its DAG has ended.</param>
/// <param name="Failed">Live and ended by a failure.</param>
internal readonly record struct CancelledRunHeld(CancelPlace Place, string? Project = null, bool Finishing = false, bool Failed = false);

/// <summary>
/// Whether a run host cancels a run, as pure code: only a run of the project named (a cancel never
/// crosses projects, whatever the caller knows of run ids), and only an unfinished one — a run whose
/// last node answered first keeps its own result. A null answer is "cancel it": the host takes the run
/// from where it is, writes its cancellation and answers once that is durable.
/// </summary>
internal static class CancelRules
{
    public static CancelRunReply? Refusal(string runId, string project, CancelledRunHeld held)
    {
        CancelRunReply Reply(CancelOutcome outcome, string detail) => new() { RunId = runId, Outcome = outcome, Detail = detail };
        if (held.Place is CancelPlace.Queued or CancelPlace.WaitingForProject or CancelPlace.Live
            && !string.Equals(held.Project, project, StringComparison.Ordinal))
        {
            return Reply(CancelOutcome.OtherProject, $"run '{runId}' is not a run of project '{project}'");
        }

        return held.Place switch
        {
            CancelPlace.Unknown => Reply(CancelOutcome.NotFound, $"run '{runId}' is not an unfinished run of project '{project}'"),
            CancelPlace.Finished => Reply(CancelOutcome.AlreadyFinished, $"run '{runId}' has finished"),
            CancelPlace.Live when held.Finishing => Reply(CancelOutcome.AlreadyFinished, $"run '{runId}' has finished{(held.Failed ? " (failed)" : "")}; its result stands"),
            _ => null,
        };
    }
}
