using System.Threading.Channels;
using Akka.Actor;
using Akka.Cluster.Tools.PublishSubscribe;
using Tsp.Actors.Protocol;

namespace Tsp.Actors.Northbound;

/// <summary>
/// Follows projects' live TP results on DistributedPubSub and writes them to a channel. Live only:
/// <see cref="ResultFeed"/> adds replay from the results log and ordering by position.
/// </summary>
public sealed class ResultSubscriber : ReceiveActor
{
    private readonly IReadOnlyList<string> _topics;

    public ResultSubscriber(IReadOnlyCollection<string> projects, ChannelWriter<TpResult> results, TaskCompletionSource subscribed)
    {
        _topics = projects.Select(ResultPublisher.TopicFor).ToList();
        var pending = new HashSet<string>(_topics, StringComparer.Ordinal);
        Receive<SubscribeAck>(ack =>
        {
            if (pending.Remove(ack.Subscribe.Topic) && pending.Count == 0)
            {
                subscribed.TrySetResult();
            }
        });
        // A full bounded channel drops the write; its owner learns of it through the channel's callback.
        Receive<TpResult>(result => results.TryWrite(result));
    }

    protected override void PreStart()
    {
        var mediator = DistributedPubSub.Get(Context.System).Mediator;
        foreach (var topic in _topics)
        {
            mediator.Tell(new Subscribe(topic, Self));
        }
    }

    protected override void PostStop()
    {
        var mediator = DistributedPubSub.Get(Context.System).Mediator;
        foreach (var topic in _topics)
        {
            mediator.Tell(new Unsubscribe(topic, Self));
        }
    }
}

/// <summary>Starts <see cref="ResultSubscriber"/>s.</summary>
public static class ResultSubscriptions
{
    /// <summary>Subscribes and returns once the subscription is registered; stop the actor to end it.</summary>
    public static async Task<(IActorRef Subscriber, ChannelReader<TpResult> Results)> SubscribeAsync(ActorSystem system, string project, TimeSpan timeout)
    {
        var channel = Channel.CreateUnbounded<TpResult>(new UnboundedChannelOptions { SingleReader = true });
        var subscriber = await SubscribeAsync(system, [project], channel.Writer, timeout);
        return (subscriber, channel.Reader);
    }

    public static async Task<IActorRef> SubscribeAsync(ActorSystem system, IReadOnlyCollection<string> projects, ChannelWriter<TpResult> results, TimeSpan timeout)
    {
        var subscribed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var actor = system.ActorOf(Props.Create(() => new ResultSubscriber(projects, results, subscribed)));
        try
        {
            await subscribed.Task.WaitAsync(timeout);
        }
        catch
        {
            actor.Tell(PoisonPill.Instance);
            throw;
        }

        return actor;
    }
}
