using Tsp.Actors.Control;
using Tsp.Actors.Protocol;

namespace Tsp.Actors.Tests.Control;

public sealed class ControlInputTests
{
    [Theory]
    [InlineData("all", 1, long.MaxValue)]
    [InlineData(" ALL ", 1, long.MaxValue)]
    [InlineData("7", 7, 7)]
    [InlineData("3-12", 3, 12)]
    public void A_selection_names_all_one_id_or_a_range(string text, long from, long to) =>
        Assert.Equal(new DeadLetterSelection(from, to), DeadLetterSelection.Parse(text));

    [Theory]
    [InlineData("")]
    [InlineData("some")]
    [InlineData("0")]
    [InlineData("-3")]
    [InlineData("5-2")]
    [InlineData("1-")]
    [InlineData("1-2-3")]
    [InlineData("+4")]
    public void A_malformed_selection_is_refused_naming_the_text(string text)
    {
        var error = Assert.Throws<FormatException>(() => DeadLetterSelection.Parse(text));
        Assert.Contains($"'{text}'", error.Message, StringComparison.Ordinal);
        Assert.Contains("N-M", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_redriven_run_names_the_dead_run_it_came_from_and_only_a_redrive_does()
    {
        var once = Redrives.RunIdFor("tsp.p.frames-0-12", 4);
        var twice = Redrives.RunIdFor(once, 9);

        Assert.Equal("tsp.p.frames-0-12.redrive-4", once);
        Assert.Equal("tsp.p.frames-0-12", Redrives.DeadRunOf(once));
        Assert.Equal(once, Redrives.DeadRunOf(twice));
        Assert.Null(Redrives.DeadRunOf("tsp.p.frames-0-12"));
        Assert.Null(Redrives.DeadRunOf("x.redrive-"));
        Assert.Null(Redrives.DeadRunOf("x.redrive-4a"));
        Assert.Null(Redrives.DeadRunOf(".redrive-4"));
    }
}
