using Tsp.Actors.Protocol;
using Tsp.Actors.Workflows;

namespace Tsp.Actors.Tests.Workflows;

public sealed class WhenExpressionTests
{
    private static NodeResult Completed(string node, double score, string label = "ok")
    {
        var result = new NodeResult { NodeId = node, Status = NodeStatus.Completed };
        result.Metrics["score"] = score;
        result.Labels["label"] = label;
        return result;
    }

    [Theory]
    [InlineData("a.score > 0.5", 0.6, true)]
    [InlineData("a.score > 0.5", 0.5, false)]
    [InlineData("a.score >= 0.5", 0.5, true)]
    [InlineData("a.score < 0.5", 0.4, true)]
    [InlineData("a.score <= -1", -1.0, true)]
    [InlineData("a.score == 2", 2.0, true)]
    [InlineData("a.score != 2", 2.0, false)]
    [InlineData("a.label == 'ok'", 0.0, true)]
    [InlineData("a.label != \"ok\"", 0.0, false)]
    [InlineData("a.score > 0.5 and a.label == 'ok'", 0.9, true)]
    [InlineData("a.score > 0.5 and a.label == 'bad'", 0.9, false)]
    [InlineData("a.score > 0.95 or a.label == 'ok'", 0.1, true)]
    [InlineData("a.missing > 0", 1.0, false)]
    [InlineData("a.score > 1e-3", 0.01, true)]
    public void Evaluates_comparisons_on_a_parent_result(string text, double score, bool expected)
    {
        var when = WhenExpression.Parse(text);

        Assert.Equal(expected, when.Evaluate(id => id == "a" ? Completed("a", score) : null));
    }

    [Fact]
    public void And_binds_tighter_than_or()
    {
        // false and false or true == (false and false) or true == true
        var when = WhenExpression.Parse("a.score > 5 and a.score > 6 or a.label == 'ok'");

        Assert.True(when.Evaluate(_ => Completed("a", 0)));
    }

    [Fact]
    public void A_skipped_or_missing_parent_makes_the_condition_false()
    {
        var when = WhenExpression.Parse("a.score < 100");

        Assert.False(when.Evaluate(_ => null));
        Assert.False(when.Evaluate(_ => new NodeResult { NodeId = "a", Status = NodeStatus.Skipped }));
    }

    [Fact]
    public void Lists_the_nodes_it_references()
    {
        var when = WhenExpression.Parse("a.score > 1 or b.label == 'x' and a.y < 2");

        Assert.Equal(["a", "b"], when.ReferencedNodes.Order());
    }

    [Theory]
    [InlineData("", "column 1: the expression is empty")]
    [InlineData("score > 1", "column 1: 'score' is not a reference like 'parent.field'")]
    [InlineData("a.score >", "expected a number or a quoted string at the end")]
    [InlineData("a.score = 1", "column 9: '=' is not an operator; use == or !=")]
    [InlineData("a.score > 'x'", "column 9: '>' compares numbers")]
    [InlineData("a.score > 1 a.x > 2", "column 13: unexpected 'a.x'")]
    [InlineData("a.label == 'open", "column 12: unterminated string")]
    [InlineData("a.score > 1 & a.x > 2", "column 13: unexpected character '&'")]
    [InlineData("a.score 1", "column 9: expected a comparison operator")]
    public void Rejects_a_malformed_expression_naming_the_column(string text, string expected)
    {
        var error = Assert.Throws<FormatException>(() => WhenExpression.Parse(text));

        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }
}
