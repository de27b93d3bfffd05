using Tsp.Actors.Northbound;

namespace Tsp.Actors.Tests.Northbound;

public sealed class FeedStartTests
{
    [Theory]
    [InlineData("", null)]
    [InlineData("latest", null)]
    [InlineData("LATEST", null)]
    [InlineData("earliest", 1L)]
    [InlineData("42", 42L)]
    [InlineData("a=7", 7L)]
    public void One_project_starts_where_from_says(string from, long? expected) =>
        Assert.Equal(expected, FeedStart.Parse(from, ["a"])["a"]);

    [Fact]
    public void Positions_per_project_leave_the_unnamed_ones_at_latest_and_format_back()
    {
        var starts = FeedStart.Parse("b=3, a=10", ["a", "b", "c"]);
        Assert.Equal(10, starts["a"]);
        Assert.Equal(3, starts["b"]);
        Assert.Null(starts["c"]);
        Assert.Equal("a=10,b=3", FeedStart.Format(new Dictionary<string, long> { ["b"] = 3, ["a"] = 10 }));
        var round = FeedStart.Parse(FeedStart.Format(new Dictionary<string, long> { ["a"] = 5, ["b"] = 9 }), ["a", "b"]);
        Assert.Equal((5L, 9L), (round["a"]!.Value, round["b"]!.Value));
    }

    [Theory]
    [InlineData("x12", "position 'x12'")]
    [InlineData("0", "position '0' is not a whole number ≥ 1")]
    [InlineData("-4", "position '-4'")]
    [InlineData("7", "exactly one project (2 given)")]
    [InlineData("c=4", "project 'c' is not among the subscribed projects")]
    [InlineData("a=", "position ''")]
    [InlineData("=4", "'=4' is not project=position")]
    public void A_malformed_from_names_what_is_wrong(string from, string message)
    {
        var error = Assert.Throws<FormatException>(() => FeedStart.Parse(from, ["a", "b"]));
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }
}
