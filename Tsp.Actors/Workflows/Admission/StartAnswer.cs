using Akka.Actor;
using Tsp.Actors.Protocol;
using Tsp.Actors.Telemetry;

namespace Tsp.Actors.Workflows.Admission;

/// <summary>The answer to one StartRun (a RunAccepted) or StartRuns (a RunsAccepted, in its order),
/// sent to the asker once every start in it is known. Runs of a series are answered with their
/// outcome alone: the asker knows their ids.</summary>
internal sealed class StartAnswer
{
    private readonly IActorRef _asker;
    private readonly StartRun? _single;
    private readonly StartRuns? _batch;
    private readonly StartOutcome[] _outcomes;
    private string[]? _errors;
    private int _pending;

    public StartAnswer(IActorRef asker, StartRun single)
        : this(asker, 1) => _single = single;

    public StartAnswer(IActorRef asker, StartRuns batch)
        : this(asker, batch.Runs.Count + batch.Series.Sum(s => s.RunOffsets.Count)) => _batch = batch;

    private StartAnswer(IActorRef asker, int count)
    {
        _asker = asker;
        _outcomes = new StartOutcome[count];
        _pending = count;
    }

    public void Set(int index, StartOutcome outcome, string error = "")
    {
        _outcomes[index] = outcome;
        if (error.Length > 0)
        {
            (_errors ??= new string[_outcomes.Length])[index] = error;
        }

        if (--_pending == 0)
        {
            Send();
        }
    }

    /// <summary>Sends an answer with nothing to wait for (a StartRuns without runs) at once.</summary>
    public void SendIfEmpty()
    {
        if (_outcomes.Length == 0)
        {
            Send();
        }
    }

    private RunAccepted Result(int index, string runId) =>
        new() { RunId = runId, Outcome = _outcomes[index], Error = _errors?[index] ?? string.Empty };

    private void Send()
    {
        CountAccepted();
        if (_batch is null)
        {
            _asker.Tell(Result(0, _single!.RunId));
            return;
        }

        var accepted = new RunsAccepted();
        var runs = _batch.Runs.Count;
        accepted.Results.Capacity = runs;
        for (var i = 0; i < runs; i++)
        {
            accepted.Results.Add(Result(i, _batch.Runs[i].RunId));
        }

        accepted.Outcomes.Add(_outcomes.AsSpan(runs).ToArray());
        if (_errors is not null && _errors.AsSpan(runs).ContainsAnyExcept((string?)null))
        {
            accepted.Errors.Add(_errors.Skip(runs).Select(e => e ?? string.Empty));
        }

        _asker.Tell(accepted);
    }

    private void CountAccepted()
    {
        if (_batch is null)
        {
            if (_outcomes[0] == StartOutcome.Accepted)
            {
                TspMetrics.RunsStarted.Add(1, new KeyValuePair<string, object?>("project", _single!.Project));
            }

            return;
        }

        var runs = _batch.Runs.Count;
        for (var i = 0; i < runs; i++)
        {
            if (_outcomes[i] == StartOutcome.Accepted)
            {
                TspMetrics.RunsStarted.Add(1, new KeyValuePair<string, object?>("project", _batch.Runs[i].Project));
            }
        }

        var next = runs;
        foreach (var series in _batch.Series)
        {
            var count = series.RunOffsets.Count;
            var accepted = _outcomes.AsSpan(next, count).Count(StartOutcome.Accepted);
            next += count;
            if (accepted > 0)
            {
                TspMetrics.RunsStarted.Add(accepted, new KeyValuePair<string, object?>("project", series.Common.Project));
            }
        }
    }
}
