using Akka.Actor;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Actors.Telemetry;
using Tsp.Actors.Workflows;

namespace Tsp.Actors.Ingest;

/// <summary>A Kafka record's frame on its way to a run (see <see cref="RunSubmitter.SubmitPartitionRunsAsync"/>).</summary>
public readonly record struct PartitionRun(DecodedFrame Frame, int Partition, long Offset);

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
        // A frame submitted alone is stored as any other: a frame string of one (Storage/FrameLeases).
        return (await SubmitBatchAsync([(frame, runId)], cancellationToken))[0];
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
        var submitted = DateTimeOffset.UtcNow;
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
                group = new HostGroup(host.Item1, frame.Project, (submissions.Count / Math.Max(1, runHosts)) + 16);
                byHost.Add(host, group);
            }

            group.Add(i, frame.Data.Memory);
        }

        if (byHost.Count == 0)
        {
            return outcomes;
        }

        var groups = byHost.Values.ToArray();
        var answers = await WriteFramesAndStartAsync(groups, (group, frameKey, acceptedAt, buffer) =>
        {
            var project = group.Project;
            var offset = 0;
            foreach (var slot in group.Slots)
            {
                var (frame, runId) = submissions[slot];
                if (buffer.Length > 0)
                {
                    frame.Data.Span.CopyTo(buffer.AsSpan(offset));
                }

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

            return offset;
        }, cancellationToken);
        for (var g = 0; g < groups.Length; g++)
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

        if (TspTracing.Enabled)
        {
            for (var i = 0; i < submissions.Count; i++)
            {
                TraceIngest(submissions[i].RunId, submissions[i].Frame.Project, outcomes[i].Outcome, outcomes[i].Error, submitted);
            }
        }

        return outcomes;
    }

    /// <summary>The run's ingest span, recorded once its start is answered: from the submission to the
    /// durable start (or its rejection).</summary>
    private static void TraceIngest(string runId, string project, StartOutcome outcome, string? error, DateTimeOffset submitted)
    {
        var span = TspTracing.StartRunSpan("tsp.ingest", runId, project, submitted);
        span?.SetTag("tsp.outcome", outcome.ToString());
        TspTracing.End(span, outcome == StartOutcome.Rejected ? error : null);
    }

    /// <summary>Submits a Kafka batch's runs of one project: run <c>i</c>'s id is
    /// <c>KafkaRunId.Of(topic, runs[i].Partition, runs[i].Offset)</c>. As
    /// <see cref="SubmitBatchAsync"/>, but the runs travel to their hosts — and are journaled and queued
    /// there — in columnar form (<see cref="StartRuns.Series"/>: per partition a run id prefix and the
    /// offsets), and no run id string is built here.</summary>
    /// <param name="runs">Each partition's runs in increasing offset order.</param>
    /// <returns>One outcome per run, in order, and the reasons of rejected ones (null when none was).</returns>
    /// <exception cref="Exception">As <see cref="SubmitBatchAsync"/>: resubmitting is safe.</exception>
    public async Task<(StartOutcome[] Outcomes, string?[]? Errors)> SubmitPartitionRunsAsync(string project, string topic, ArraySegment<PartitionRun> runs, CancellationToken cancellationToken = default)
    {
        var submitted = DateTimeOffset.UtcNow;
        var outcomes = new StartOutcome[runs.Count];
        string?[]? errors = null;
        void Reject(int i, string error)
        {
            outcomes[i] = StartOutcome.Rejected;
            (errors ??= new string?[runs.Count])[i] = error;
        }

        // Room for the longest run id: the topic, '-', an int partition, '-' and a long offset (≤ 31 more).
        var problem = !catalog.TryGet(project, out _) ? $"unknown project '{project}' (deployed: {catalog.Describe()})"
            : topic.Length == 0 || topic.Length + 32 > 200 || topic.AsSpan().ContainsAnyExcept(RunIdCharacters) ? $"topic '{topic}' cannot name runs: run ids may hold only 1 to 200 letters, digits, '-', '_' and '.'"
            : null;
        var byHost = new Dictionary<string, HostGroup>();
        Span<byte> runId = stackalloc byte[256];
        var prefixes = new Dictionary<int, string>();
        var lastPartition = -1;
        var prefixLength = 0;
        for (var i = 0; i < runs.Count; i++)
        {
            var run = runs[i];
            if ((problem ?? FrameProblem(project, run.Frame.Data.Length)) is { } error)
            {
                Reject(i, error);
                continue;
            }

            if (run.Partition != lastPartition)
            {
                if (!prefixes.TryGetValue(run.Partition, out var prefix))
                {
                    prefixes.Add(run.Partition, prefix = KafkaRunId.Prefix(topic, run.Partition));
                }

                prefixLength = System.Text.Encoding.UTF8.GetBytes(prefix, runId);
                lastPartition = run.Partition;
            }

            var host = RunMessageExtractor.HostOfUtf8(runId[..KafkaRunId.WriteUtf8(runId, prefixLength, run.Offset)], runHosts);
            if (!byHost.TryGetValue(host, out var group))
            {
                group = new HostGroup(host, project, (runs.Count / Math.Max(1, runHosts)) + 16);
                byHost.Add(host, group);
            }

            group.AddToSeries(i, run.Partition, run.Frame.Data);
        }

        if (byHost.Count == 0)
        {
            return (outcomes, errors);
        }

        var groups = byHost.Values.ToArray();
        var answers = await WriteFramesAndStartAsync(groups, (group, frameKey, acceptedAt, buffer) =>
        {
            var common = new RunStarted { Project = project, FrameKey = frameKey, AcceptedAtUnixMs = acceptedAt };
            var offset = 0;
            foreach (var (partition, slots) in group.SeriesSlots)
            {
                var series = new RunsStarted { Common = common, RunIdPrefix = prefixes[partition] };
                series.RunOffsets.Capacity = series.FrameOffsets.Capacity = series.FrameLengths.Capacity = slots.Count;
                foreach (var slot in slots)
                {
                    var frame = runs[slot].Frame;
                    if (buffer.Length > 0)
                    {
                        frame.Data.Span.CopyTo(buffer.AsSpan(offset));
                    }

                    series.RunOffsets.Add(runs[slot].Offset);
                    series.FrameOffsets.Add((uint)offset);
                    series.FrameLengths.Add((uint)frame.Data.Length);
                    if (frame.SourceId.Length > 0 && series.SourceIds.Count < series.RunOffsets.Count - 1)
                    {
                        // Source ids are sent only once a run has one: back-fill the runs before it.
                        series.SourceIds.Add(Enumerable.Repeat(string.Empty, series.RunOffsets.Count - 1 - series.SourceIds.Count));
                    }

                    if (series.SourceIds.Count > 0 || frame.SourceId.Length > 0)
                    {
                        series.SourceIds.Add(frame.SourceId);
                    }

                    offset += frame.Data.Length;
                }

                group.Starts.Series.Add(series);
            }

            return offset;
        }, cancellationToken);
        for (var g = 0; g < groups.Length; g++)
        {
            var slots = groups[g].Slots;
            var answer = answers[g];
            if (answer.Outcomes.Count != slots.Count || (answer.Errors.Count != 0 && answer.Errors.Count != slots.Count))
            {
                throw new InvalidOperationException($"run host {groups[g].Starts.HostId} answered {answer.Outcomes.Count} of {slots.Count} starts");
            }

            for (var j = 0; j < slots.Count; j++)
            {
                outcomes[slots[j]] = answer.Outcomes[j];
                if (answer.Errors.Count > 0 && answer.Errors[j].Length > 0)
                {
                    (errors ??= new string?[runs.Count])[slots[j]] = answer.Errors[j];
                }
            }
        }

        if (TspTracing.Enabled)
        {
            for (var i = 0; i < runs.Count; i++)
            {
                TraceIngest(KafkaRunId.Of(topic, runs[i].Partition, runs[i].Offset), project, outcomes[i], errors?[i], submitted);
            }
        }

        return (outcomes, errors);
    }

    /// <summary>Writes each group's frames to Redis as one string (<paramref name="fill"/> copies them
    /// into the buffer and builds the group's starts naming the string; it returns the bytes used), then
    /// asks each group's host to start its runs. A group of one frame is written from the frame's own
    /// bytes: its buffer is empty, and <paramref name="fill"/> copies nothing. A string from which no
    /// run started (all redelivered, say) is not the host's: it is deleted now instead of when it
    /// expires.</summary>
    private async Task<RunsAccepted[]> WriteFramesAndStartAsync(HostGroup[] groups, Func<HostGroup, string, long, byte[], int> fill, CancellationToken cancellationToken)
    {
        var acceptedAt = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var buffers = new byte[groups.Length][];
        var frameKeys = new string[groups.Length];
        var writes = new Task[groups.Length];
        for (var g = 0; g < groups.Length; g++)
        {
            var group = groups[g];
            var only = group.OnlyFrame;
            var buffer = buffers[g] = only is null ? System.Buffers.ArrayPool<byte>.Shared.Rent((int)group.Bytes) : [];
            frameKeys[g] = RedisKeys.Frames(group.Project, Guid.CreateVersion7().ToString("N"));
            var used = fill(group, frameKeys[g], acceptedAt, buffer);
            writes[g] = FrameLeases.WriteAsync(store, frameKeys[g], only ?? buffer.AsMemory(0, used));
        }

        // On failure the buffers are left to the collector: a write still queued in the client may read them.
        await Task.WhenAll(writes);
        foreach (var buffer in buffers)
        {
            if (buffer.Length > 0)
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        var answers = await Task.WhenAll(groups.Select(g => runs.Ask<RunsAccepted>(g.Starts, askTimeout, cancellationToken)));
        List<string>? unused = null;
        for (var g = 0; g < groups.Length; g++)
        {
            if (!answers[g].Results.Any(r => r.Outcome == StartOutcome.Accepted) && !answers[g].Outcomes.Contains(StartOutcome.Accepted))
            {
                (unused ??= []).Add(frameKeys[g]);
            }
        }

        if (unused is not null)
        {
            await store.DeleteBlobsAsync(unused);
        }

        return answers;
    }

    /// <summary>The runs of a batch that go to one host (and project): their slots in the batch, in the
    /// order the host answers them, and their frames' total size.</summary>
    private sealed class HostGroup(string host, string project, int expected)
    {
        /// <summary>A Redis string holds at most 512 MiB.</summary>
        private const long MaxBytes = 512L * 1024 * 1024;

        private List<(int Partition, List<int> Slots)>? _series;
        private List<int>? _slots;
        private int _frames;

        public StartRuns Starts { get; } = new() { HostId = host };

        public string Project => project;

        /// <summary>Slots in answer order: as added, or series by series.</summary>
        public List<int> Slots => _slots ??= _series is null ? new List<int>(expected) : [.. _series.SelectMany(s => s.Slots)];

        /// <summary>Per partition, in order of first appearance, the slots of its runs.</summary>
        public IReadOnlyList<(int Partition, List<int> Slots)> SeriesSlots => _series ?? [];

        public long Bytes { get; private set; }

        /// <summary>The group's frame while it has only one (null once it has more).</summary>
        public ReadOnlyMemory<byte>? OnlyFrame { get; private set; }

        public void Add(int slot, ReadOnlyMemory<byte> frame)
        {
            CountBytes(frame);
            Slots.Add(slot);
        }

        public void AddToSeries(int slot, int partition, ReadOnlyMemory<byte> frame)
        {
            CountBytes(frame);
            _series ??= [];
            // Runs arrive partition by partition, mostly: the last series is the likely one.
            var index = _series.Count > 0 && _series[^1].Partition == partition ? _series.Count - 1 : _series.FindIndex(s => s.Partition == partition);
            if (index < 0)
            {
                _series.Add((partition, new List<int>(expected)));
                index = _series.Count - 1;
            }

            _series[index].Slots.Add(slot);
        }

        private void CountBytes(ReadOnlyMemory<byte> frame)
        {
            if (Bytes + frame.Length > MaxBytes)
            {
                throw new ArgumentException($"the frames of one batch's runs on run host {host} exceed {MaxBytes} bytes; submit smaller batches");
            }

            // Typed as nullable: a bare null would convert to an empty ReadOnlyMemory (through byte[]).
            OnlyFrame = _frames++ == 0 ? (ReadOnlyMemory<byte>?)frame : null;
            Bytes += frame.Length;
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

        return FrameProblem(frame.Project, frame.Data.Length);
    }

    private string? FrameProblem(string project, int length)
    {
        if (length == 0)
        {
            return $"frame for project '{project}' is empty";
        }

        if (length > maxFrameBytes)
        {
            return $"frame of {length} bytes exceeds the maximum of {maxFrameBytes} bytes";
        }

        return null;
    }
}
