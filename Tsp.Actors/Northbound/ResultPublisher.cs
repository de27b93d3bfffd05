using Akka.Actor;
using Akka.Cluster.Tools.PublishSubscribe;
using StackExchange.Redis;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;

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

    /// <summary>Publishes a finished run's result, with its dead letter when it failed, then shortens
    /// its node outputs' lifetime to the finished-blob TTL. Safe to repeat, as <see cref="PublishAsync"/>.</summary>
    /// <param name="failure">The node failure that failed the run, if one did.</param>
    /// <param name="preview">Where the run's frame is, to keep a copy of it for the dashboard first; a
    /// preview that cannot be kept is skipped, never a reason not to publish.</param>
    public static async Task PublishFinishedAsync(RedisStore store, IActorRef pubSubMediator, TpResult result, NodeFailed? failure, FramePreview? preview = null)
    {
        if (preview is { } frame)
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

        var deadLetter = failure is null
            ? null
            : new DeadLetter
            {
                Project = result.Project,
                Origin = "run",
                Reference = result.RunId,
                NodeId = failure.NodeId,
                Reason = result.Error,
                AtUnixMs = result.CompletedAtUnixMs,
            };
        await PublishAsync(store, pubSubMediator, result, deadLetter);
        await store.ExpireFinishedAsync(result.Nodes.Where(n => n.OutputKey.Length > 0).Select(n => n.OutputKey));
    }
}
