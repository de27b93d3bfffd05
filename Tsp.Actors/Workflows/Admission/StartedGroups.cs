using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;

namespace Tsp.Actors.Workflows.Admission;

/// <summary>
/// Reading and writing <see cref="RunsStarted"/>: runs accepted together that share everything but
/// their ids, source ids and frame slices. Its runs are named either by <c>run_ids</c> or, for a
/// series (a Kafka partition's runs), by <c>run_id_prefix</c> and <c>run_offsets</c> (<see cref="KafkaRunId"/>).
/// </summary>
internal static class StartedGroups
{
    /// <summary>A group's runs: its run ids, or its series' offsets.</summary>
    public static int RunCount(RunsStarted group) => group.RunIds.Count + group.RunOffsets.Count;

    public static int RunsIn(RunEvent e) => e.EventCase == RunEvent.EventOneofCase.RunsStarted ? RunCount(e.RunsStarted) : 1;

    public static string RunIdOf(RunsStarted group, int index) =>
        group.RunIdPrefix.Length > 0 ? KafkaRunId.Of(group.RunIdPrefix, group.RunOffsets[index]) : group.RunIds[index];

    public static string SourceIdAt(RunsStarted group, int index) => group.SourceIds.Count > 0 ? group.SourceIds[index] : string.Empty;

    public static FrameSlice SliceAt(RunsStarted group, int index) =>
        group.FrameLengths.Count > 0 ? new FrameSlice(group.FrameOffsets[index], group.FrameLengths[index]) : default;

    public static FrameSlice SliceOf(StartRun start) => new(start.FrameOffset, start.FrameLength);

    public static FrameSlice SliceOf(RunStarted started) => new(started.FrameOffset, started.FrameLength);

    /// <summary>The <paramref name="index"/>-th run of a group as a RunStarted of its own.</summary>
    public static RunStarted StartedOf(RunsStarted group, int index)
    {
        var started = group.Common.Clone();
        started.RunId = RunIdOf(group, index);
        started.SourceId = SourceIdAt(group, index);
        (started.FrameOffset, started.FrameLength) = SliceAt(group, index);
        return started;
    }

    /// <summary>The <paramref name="index"/>-th run of a series as a StartRun of its own.</summary>
    public static StartRun StartOf(RunsStarted series, int index) => new()
    {
        RunId = RunIdOf(series, index),
        Project = series.Common.Project,
        FrameKey = series.Common.FrameKey,
        SourceId = SourceIdAt(series, index),
        AcceptedAtUnixMs = series.Common.AcceptedAtUnixMs,
        FrameOffset = series.FrameOffsets.Count > 0 ? series.FrameOffsets[index] : 0,
        FrameLength = series.FrameLengths.Count > 0 ? series.FrameLengths[index] : 0,
    };

    public static RunStarted NewStarted(StartRun start, string workflowHash) => new()
    {
        RunId = start.RunId,
        Project = start.Project,
        FrameKey = start.FrameKey,
        SourceId = start.SourceId,
        AcceptedAtUnixMs = start.AcceptedAtUnixMs,
        WorkflowHash = workflowHash,
        FrameOffset = start.FrameOffset,
        FrameLength = start.FrameLength,
    };

    /// <summary>A RunsStarted with the common fields of <paramref name="started"/> and no runs yet.</summary>
    public static RunsStarted EmptyLike(RunStarted started) => new()
    {
        Common = new RunStarted { Project = started.Project, FrameKey = started.FrameKey, AcceptedAtUnixMs = started.AcceptedAtUnixMs, WorkflowHash = started.WorkflowHash },
    };

    public static RunsStarted NewGroup(StartRun start, string workflowHash) => new()
    {
        Common = new RunStarted { Project = start.Project, FrameKey = start.FrameKey, AcceptedAtUnixMs = start.AcceptedAtUnixMs, WorkflowHash = workflowHash },
    };

    public static RunsStarted GroupOfOne(RunStarted started)
    {
        var group = EmptyLike(started);
        AddRun(group, started.RunId, started.SourceId, SliceOf(started));
        return group;
    }

    /// <summary>Whether <paramref name="start"/> can join <paramref name="group"/> (a group of run ids).</summary>
    public static bool Shares(RunsStarted group, StartRun start, string workflowHash)
    {
        var common = group.Common;
        return group.RunIdPrefix.Length == 0
            && common.AcceptedAtUnixMs == start.AcceptedAtUnixMs
            && string.Equals(common.FrameKey, start.FrameKey, StringComparison.Ordinal)
            && string.Equals(common.Project, start.Project, StringComparison.Ordinal)
            && string.Equals(common.WorkflowHash, workflowHash, StringComparison.Ordinal);
    }

    public static void AddRun(RunsStarted group, string runId, string sourceId, FrameSlice slice)
    {
        group.FrameOffsets.Add(slice.Offset);
        group.FrameLengths.Add(slice.Length);
        if (sourceId.Length > 0 && group.SourceIds.Count < group.RunIds.Count)
        {
            // Source ids are kept only once a run has one: back-fill the runs before it.
            group.SourceIds.Add(Enumerable.Repeat(string.Empty, group.RunIds.Count - group.SourceIds.Count));
        }

        group.RunIds.Add(runId);
        if (group.SourceIds.Count > 0 || sourceId.Length > 0)
        {
            group.SourceIds.Add(sourceId);
        }
    }

    /// <summary>Runs [from..to) of a series, appended to <paramref name="target"/> (of the same prefix).</summary>
    public static void CopyRuns(RunsStarted series, int from, int to, RunsStarted target)
    {
        if (from == 0 && to == series.RunOffsets.Count)
        {
            target.RunOffsets.Add(series.RunOffsets);
            target.FrameOffsets.Add(series.FrameOffsets);
            target.FrameLengths.Add(series.FrameLengths);
            target.SourceIds.Add(series.SourceIds);
            return;
        }

        for (var i = from; i < to; i++)
        {
            target.RunOffsets.Add(series.RunOffsets[i]);
            if (series.FrameLengths.Count > 0)
            {
                target.FrameOffsets.Add(series.FrameOffsets[i]);
                target.FrameLengths.Add(series.FrameLengths[i]);
            }

            if (series.SourceIds.Count > 0)
            {
                target.SourceIds.Add(series.SourceIds[i]);
            }
        }
    }

    /// <summary>What is wrong with a series as submitted (null: nothing): its columns must match its offsets.</summary>
    public static string? SeriesProblem(RunsStarted series)
    {
        var count = series.RunOffsets.Count;
        return series.RunIds.Count > 0 || !series.RunIdPrefix.EndsWith('-') || series.FrameLengths.Count != count || series.FrameOffsets.Count != count || series.FrameLengths.Contains(0u) || (series.SourceIds.Count != 0 && series.SourceIds.Count != count)
            ? $"series '{series.RunIdPrefix}' of {count} run(s) is malformed: run ids, frame slices or source ids do not match its offsets"
            : null;
    }
}
