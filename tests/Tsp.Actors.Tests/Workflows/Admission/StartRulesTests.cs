using Tsp.Actors.Protocol;
using Tsp.Actors.Workflows;
using Tsp.Actors.Workflows.Admission;

namespace Tsp.Actors.Tests.Workflows.Admission;

public sealed class StartRulesTests
{
    private readonly WorkflowCatalog _catalog = new();
    private readonly AdmissionQueue _admission = new(16);

    public StartRulesTests() =>
        _catalog.Deploy(WorkflowLoader.Parse("project: p\nnodes:\n  - { id: a, processor: passthrough, role: cpu, queue: q }\n", "p.yaml", new HashSet<string> { "passthrough" }));

    private static StartRun Start(string runId, string project = "p", uint length = 1) =>
        new() { RunId = runId, Project = project, FrameKey = "f", FrameLength = length, AcceptedAtUnixMs = 1 };

    private StartVerdict Decide(StartRun start, HeldRun held = HeldRun.None, bool hasRoom = true, string? waitingProject = null) =>
        StartRules.Decide(start, held, waitingProject, _admission, _catalog, hasRoom);

    [Fact]
    public void A_new_run_of_a_deployed_project_starts_now_when_there_is_room_and_nobody_waits()
    {
        var verdict = Decide(Start("r"));

        Assert.Equal(StartAction.StartNow, verdict.Action);
        Assert.Equal("p", verdict.Workflow!.Project);
    }

    [Fact]
    public void A_new_run_queues_when_the_host_is_full_or_others_wait_first_come_first_served()
    {
        Assert.Equal(StartAction.Queue, Decide(Start("r"), hasRoom: false).Action);

        _admission.Enqueue(Start("earlier"), "w", out var group);
        group!.Written();
        Assert.Equal(StartAction.Queue, Decide(Start("r")).Action);
    }

    [Theory]
    [InlineData(false, StartOutcome.AlreadyRunning)]
    [InlineData(true, StartOutcome.AlreadyCompleted)]
    public void A_run_the_host_holds_is_answered_as_it_stands(bool completed, StartOutcome outcome)
    {
        var verdict = Decide(Start("r"), completed ? HeldRun.Completed : HeldRun.Running);

        Assert.Equal((StartAction.Answer, outcome), (verdict.Action, verdict.Outcome));
    }

    [Fact]
    public void A_run_whose_start_is_being_written_is_answered_with_it()
    {
        Assert.Equal(StartAction.JoinStarting, Decide(Start("r"), HeldRun.Starting).Action);
    }

    [Fact]
    public void A_queued_run_is_answered_once_its_write_completes_and_running_after_that()
    {
        _admission.Enqueue(Start("r"), "w", out var group);

        var before = Decide(Start("r"));
        Assert.Equal(StartAction.WaitForQueuedWrite, before.Action);
        Assert.Same(group, before.Queued.Group);

        group!.Written();
        Assert.Equal((StartAction.Answer, StartOutcome.AlreadyRunning), (Decide(Start("r")).Action, Decide(Start("r")).Outcome));
    }

    [Fact]
    public void A_finished_run_is_already_completed_even_when_its_project_is_gone()
    {
        _admission.Finished.Add("done");

        var verdict = Decide(Start("done", project: "gone"));

        Assert.Equal((StartAction.Answer, StartOutcome.AlreadyCompleted), (verdict.Action, verdict.Outcome));
    }

    [Fact]
    public void Bad_starts_are_rejected_with_a_reason_that_names_what_is_wrong()
    {
        var unknown = Decide(Start("r", project: "nope"));
        var noFrame = Decide(Start("r", length: 0));
        var waiting = Decide(Start("r"), HeldRun.Waiting, waitingProject: "old");

        Assert.Equal((StartOutcome.Rejected, "unknown project 'nope' (deployed: p)"), (unknown.Outcome, unknown.Error));
        Assert.Equal(StartOutcome.Rejected, noFrame.Outcome);
        Assert.StartsWith("run r: no frame", noFrame.Error, StringComparison.Ordinal);
        Assert.Equal((StartOutcome.Rejected, "run r of project 'old' waits: the project is not deployed (deployed: p)"), (waiting.Outcome, waiting.Error));
    }

    private static RunsStarted Series(string project, params long[] offsets)
    {
        var series = new RunsStarted { Common = new RunStarted { Project = project, FrameKey = "s", AcceptedAtUnixMs = 1 }, RunIdPrefix = "t-0-" };
        series.RunOffsets.Add(offsets);
        series.FrameOffsets.Add(offsets.Select((_, i) => (uint)i));
        series.FrameLengths.Add(offsets.Select(_ => 1u));
        return series;
    }

    [Fact]
    public void A_series_starts_what_has_room_one_by_one_and_queues_the_rest_whole_with_the_workflow_it_starts_on()
    {
        var plan = StartRules.PlanSeries(Series("p", 5, 6, 7, 8), _admission, _catalog, freeSlots: 1);

        Assert.Null(plan.Problem);
        Assert.Equal(1, plan.OneByOne);
        Assert.Equal([6L, 7L, 8L], plan.Queued!.RunOffsets);
        Assert.Equal([1u, 2u, 3u], plan.Queued.FrameOffsets);
        Assert.Equal(_catalog.All.Single().Hash, plan.Queued.Common.WorkflowHash);
    }

    [Fact]
    public void A_series_the_host_may_know_goes_run_by_run_and_a_bad_one_is_rejected_whole()
    {
        _admission.Note("t-0-6");
        var known = StartRules.PlanSeries(Series("p", 5, 6, 7), _admission, _catalog, freeSlots: 0);
        var unknownProject = StartRules.PlanSeries(Series("nope", 1), _admission, _catalog, freeSlots: 1);
        var noSlices = Series("p", 9);
        noSlices.FrameLengths.Clear();

        Assert.Equal((3, (RunsStarted?)null), (known.OneByOne, known.Queued));
        Assert.Equal("unknown project 'nope' (deployed: p)", unknownProject.Problem);
        Assert.Contains("is malformed", StartRules.PlanSeries(noSlices, _admission, _catalog, freeSlots: 1).Problem, StringComparison.Ordinal);
    }
}
