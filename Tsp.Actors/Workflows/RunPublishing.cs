using Akka.Actor;
using Akka.Event;
using Tsp.Actors.Northbound;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Actors.Telemetry;
using Tsp.Actors.Workflows.Admission;

namespace Tsp.Actors.Workflows;

/// <summary>
/// How a run host publishes its finished runs: the TP result, with its dead letter when the run
/// failed and a frame preview when one is due (<see cref="ResultPublisher"/>), traced as the run's
/// <c>tsp.publish</c> span; a failed attempt retried every second, with one warning when failures
/// begin and one every 10 s, not one per run; and each published run counted. The host hears
/// <see cref="Published"/> or <see cref="Failed"/>, and <see cref="Retry"/> when to try again.
/// </summary>
internal sealed class RunPublishing(RunServices services, ILoggingAdapter log)
{
    private static readonly TimeSpan RetryAfter = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan WarnEvery = TimeSpan.FromSeconds(10);

    private long _failures;
    private System.Diagnostics.Stopwatch? _failureLogged;

    /// <summary>Publishes the run's result. Safe to repeat (after a crash or a failed attempt): the
    /// log keeps the run's first entry, and a failed run its one dead letter.</summary>
    public void Publish(LiveRun run, IActorRef host)
    {
        var result = run.State.ToResult();
        var span = TspTracing.StartChild("tsp.publish", TspTracing.TraceParent(run.Span), result.RunId, result.Project);
        var frame = new RunFrame(run.State.Started.FrameKey, StartedGroups.SliceOf(run.State.Started));
        var held = run.DeferredOutputs?.Select(node => KeyValuePair.Create(run.State.ResultOf(node)!.OutputKey, run.Outputs![node].Memory)).ToList();
        var publishing = TspTracing.Within(span, () => ResultPublisher.PublishFinishedAsync(services.Store, services.PubSubMediator, result, run.State.Failure, frame, services.Previews.IsDue(result.Project), held));
        TspTracing.EndAfter(publishing, span)
            .PipeTo(host, success: () => new Published(result.RunId), failure: e => new Failed(result.RunId, e.Message));
    }

    /// <summary>An attempt failed (Redis away, say): the host is told to try again in a second.</summary>
    public void OnFailed(Failed failed, ITimerScheduler timers)
    {
        _failures++;
        if (_failureLogged is not { } logged || logged.Elapsed > WarnEvery)
        {
            log.Warning("publishing results failed {0} time(s) so far, retrying each every second; latest: run {1}: {2}", _failures, failed.RunId, failed.Reason);
            _failureLogged = System.Diagnostics.Stopwatch.StartNew();
        }

        timers.StartSingleTimer("publish-" + failed.RunId, new Retry(failed.RunId), RetryAfter);
    }

    /// <summary>Counts a published run by project and status, and its time from acceptance to result.</summary>
    public static void CountFinished(RunState state)
    {
        var project = new KeyValuePair<string, object?>("project", state.Started.Project);
        var status = state.Completion?.Status switch
        {
            RunStatus.Cancelled => "cancelled",
            RunStatus.Failed => "failed",
            _ => "succeeded",
        };
        TspMetrics.RunsCompleted.Add(1, project, new KeyValuePair<string, object?>("status", status));
        // Accept to result: the accepted time is the submitter's clock, the end this member's.
        var seconds = (DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - state.Started.AcceptedAtUnixMs) / 1000.0;
        if (state.Started.AcceptedAtUnixMs > 0 && seconds >= 0)
        {
            TspMetrics.RunDuration.Record(seconds, project);
        }
    }

    public sealed record Published(string RunId);

    public sealed record Failed(string RunId, string Reason);

    public sealed record Retry(string RunId);
}
