using Akka.Actor;
using Akka.Cluster.Tools.PublishSubscribe;
using StackExchange.Redis;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Actors.Telemetry;

namespace Tsp.Actors.Northbound;

/// <summary>
/// How a TP result leaves the cluster: appended to the project's results log in Redis (its position
/// is assigned there, atomically), then published live on the project's topic. Subscribers replay
/// from the log and follow the topic (<see cref="ResultFeed"/>).
/// </summary>
public static class ResultPublisher
{
    public static string TopicFor(string project) => $"tp.{project}";

    /// <summary>Safe to repeat: a run already logged keeps its one entry, position and dead letter;
    /// live subscribers drop the positions they have seen.</summary>
    public static async Task PublishAsync(RedisStore store, IActorRef pubSubMediator, TpResult result, DeadLetter? deadLetter = null)
    {
        await store.AppendResultAsync(result, deadLetter);
        pubSubMediator.Tell(new Publish(TopicFor(result.Project), result));
    }

    /// <summary>Publishes a finished run's result, with its dead letter when it failed: first writes the
    /// outputs only its host held, then appends the result, then shortens the other node outputs'
    /// lifetime to the finished-blob TTL. A subscriber that reads a result finds every output it names.
    /// Safe to repeat, as <see cref="PublishAsync"/>.</summary>
    /// <param name="failure">The node failure that failed the run, if one did: its dead letter keeps a
    /// copy of the frame (<see cref="StorageOptions.DeadFrameTtl"/>) so the run can be redriven, and a
    /// redriven run that failed again names the reason it failed the first time too.</param>
    /// <param name="frame">Where the run's frame is (still held: it is released after this).</param>
    /// <param name="keepPreview">Keep a copy of the frame for the dashboard first; a preview that cannot
    /// be kept is skipped, never a reason not to publish.</param>
    /// <param name="heldOutputs">Node outputs by key that no worker wrote (deferred, <see cref="NodeTask.DeferOutputUnderUs"/>).</param>
    public static async Task PublishFinishedAsync(RedisStore store, IActorRef pubSubMediator, TpResult result, NodeFailed? failure, RunFrame frame, bool keepPreview = false, IReadOnlyList<KeyValuePair<string, ReadOnlyMemory<byte>>>? heldOutputs = null)
    {
        var held = heldOutputs ?? [];
        var outputsWritten = held.Count > 0 ? WriteHeldOutputsAsync(store, held) : Task.CompletedTask;
        if (keepPreview)
        {
            try
            {
                await store.KeepPreviewAsync(result.Project, result.RunId, frame.FrameKey, frame.Slice);
            }
            catch (RedisException)
            {
                // Only a preview.
            }
        }

        var deadLetter = failure is null ? null : await DeadLetterOfAsync(store, result, failure);
        await outputsWritten;
        await store.AppendResultAsync(result, deadLetter, deadLetter is null ? null : frame);
        pubSubMediator.Tell(new Publish(TopicFor(result.Project), result));
        await store.ExpireFinishedAsync(WrittenOutputs(result, held));
    }

    private static async Task WriteHeldOutputsAsync(RedisStore store, IReadOnlyList<KeyValuePair<string, ReadOnlyMemory<byte>>> held)
    {
        using var span = TspTracing.Source.StartActivity("tsp.redis write outputs", System.Diagnostics.ActivityKind.Client);
        span?.SetTag("tsp.outputs", held.Count);
        await store.PutFinishedBlobsAsync(held);
    }

    private static List<string> WrittenOutputs(TpResult result, IReadOnlyList<KeyValuePair<string, ReadOnlyMemory<byte>>> held)
    {
        var keys = new List<string>(result.Nodes.Count);
        foreach (var node in result.Nodes)
        {
            if (node.OutputKey.Length > 0 && !held.Any(h => h.Key == node.OutputKey))
            {
                keys.Add(node.OutputKey);
            }
        }

        return keys;
    }

    private static async Task<DeadLetter> DeadLetterOfAsync(RedisStore store, TpResult result, NodeFailed failure)
    {
        var deadLetter = new DeadLetter
        {
            Project = result.Project,
            Origin = "run",
            Reference = result.RunId,
            NodeId = failure.NodeId,
            Reason = result.Error,
            AtUnixMs = result.CompletedAtUnixMs,
            SourceId = result.SourceId,
            FrameKey = RedisKeys.DeadFrame(result.Project, result.RunId),
        };
        if (result.RedriveOf.Length > 0)
        {
            deadLetter.RedriveOf = result.RedriveOf;
            if (await store.GetRedrivenAsync(result.Project, result.RunId) is { } earlier)
            {
                deadLetter.Reason = $"{result.Error}; redriven from {earlier.Reference}, which failed with: {earlier.Reason}";
            }
        }

        return deadLetter;
    }
}
