using Akka.Actor;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Actors.Workflows;

namespace Tsp.Actors.Ingest;

/// <summary>
/// The edge where a frame becomes a run: checks it, writes it to Redis (claim-check), then starts
/// the run and waits until the run is durable. Kafka ingest and gRPC Submit both come through here.
/// </summary>
public sealed class RunSubmitter(WorkflowCatalog catalog, RedisStore store, IActorRef runs, TimeSpan askTimeout, int maxFrameBytes)
{
    public int MaxFrameBytes => maxFrameBytes;

    /// <param name="runId">A caller-chosen id makes the submission idempotent (e.g. derived from a
    /// Kafka offset); null gets a fresh one.</param>
    /// <returns>The outcome; Rejected with a reason for bad input, never an exception for it.</returns>
    public async Task<RunAccepted> SubmitAsync(Frame frame, string? runId = null, CancellationToken cancellationToken = default)
    {
        runId ??= Guid.CreateVersion7().ToString("N");
        if (Problem(frame, runId) is { } problem)
        {
            return new RunAccepted { RunId = runId, Outcome = StartOutcome.Rejected, Error = problem };
        }

        var frameKey = RedisKeys.Frame(frame.Project, runId);
        await store.PutBlobAsync(frameKey, frame.Data.Memory);
        var start = new StartRun
        {
            RunId = runId,
            Project = frame.Project,
            FrameKey = frameKey,
            SourceId = frame.SourceId,
            AcceptedAtUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
        };
        return await runs.Ask<RunAccepted>(start, askTimeout, cancellationToken);
    }

    private string? Problem(Frame frame, string runId)
    {
        if (!catalog.TryGet(frame.Project, out _))
        {
            return $"unknown project '{frame.Project}' (deployed: {catalog.Describe()})";
        }

        if (runId.Length is 0 or > 200 || runId.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')))
        {
            return $"run id '{runId}' may hold only 1 to 200 letters, digits, '-', '_' and '.'";
        }

        if (frame.Data.IsEmpty)
        {
            return $"frame for project '{frame.Project}' is empty";
        }

        if (frame.Data.Length > maxFrameBytes)
        {
            return $"frame of {frame.Data.Length} bytes exceeds the maximum of {maxFrameBytes} bytes";
        }

        return null;
    }
}
