using Tsp.Actors.Protocol;
using Tsp.Actors.Telemetry;
using Tsp.Actors.Workflows.Admission;

namespace Tsp.Actors.Tests.Workflows.Admission;

public sealed class AdmissionQueueTests() : Akka.TestKit.Xunit2.TestKit(Tsp.Tests.Shared.TestTiming.Config)
{
    private static StartRun Start(string runId, string frames = "f", uint offset = 0, string source = "") => new()
    {
        RunId = runId,
        Project = "p",
        FrameKey = frames,
        FrameOffset = offset,
        FrameLength = 1,
        SourceId = source,
        AcceptedAtUnixMs = 5,
    };

    private static RunsStarted Series(string prefix, params long[] offsets)
    {
        var series = new RunsStarted { Common = new RunStarted { Project = "p", FrameKey = "s", AcceptedAtUnixMs = 5, WorkflowHash = "w" }, RunIdPrefix = prefix };
        series.RunOffsets.Add(offsets);
        series.FrameOffsets.Add(offsets.Select((_, i) => (uint)i));
        series.FrameLengths.Add(offsets.Select(_ => 1u));
        return series;
    }

    private static List<string> Drain(AdmissionQueue queue)
    {
        var taken = new List<string>();
        while (queue.TryTakeNext(out var started))
        {
            taken.Add(started.RunId);
        }

        return taken;
    }

    [Fact]
    public void Queued_runs_leave_in_acceptance_order_and_only_once_their_write_completed()
    {
        var queue = new AdmissionQueue(16);
        queue.Enqueue(Start("a"), "w", out var first);
        queue.Enqueue(Start("b", offset: 1, source: "cam"), "w", out var joined);
        queue.CloseWrite();
        queue.Enqueue(Start("c"), "w", out var second);

        Assert.NotNull(first);
        Assert.Null(joined);
        Assert.NotNull(second);
        Assert.NotSame(first, second);
        Assert.Equal(3, queue.Count);
        Assert.Empty(Drain(queue));

        // Writes complete in order; a later group is never taken before an earlier one.
        second!.Written();
        Assert.Empty(Drain(queue));
        first!.Written();
        Assert.Equal(["a", "b", "c"], Drain(queue));
        Assert.Equal(0, queue.Count);
    }

    [Fact]
    public void A_run_joining_a_group_keeps_its_own_id_source_and_frame_slice()
    {
        var queue = new AdmissionQueue(16);
        queue.Enqueue(Start("a", offset: 0), "w", out var group);
        queue.Enqueue(Start("b", offset: 7, source: "cam-2"), "w", out _);
        group!.Written();

        Assert.True(queue.TryTakeNext(out var a));
        Assert.True(queue.TryTakeNext(out var b));
        Assert.Equal(("a", "", 0u, "w"), (a.RunId, a.SourceId, a.FrameOffset, a.WorkflowHash));
        Assert.Equal(("b", "cam-2", 7u, 1u, "w", "f"), (b.RunId, b.SourceId, b.FrameOffset, b.FrameLength, b.WorkflowHash, b.FrameKey));
    }

    [Fact]
    public void A_queued_group_as_a_snapshot_holds_it_keeps_every_runs_source_the_first_ones_too()
    {
        var queue = new AdmissionQueue(16);
        queue.Enqueue(Start("a", source: "cam-1"), "w", out _);
        queue.Enqueue(Start("b", offset: 7), "w", out _);
        queue.Enqueue(Start("c", offset: 9, source: "cam-3"), "w", out _);

        var held = Assert.Single(queue.StillQueued());

        Assert.Equal(["cam-1", "", "cam-3"], Enumerable.Range(0, 3).Select(i => StartedGroups.StartedOf(held, i).SourceId));
        Assert.Equal("cam-9", StartedGroups.StartedOf(StartedGroups.GroupOfOne(new RunStarted { RunId = "d", SourceId = "cam-9" }), 0).SourceId);
    }

    [Fact]
    public void A_run_of_another_project_frame_or_workflow_opens_a_group_of_its_own()
    {
        var queue = new AdmissionQueue(16);
        queue.Enqueue(Start("a"), "w", out var first);
        queue.Enqueue(Start("b", frames: "other"), "w", out var otherFrames);
        queue.Enqueue(Start("c", frames: "other"), "w2", out var otherWorkflow);

        Assert.NotNull(first);
        Assert.NotNull(otherFrames);
        Assert.NotNull(otherWorkflow);
    }

    [Fact]
    public void A_series_run_is_found_by_its_id_can_leave_out_of_turn_and_is_then_skipped()
    {
        var queue = new AdmissionQueue(16);
        var group = queue.EnqueueSeries(Series("t-0-", 10, 11, 15), durable: true);

        Assert.Equal(3, queue.Count);
        Assert.True(queue.TryGet("t-0-11", out var slot));
        Assert.Equal((group, 1), (slot.Group, slot.Index));
        Assert.False(queue.TryGet("t-0-12", out _));
        Assert.False(queue.TryGet("t-0-011", out _));
        Assert.False(queue.TryGet("t-1-11", out _));

        var taken = queue.Take("t-0-11", slot);
        Assert.Equal(("t-0-11", "s", 1u), (taken.RunId, taken.FrameKey, taken.FrameOffset));
        Assert.False(queue.TryGet("t-0-11", out _));
        Assert.Equal(2, queue.Count);

        var snapshot = Assert.Single(queue.StillQueued());
        Assert.Equal([10L, 15L], snapshot.RunOffsets);
        Assert.Equal([0u, 2u], snapshot.FrameOffsets);
        Assert.Equal(["t-0-10", "t-0-15"], Drain(queue));
        Assert.Empty(queue.StillQueued());
    }

    [Fact]
    public void A_series_is_unknown_only_when_its_offsets_increase_above_every_offset_of_its_prefix_seen()
    {
        var queue = new AdmissionQueue(16);
        Assert.True(queue.IsUnknownSeries(Series("t-0-", 5, 6), 0));
        Assert.False(queue.IsUnknownSeries(Series("t-0-", 6, 5), 0));

        queue.Note("t-0-5");
        Assert.Equal(5, queue.HighestOffset("t-0-"));
        Assert.False(queue.IsUnknownSeries(Series("t-0-", 5, 6), 0));
        // From index 1 on: the runs before it start one by one.
        Assert.True(queue.IsUnknownSeries(Series("t-0-", 5, 6), 1));
        Assert.True(queue.IsUnknownSeries(Series("t-1-", 0), 0));

        queue.EnqueueSeries(Series("t-1-", 3, 9), durable: false);
        Assert.Equal(9, queue.HighestOffset("t-1-"));
        queue.Note("t-1-4");
        Assert.Equal(9, queue.HighestOffset("t-1-"));
        queue.Note("not-kafka-shaped-x");
        Assert.Equal(-1, queue.HighestOffset("not-kafka-shaped-"));
    }

    [Fact]
    public void Restoring_takes_a_new_series_whole_and_otherwise_run_by_run_leaving_out_held_runs()
    {
        var queue = new AdmissionQueue(16);
        var whole = queue.Restore(Series("t-0-", 1, 2, 3), _ => false);
        Assert.NotNull(whole!.Series);
        Assert.Equal(3, queue.Count);

        // Overlapping what is queued and what the host holds: run by run.
        var rest = queue.Restore(Series("t-0-", 3, 4, 5), runId => runId == "t-0-5");
        Assert.Null(rest!.Series);
        Assert.Equal(1, rest.Count);
        Assert.Equal("t-0-4", rest.RunIdAt(0));
        Assert.Null(queue.Restore(Series("t-0-", 1, 2), _ => false));

        Assert.Equal(["t-0-1", "t-0-2", "t-0-3", "t-0-4"], Drain(queue));
    }

    [Fact]
    public void Finished_run_memory_keeps_the_newest_ids()
    {
        var queue = new AdmissionQueue(2);
        queue.Finished.Add("a");
        queue.Finished.Add("b");
        queue.Finished.Add("c");
        Assert.False(queue.Finished.Contains("a"));
        Assert.True(queue.Finished.Contains("c"));
        Assert.Equal([TspTracing.RunHash("b"), TspTracing.RunHash("c")], queue.Finished.Newest());
    }

    [Fact]
    public void Starts_waiting_for_a_groups_write_are_answered_accepted_in_their_batch_order_once_written()
    {
        var queue = new AdmissionQueue(16);
        var batch = new StartRuns { HostId = "h", Runs = { Start("a"), Start("b", offset: 1), Start("a") } };
        var answer = new StartAnswer(TestActor, batch);
        var first = queue.Enqueue(batch.Runs[0], "w", out var group);
        var second = queue.Enqueue(batch.Runs[1], "w", out _);
        group!.WaitForWrite(answer, 0, first.Index);
        group.WaitForWrite(answer, 1, second.Index);
        Assert.True(queue.TryGet("a", out var repeat));
        repeat.Group.WaitForWrite(answer, 2, repeat.Index);
        ExpectNoMsg(TimeSpan.FromMilliseconds(100));

        group.Written();

        var accepted = ExpectMsg<RunsAccepted>();
        Assert.Equal(["a", "b", "a"], accepted.Results.Select(r => r.RunId));
        Assert.All(accepted.Results, r => Assert.Equal(StartOutcome.Accepted, r.Outcome));
    }

    [Fact]
    public void A_series_answer_carries_one_outcome_per_run_and_errors_only_when_one_was_rejected()
    {
        var series = Series("t-0-", 1, 2);
        var answer = new StartAnswer(TestActor, new StartRuns { HostId = "h", Series = { series } });
        answer.Set(0, StartOutcome.Accepted);
        answer.Set(1, StartOutcome.Rejected, "bad");

        var accepted = ExpectMsg<RunsAccepted>();
        Assert.Empty(accepted.Results);
        Assert.Equal([StartOutcome.Accepted, StartOutcome.Rejected], accepted.Outcomes);
        Assert.Equal(["", "bad"], accepted.Errors);
    }
}
