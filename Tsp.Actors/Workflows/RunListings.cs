using Tsp.Actors.Protocol;
using Tsp.Actors.Workflows.Admission;

namespace Tsp.Actors.Workflows;

/// <summary>
/// What an operator reads of the runs one host holds (TspControl's ListRuns, GetRun, CancelRuns'
/// choice of runs), as pure reads over the host's three tables: runs being walked, runs waiting for
/// their project, and runs queued for a turn; and where a run is held, for a cancel of it. Finished
/// runs are not here, nor published ones the host still keeps until their mark is written: the asker
/// reads the results log.
/// </summary>
internal sealed class RunListings(
    IReadOnlyDictionary<string, LiveRun> runs,
    IReadOnlyDictionary<string, RunRecord> waiting,
    AdmissionQueue admission,
    WorkflowCatalog catalog,
    string hostId,
    Func<string> orchestrator)
{
    /// <summary>Every run held of a project (and source, when one is given), in any stage before published.</summary>
    public IEnumerable<RunSummary> Matching(string project, string sourceId)
    {
        bool Matches(RunStarted started) =>
            string.Equals(started.Project, project, StringComparison.Ordinal) && (sourceId.Length == 0 || string.Equals(started.SourceId, sourceId, StringComparison.Ordinal));

        var member = orchestrator();
        foreach (var run in runs.Values.Where(r => !r.Published && Matches(r.State.Started)))
        {
            yield return run.Summary(hostId, member);
        }

        foreach (var record in waiting.Values.Where(r => Matches(r.Started)))
        {
            yield return RunSummaries.Waiting(record.Started, RunStage.WaitingForProject, null, hostId, member);
        }

        foreach (var group in admission.StillQueued().Where(g => string.Equals(g.Common.Project, project, StringComparison.Ordinal)))
        {
            for (var i = 0; i < StartedGroups.RunCount(group); i++)
            {
                var started = StartedGroups.StartedOf(group, i);
                if (Matches(started))
                {
                    yield return RunSummaries.Waiting(started, RunStage.Queued, catalog.For(started), hostId, member);
                }
            }
        }
    }

    /// <summary>The oldest accepted first, at most <see cref="ListHostRuns.Limit"/> (0: all).</summary>
    public HostRuns List(ListHostRuns request)
    {
        var limit = request.Limit > 0 ? request.Limit : int.MaxValue;
        var reply = new HostRuns();
        var matching = Matching(request.Project, request.SourceId).OrderBy(s => s.AcceptedAtUnixMs).ToList();
        reply.Runs.Add(matching.Take(limit));
        reply.Truncated = matching.Count > limit;
        return reply;
    }

    /// <summary>The run's timeline; only its id when this host does not hold it (finished or unknown).</summary>
    public RunSummary SummaryOf(string runId)
    {
        if (runs.TryGetValue(runId, out var run) && !run.Published)
        {
            return RunSummaries.AsTimeline(run.Summary(hostId, orchestrator()));
        }

        if (waiting.TryGetValue(runId, out var record))
        {
            return RunSummaries.Waiting(record.Started, RunStage.WaitingForProject, null, hostId, orchestrator());
        }

        if (admission.TryGet(runId, out var queued))
        {
            var started = queued.Group.StartedOf(queued.Index);
            return RunSummaries.Waiting(started, RunStage.Queued, catalog.For(started), hostId, orchestrator());
        }

        return new RunSummary { RunId = runId };
    }

    /// <summary>What the host holds of a run, for <see cref="CancelRules"/>. (A run that waits for its
    /// project has no nodes here, so its state looks finished; it is not.)</summary>
    public CancelledRunHeld CancelHeld(string runId)
    {
        if (runs.TryGetValue(runId, out var run) && run.Published)
        {
            return new CancelledRunHeld(CancelPlace.Finished);
        }

        if (run is not null)
        {
            var state = run.State;
            return new CancelledRunHeld(CancelPlace.Live, state.Started.Project, run.Completing || state.IsCompleted || state.IsFinished, state.Failure is not null);
        }

        if (admission.TryGet(runId, out var queued))
        {
            return new CancelledRunHeld(CancelPlace.Queued, queued.Group.Project);
        }

        if (waiting.TryGetValue(runId, out var record))
        {
            return new CancelledRunHeld(CancelPlace.WaitingForProject, record.Started.Project);
        }

        return new CancelledRunHeld(admission.Finished.Contains(runId) ? CancelPlace.Finished : CancelPlace.Unknown);
    }
}
