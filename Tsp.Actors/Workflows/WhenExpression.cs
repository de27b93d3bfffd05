using System.Globalization;
using Tsp.Actors.Protocol;

namespace Tsp.Actors.Workflows;

/// <summary>
/// A condition on parents' outputs that decides whether a node runs, e.g.
/// <c>detect.score &gt; 0.5 and classify.label == 'crack'</c>. Comparisons join with <c>and</c>/<c>or</c>
/// (<c>and</c> binds tighter); a reference is <c>parent.field</c>, read from the parent's metrics
/// (numbers) or labels (strings). A reference to a skipped parent or a missing field is false.
/// </summary>
public sealed class WhenExpression
{
    private readonly IReadOnlyList<IReadOnlyList<Comparison>> _disjunction;

    private WhenExpression(string text, IReadOnlyList<IReadOnlyList<Comparison>> disjunction)
    {
        Text = text;
        _disjunction = disjunction;
    }

    public string Text { get; }

    public IEnumerable<string> ReferencedNodes =>
        _disjunction.SelectMany(c => c).Select(c => c.NodeId).Distinct(StringComparer.Ordinal);

    public bool Evaluate(Func<string, NodeResult?> resultOf) =>
        _disjunction.Any(conjunction => conjunction.All(c => c.Evaluate(resultOf(c.NodeId))));

    public override string ToString() => Text;

    /// <exception cref="FormatException">The message names the column and what was expected.</exception>
    public static WhenExpression Parse(string text)
    {
        var tokens = Tokenize(text);
        var position = 0;
        var disjunction = new List<IReadOnlyList<Comparison>>();
        while (true)
        {
            var conjunction = new List<Comparison> { ParseComparison(text, tokens, ref position) };
            while (position < tokens.Count && tokens[position].Is("and"))
            {
                position++;
                conjunction.Add(ParseComparison(text, tokens, ref position));
            }

            disjunction.Add(conjunction);
            if (position < tokens.Count && tokens[position].Is("or"))
            {
                position++;
                continue;
            }

            break;
        }

        if (position < tokens.Count)
        {
            throw Error(tokens[position].Column, $"unexpected '{tokens[position].Text}', expected 'and', 'or' or the end");
        }

        return new WhenExpression(text.Trim(), disjunction);
    }

    private static Comparison ParseComparison(string text, List<Token> tokens, ref int position)
    {
        var reference = Next(text, tokens, ref position, "a reference like 'parent.field'");
        if (reference.Kind != TokenKind.Identifier)
        {
            throw Error(reference.Column, $"expected a reference like 'parent.field', found '{reference.Text}'");
        }

        var dot = reference.Text.IndexOf('.', StringComparison.Ordinal);
        if (dot <= 0 || dot == reference.Text.Length - 1 || reference.Text.IndexOf('.', dot + 1) >= 0)
        {
            throw Error(reference.Column, $"'{reference.Text}' is not a reference like 'parent.field'");
        }

        var op = Next(text, tokens, ref position, "a comparison operator (> >= < <= == !=)");
        if (op.Kind != TokenKind.Operator)
        {
            throw Error(op.Column, $"expected a comparison operator (> >= < <= == !=), found '{op.Text}'");
        }

        var literal = Next(text, tokens, ref position, "a number or a quoted string");
        object value = literal.Kind switch
        {
            TokenKind.Number => double.Parse(literal.Text, CultureInfo.InvariantCulture),
            TokenKind.String => literal.Text,
            _ => throw Error(literal.Column, $"expected a number or a quoted string, found '{literal.Text}'"),
        };
        if (value is string && op.Text is not ("==" or "!="))
        {
            throw Error(op.Column, $"'{op.Text}' compares numbers; a string can only be compared with == or !=");
        }

        return new Comparison(reference.Text[..dot], reference.Text[(dot + 1)..], op.Text, value);
    }

    private static Token Next(string text, List<Token> tokens, ref int position, string expected) =>
        position < tokens.Count
            ? tokens[position++]
            : throw Error(text.Length + 1, $"expected {expected} at the end");

    private static FormatException Error(int column, string message) => new($"column {column}: {message}");

    private static List<Token> Tokenize(string text)
    {
        var tokens = new List<Token>();
        var i = 0;
        while (i < text.Length)
        {
            var c = text[i];
            if (char.IsWhiteSpace(c))
            {
                i++;
                continue;
            }

            var start = i;
            if (char.IsLetter(c) || c == '_')
            {
                while (i < text.Length && (char.IsLetterOrDigit(text[i]) || text[i] is '_' or '-' or '.'))
                {
                    i++;
                }

                tokens.Add(new Token(TokenKind.Identifier, text[start..i], start + 1));
            }
            else if (char.IsDigit(c) || ((c == '-' || c == '.') && i + 1 < text.Length && (char.IsDigit(text[i + 1]) || text[i + 1] == '.')))
            {
                i++;
                while (i < text.Length && (char.IsDigit(text[i]) || text[i] is '.' or 'e' or 'E' || (text[i] is '-' or '+' && text[i - 1] is 'e' or 'E')))
                {
                    i++;
                }

                var number = text[start..i];
                if (!double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out _))
                {
                    throw Error(start + 1, $"'{number}' is not a number");
                }

                tokens.Add(new Token(TokenKind.Number, number, start + 1));
            }
            else if (c is '\'' or '"')
            {
                var end = text.IndexOf(c, i + 1);
                if (end < 0)
                {
                    throw Error(start + 1, "unterminated string");
                }

                tokens.Add(new Token(TokenKind.String, text[(i + 1)..end], start + 1));
                i = end + 1;
            }
            else if (c is '>' or '<' or '=' or '!')
            {
                i++;
                if (i < text.Length && text[i] == '=')
                {
                    i++;
                }

                var op = text[start..i];
                if (op is "=" or "!")
                {
                    throw Error(start + 1, $"'{op}' is not an operator; use == or !=");
                }

                tokens.Add(new Token(TokenKind.Operator, op, start + 1));
            }
            else
            {
                throw Error(start + 1, $"unexpected character '{c}'");
            }
        }

        if (tokens.Count == 0)
        {
            throw Error(1, "the expression is empty");
        }

        return tokens;
    }

    private enum TokenKind
    {
        Identifier,
        Number,
        String,
        Operator,
    }

    private readonly record struct Token(TokenKind Kind, string Text, int Column)
    {
        public bool Is(string keyword) => Kind == TokenKind.Identifier && string.Equals(Text, keyword, StringComparison.OrdinalIgnoreCase);
    }

    private sealed record Comparison(string NodeId, string Field, string Operator, object Value)
    {
        public bool Evaluate(NodeResult? result)
        {
            if (result is null || result.Status != NodeStatus.Completed)
            {
                return false;
            }

            if (Value is double number)
            {
                if (!result.Metrics.TryGetValue(Field, out var actual))
                {
                    return false;
                }

                return Operator switch
                {
                    ">" => actual > number,
                    ">=" => actual >= number,
                    "<" => actual < number,
                    "<=" => actual <= number,
                    "==" => actual.Equals(number),
                    _ => !actual.Equals(number),
                };
            }

            if (!result.Labels.TryGetValue(Field, out var label))
            {
                return false;
            }

            var equal = string.Equals(label, (string)Value, StringComparison.Ordinal);
            return Operator == "==" ? equal : !equal;
        }
    }
}
