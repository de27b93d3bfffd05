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

    /// <summary>Submits many frames with caller-chosen run ids (e.g. a Kafka batch). The runs are
    /// grouped by run host; each group's frames go to Redis as one string (one SET, its runs' frames
    /// back to back: a run's start names its byte range), and its starts go to the host as one
    /// <see cref="StartRuns"/>, which the host persists as one journal write. The host then owns the
    /// string: it deletes it when the last of the group's runs has finished.</summary>
    /// <returns>One outcome per submission, in order; Rejected with a reason for bad input.</returns>
    /// <exception cref="Exception">When the starts could not be confirmed (ask timeout, journal down):
    /// nothing is known about them, and submitting the same batch again is safe.</exception>
    public async Task<RunAccepted[]> SubmitBatchAsync(IReadOnlyList<(Frame Frame, string RunId)> submissions, CancellationToken cancellationToken = default)
    {
        var outcomes = new RunAccepted[submissions.Count];
        var byHost = new Dictionary<(string Host, string Project), HostGroup>();
        for (var i = 0; i < submissions.Count; i++)
        {
            var (frame, runId) = submissions[i];
            if (Problem(frame, runId) is { } problem)
            {
                outcomes[i] = new RunAccepted { RunId = runId, Outcome = StartOutcome.Rejected, Error = problem };
                continue;
            }

            var host = (RunMessageExtractor.HostOf(runId, runHosts), frame.Project);
            if (!byHost.TryGetValue(host, out var group))
            {
                // Sized for an even spread over the hosts, plus slack.
                group = new HostGroup(host.Item1, (submissions.Count / Math.Max(1, runHosts)) + 16);
                byHost.Add(host, group);
            }

            group.Add(i, frame.Data.Length);
        }

        if (byHost.Count == 0)
        {
            return outcomes;
        }

        var groups = byHost.Values.ToArray();
        var acceptedAt = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var buffers = new byte[groups.Length][];
        var writes = new Task[groups.Length];
        for (var g = 0; g < groups.Length; g++)
        {
            var group = groups[g];
            var buffer = buffers[g] = System.Buffers.ArrayPool<byte>.Shared.Rent((int)group.Bytes);
            var project = submissions[group.Slots[0]].Frame.Project;
            var frameKey = RedisKeys.FrameBatch(project, Guid.CreateVersion7().ToString("N"));
            var offset = 0;
            foreach (var slot in group.Slots)
            {
                var (frame, runId) = submissions[slot];
                frame.Data.Span.CopyTo(buffer.AsSpan(offset));
                group.Starts.Runs.Add(new StartRun
                {
                    RunId = runId,
                    Project = project,
                    FrameKey = frameKey,
                    FrameOffset = (uint)offset,
                    FrameLength = (uint)frame.Data.Length,
                    SourceId = frame.SourceId,
                    AcceptedAtUnixMs = acceptedAt,
                });
                offset += frame.Data.Length;
            }

            writes[g] = store.PutBlobAsync(frameKey, buffer.AsMemory(0, offset));
        }

        // On failure the buffers are left to the collector: a write still queued in the client may read them.
        await Task.WhenAll(writes);
        foreach (var buffer in buffers)
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }

        var answers = await Task.WhenAll(groups.Select(g => runs.Ask<RunsAccepted>(g.Starts, askTimeout, cancellationToken)));
        List<string>? unused = null;
        for (var g = 0; g < groups.Length; g++)
        {
            var slots = groups[g].Slots;
            var results = answers[g].Results;
            if (results.Count != slots.Count)
            {
                throw new InvalidOperationException($"run host {groups[g].Starts.HostId} answered {results.Count} of {slots.Count} starts");
            }

            var anyAccepted = false;
            for (var j = 0; j < slots.Count; j++)
            {
                outcomes[slots[j]] = results[j];
                anyAccepted |= results[j].Outcome == StartOutcome.Accepted;
            }

            // A string no run started from (all redelivered, say) is not the host's: it goes now
            // instead of when it expires.
            if (!anyAccepted)
            {
                (unused ??= []).Add(groups[g].Starts.Runs[0].FrameKey);
            }
        }

        if (unused is not null)
        {
            await store.DeleteBlobsAsync(unused);
        }

        return outcomes;
    }

    /// <summary>The runs of a batch that go to one host (and project): their slots in the batch and
    /// their frames' total size.</summary>
    private sealed class HostGroup(string host, int expected)
    {
        /// <summary>A Redis string holds at most 512 MiB.</summary>
        private const long MaxBytes = 512L * 1024 * 1024;

        public StartRuns Starts { get; } = new() { HostId = host, Runs = { Capacity = expected } };

        public List<int> Slots { get; } = new(expected);

        public long Bytes { get; private set; }

        public void Add(int slot, int frameBytes)
        {
            if (Bytes + frameBytes > MaxBytes)
            {
                throw new ArgumentException($"the frames of one batch's runs on run host {host} exceed {MaxBytes} bytes; submit smaller batches");
            }

            Slots.Add(slot);
            Bytes += frameBytes;
        }
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
