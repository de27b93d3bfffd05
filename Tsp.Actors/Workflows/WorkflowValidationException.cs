namespace Tsp.Actors.Workflows;

/// <summary>One problem in a workflow file, located by file and line.</summary>
public sealed record WorkflowError(string Source, int Line, string Message)
{
    public override string ToString() => Line > 0 ? $"{Source}:{Line}: {Message}" : $"{Source}: {Message}";
}

public sealed class WorkflowValidationException : Exception
{
    public WorkflowValidationException(IReadOnlyList<WorkflowError> errors)
        : base("invalid workflow:" + Environment.NewLine + string.Join(Environment.NewLine, errors.Select(e => "  " + e)))
    {
        Errors = errors;
    }

    public WorkflowValidationException()
        : this([])
    {
    }

    public WorkflowValidationException(string message)
        : base(message)
    {
        Errors = [];
    }

    public WorkflowValidationException(string message, Exception innerException)
        : base(message, innerException)
    {
        Errors = [];
    }

    public IReadOnlyList<WorkflowError> Errors { get; }
}
