using System.Threading.Channels;
using Akka.Actor;
using Akka.Cluster.Tools.PublishSubscribe;
using Tsp.Actors.Protocol;
using Tsp.Actors.Workflows;

namespace Tsp.Actors.Northbound;

/// <summary>
/// Subscribes to a project's TP results on DistributedPubSub and writes them to a channel, for
/// in-process consumers (the demo, tests, and later the gRPC gateway). Delivery here is live only;
/// replay from a position reads the results log in Redis.
/// </summary>
public sealed class ResultSubscriber : ReceiveActor
{
    private readonly string _topic;
    private readonly TaskCompletionSource _subscribed;

    public ResultSubscriber(string project, ChannelWriter<TpResult> results, TaskCompletionSource subscribed)
    {
        _topic = ResultTopics.For(project);
        _subscribed = subscribed;
        Receive<SubscribeAck>(_ => _subscribed.TrySetResult());
        Receive<TpResult>(result => results.TryWrite(result));
    }

    protected override void PreStart() =>
        DistributedPubSub.Get(Context.System).Mediator.Tell(new Subscribe(_topic, Self));

    protected override void PostStop() =>
        DistributedPubSub.Get(Context.System).Mediator.Tell(new Unsubscribe(_topic, Self));
}

/// <summary>Starts <see cref="ResultSubscriber"/>s.</summary>
public static class ResultSubscriptions
{
    /// <summary>Subscribes and returns once the subscription is registered; stop the actor to end it.</summary>
    public static async Task<(IActorRef Subscriber, ChannelReader<TpResult> Results)> SubscribeAsync(ActorSystem system, string project, TimeSpan timeout)
    {
        var channel = Channel.CreateUnbounded<TpResult>(new UnboundedChannelOptions { SingleReader = true });
        var subscribed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var actor = system.ActorOf(Props.Create(() => new ResultSubscriber(project, channel.Writer, subscribed)));
        await subscribed.Task.WaitAsync(timeout);
        return (actor, channel.Reader);
    }
}
