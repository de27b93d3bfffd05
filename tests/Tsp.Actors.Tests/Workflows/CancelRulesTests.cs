using Tsp.Actors.Protocol;
using Tsp.Actors.Workflows;

namespace Tsp.Actors.Tests.Workflows;

public sealed class CancelRulesTests
{
    [Theory]
    [InlineData(nameof(CancelPlace.Live))]
    [InlineData(nameof(CancelPlace.Queued))]
    [InlineData(nameof(CancelPlace.WaitingForProject))]
    public void An_unfinished_run_of_the_named_project_is_cancelled_wherever_the_host_holds_it(string place) =>
        Assert.Null(CancelRules.Refusal("r", "p", new CancelledRunHeld(Enum.Parse<CancelPlace>(place), "p")));

    [Theory]
    [InlineData(nameof(CancelPlace.Live))]
    [InlineData(nameof(CancelPlace.Queued))]
    [InlineData(nameof(CancelPlace.WaitingForProject))]
    public void A_run_of_another_project_is_refused_and_named_whatever_its_stage(string place)
    {
        var where = Enum.Parse<CancelPlace>(place);
        var refusal = CancelRules.Refusal("r", "p", new CancelledRunHeld(where, "other", Finishing: where == CancelPlace.Live));

        Assert.Equal(CancelOutcome.OtherProject, refusal!.Outcome);
        Assert.Equal("run 'r' is not a run of project 'p'", refusal.Detail);
    }

    [Fact]
    public void A_run_whose_last_node_answered_first_keeps_its_result_and_says_whether_it_failed()
    {
        var succeeded = CancelRules.Refusal("r", "p", new CancelledRunHeld(CancelPlace.Live, "p", Finishing: true));
        var failed = CancelRules.Refusal("r", "p", new CancelledRunHeld(CancelPlace.Live, "p", Finishing: true, Failed: true));

        Assert.Equal(CancelOutcome.AlreadyFinished, succeeded!.Outcome);
        Assert.Equal("run 'r' has finished; its result stands", succeeded.Detail);
        Assert.Equal("run 'r' has finished (failed); its result stands", failed!.Detail);
    }

    [Fact]
    public void A_run_remembered_as_finished_is_already_finished_and_an_unknown_one_is_not_found()
    {
        Assert.Equal(CancelOutcome.AlreadyFinished, CancelRules.Refusal("r", "p", new CancelledRunHeld(CancelPlace.Finished))!.Outcome);
        var unknown = CancelRules.Refusal("r", "p", new CancelledRunHeld(CancelPlace.Unknown));
        Assert.Equal(CancelOutcome.NotFound, unknown!.Outcome);
        Assert.Equal("run 'r' is not an unfinished run of project 'p'", unknown.Detail);
    }
}
