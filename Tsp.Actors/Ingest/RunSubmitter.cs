using Akka.Actor;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Actors.Workflows;

namespace Tsp.Actors.Ingest;

/// <summary>
/// The edge where a frame becomes a run: checks it, writes it to Redis (claim-check), then starts
/// the run and waits until the run is durable. Kafka ingest and gRPC Submit both come through here.
/// </summary>
/// <param name="runHosts">The number of run hosts (<see cref="RunMessageExtractor"/>): a batch is split by host.</param>
public sealed class RunSubmitter(WorkflowCatalog catalog, RedisStore store, IActorRef runs, TimeSpan askTimeout, int maxFrameBytes, int runHosts)
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

    /// <summary>Submits many frames with caller-chosen run ids (e.g. a Kafka batch): their frames go to
    /// Redis as one hash per project (one command), and the starts go to each run host as one
    /// <see cref="StartRuns"/>, which the host persists as one journal write.</summary>
    /// <returns>One outcome per submission, in order; Rejected with a reason for bad input.</returns>
    /// <exception cref="Exception">When the starts could not be confirmed (ask timeout, journal down):
    /// nothing is known about them, and submitting the same batch again is safe.</exception>
    public async Task<RunAccepted[]> SubmitBatchAsync(IReadOnlyList<(Frame Frame, string RunId)> submissions, CancellationToken cancellationToken = default)
    {
        var outcomes = new RunAccepted[submissions.Count];
        var frames = new Dictionary<string, (string Key, List<(string Field, ReadOnlyMemory<byte> Data)> Frames)>(StringComparer.Ordinal);
        var byHost = new Dictionary<string, (StartRuns Starts, List<int> Slots)>(StringComparer.Ordinal);
        var acceptedAt = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        for (var i = 0; i < submissions.Count; i++)
        {
            var (frame, runId) = submissions[i];
            if (Problem(frame, runId) is { } problem)
            {
                outcomes[i] = new RunAccepted { RunId = runId, Outcome = StartOutcome.Rejected, Error = problem };
                continue;
            }

            if (!frames.TryGetValue(frame.Project, out var hash))
            {
                hash = (RedisKeys.FrameBatch(frame.Project, Guid.CreateVersion7().ToString("N")), new(submissions.Count));
                frames.Add(frame.Project, hash);
            }

            hash.Frames.Add((runId, frame.Data.Memory));
            var host = RunMessageExtractor.HostOf(runId, runHosts);
            if (!byHost.TryGetValue(host, out var group))
            {
                // Sized for an even spread over the hosts, plus slack.
                var expected = (submissions.Count / Math.Max(1, runHosts)) + 16;
                group = (new StartRuns { HostId = host, Runs = { Capacity = expected } }, new(expected));
                byHost.Add(host, group);
            }

            group.Starts.Runs.Add(new StartRun
            {
                RunId = runId,
                Project = frame.Project,
                FrameKey = hash.Key,
                FrameField = runId,
                SourceId = frame.SourceId,
                AcceptedAtUnixMs = acceptedAt,
            });
            group.Slots.Add(i);
        }

        if (frames.Count == 0)
        {
            return outcomes;
        }

        await Task.WhenAll(frames.Values.Select(h => store.PutFramesAsync(h.Key, h.Frames)));
        var groups = byHost.Values.ToList();
        var answers = await Task.WhenAll(groups.Select(g => runs.Ask<RunsAccepted>(g.Starts, askTimeout, cancellationToken)));
        for (var g = 0; g < groups.Count; g++)
        {
            var slots = groups[g].Slots;
            var results = answers[g].Results;
            if (results.Count != slots.Count)
            {
                throw new InvalidOperationException($"run host {groups[g].Starts.HostId} answered {results.Count} of {slots.Count} starts");
            }

            for (var j = 0; j < slots.Count; j++)
            {
                outcomes[slots[j]] = results[j];
            }
        }

        // A frame no run started from (a redelivered run already holds its frame from its first
        // delivery; a rejected one needs none) would otherwise stay until the hash expires.
        if (outcomes.All(o => o.Outcome == StartOutcome.Accepted))
        {
            return outcomes;
        }

        var started = outcomes.Where(o => o.Outcome == StartOutcome.Accepted).Select(o => o.RunId).ToHashSet(StringComparer.Ordinal);
        var unused = frames.Values
            .Select(h => (h.Key, Fields: h.Frames.Select(f => f.Field).Where(f => !started.Contains(f)).Distinct().ToList()))
            .Where(h => h.Fields.Count > 0)
            .Select(h => store.DeleteFramesAsync(h.Key, h.Fields));
        await Task.WhenAll(unused);
        return outcomes;
    }

    /// <summary>Whether a run host holds the run (accepted and not long finished); asked through sharding.</summary>
    public async Task<bool> IsKnownAsync(string runId, CancellationToken cancellationToken = default) =>
        (await runs.Ask<RunStateView>(new GetRunState { RunId = runId }, askTimeout, cancellationToken)).Exists;

    private static readonly System.Buffers.SearchValues<char> RunIdCharacters =
        System.Buffers.SearchValues.Create("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.");

    private string? Problem(Frame frame, string runId)
    {
        if (!catalog.TryGet(frame.Project, out _))
        {
            return $"unknown project '{frame.Project}' (deployed: {catalog.Describe()})";
        }

        if (runId.Length is 0 or > 200 || runId.AsSpan().ContainsAnyExcept(RunIdCharacters))
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
