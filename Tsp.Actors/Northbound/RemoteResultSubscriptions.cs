using System.Threading.Channels;
using Akka.Actor;
using Akka.Cluster.Tools.Client;
using Akka.Event;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;

namespace Tsp.Actors.Northbound;

/// <summary>
/// The orchestrator's receptionist service for Akka remote subscribers (ClusterClient): each
/// <see cref="SubscribeResults"/> starts a <see cref="RemoteResultSubscription"/> that sends the
/// project's results, with positions, straight to the subscribing actor.
/// </summary>
public sealed class RemoteResultService : ReceiveActor
{
    /// <summary>The path ClusterClient sends to: <c>/user/tsp-results</c>.</summary>
    public const string Name = "tsp-results";
    public const string Path = "/user/" + Name;

    public RemoteResultService(IProjectDirectory projects, RedisStore store, int bufferSize, TimeSpan timeout)
    {
        Receive<SubscribeResults>(request =>
        {
            IActorRef subscriber;
            try
            {
                subscriber = ((ExtendedActorSystem)Context.System).Provider.ResolveActorRef(request.Subscriber);
            }
            catch (Exception e)
            {
                Context.GetLogger().Warning("result subscription with an unresolvable subscriber '{0}': {1}", request.Subscriber, e.Message);
                return;
            }

            IReadOnlyDictionary<string, long?> starts;
            try
            {
                starts = projects.IsDeployed(request.Project)
                    ? FeedStart.Parse(request.From, [request.Project])
                    : throw new FormatException($"unknown project '{request.Project}' (deployed: {projects.Describe()})");
            }
            catch (FormatException e)
            {
                subscriber.Tell(new ResultSubscriptionEnded { Project = request.Project, Reason = e.Message });
                return;
            }

            Context.ActorOf(Props.Create(() => new RemoteResultSubscription(store, request.Project, starts, subscriber, bufferSize, timeout)));
        });
    }
}

/// <summary>One remote subscriber's feed; stops when the subscriber's system goes away.</summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA1001", Justification = "An actor's lifetime ends in PostStop, which disposes it.")]
public sealed class RemoteResultSubscription : ReceiveActor
{
    private readonly CancellationTokenSource _stop = new();

    public RemoteResultSubscription(RedisStore store, string project, IReadOnlyDictionary<string, long?> starts, IActorRef subscriber, int bufferSize, TimeSpan timeout)
    {
        var self = Self;
        Context.Watch(subscriber);
        Receive<Terminated>(_ => Context.Stop(Self));
        Receive<Status.Failure>(failure =>
        {
            subscriber.Tell(new ResultSubscriptionEnded { Project = project, Reason = failure.Cause.Message });
            Context.Stop(Self);
        });
        Receive<ResultSubscriptionEnded>(ended =>
        {
            subscriber.Tell(ended);
            Context.Stop(Self);
        });

        PumpAsync().PipeTo(self, failure: e => new Status.Failure(e));

        // Tell never blocks, so this loop keeps pace with the log; remoting carries the results in order.
        async Task<ResultSubscriptionEnded> PumpAsync()
        {
            await using var feed = await ResultFeed.OpenAsync(Context.System, store, starts, bufferSize, timeout);
            subscriber.Tell(new ResultSubscriptionStarted { Project = project, FromPosition = feed.Next[project] }, self);
            try
            {
                await foreach (var result in feed.ReadAllAsync(_stop.Token))
                {
                    subscriber.Tell(result, self);
                }
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
            }

            return new ResultSubscriptionEnded { Project = project, Reason = "subscription stopped", ResumeFrom = feed.Next[project] };
        }
    }

    protected override void PostStop()
    {
        _stop.Cancel();
        _stop.Dispose();
    }
}

/// <summary>
/// The subscriber side, for external Akka.NET systems: subscribes through a ClusterClient, writes the
/// results to a channel in position order, and re-subscribes from its next position when the serving
/// orchestrator goes away, so a failover neither loses nor repeats a result.
/// </summary>
public sealed class RemoteResultSubscriber : ReceiveActor, IWithTimers
{
    private readonly IActorRef _clusterClient;
    private readonly string _project;
    private string _from;
    private long _next;
    private IActorRef? _serving;

    /// <param name="started">Completed with the address of the orchestrator that serves the subscription first.</param>
    public RemoteResultSubscriber(IActorRef clusterClient, string project, string from, ChannelWriter<TpResult> results, TaskCompletionSource<Address> started)
    {
        _clusterClient = clusterClient;
        _project = project;
        _from = from;
        Receive<ResultSubscriptionStarted>(s =>
        {
            if (_serving is not null && !_serving.Equals(Sender))
            {
                // A retried request was answered twice: one subscription is enough.
                Sender.Tell(PoisonPill.Instance);
                return;
            }

            Timers.Cancel("subscribe");
            _serving = Sender;
            Context.Watch(Sender);
            _next = Math.Max(_next, s.FromPosition);
            started.TrySetResult(Sender.Path.Address);
        });
        Receive<TpResult>(result =>
        {
            if (result.Position >= _next)
            {
                _next = result.Position + 1;
                results.TryWrite(result);
            }
        });
        Receive<ResultSubscriptionEnded>(ended =>
        {
            var error = new InvalidOperationException($"subscription to '{ended.Project}' ended: {ended.Reason}");
            started.TrySetException(error);
            results.TryComplete(error);
            Context.Stop(Self);
        });
        Receive<Terminated>(t =>
        {
            if (t.ActorRef.Equals(_serving))
            {
                // The orchestrator serving us is gone: the receptionist finds another, and we go on from our next position.
                _serving = null;
                _from = _next.ToString(System.Globalization.CultureInfo.InvariantCulture);
                Subscribe();
            }
        });
        Receive<RetrySubscribe>(_ =>
        {
            if (_serving is null)
            {
                Subscribe();
            }
        });
    }

    public ITimerScheduler Timers { get; set; } = null!;

    protected override void PreStart() => Subscribe();

    private void Subscribe()
    {
        _clusterClient.Tell(new ClusterClient.Send(RemoteResultService.Path, new SubscribeResults
        {
            Project = _project,
            From = _from,
            Subscriber = Akka.Serialization.Serialization.SerializedActorPath(Self),
        }));
        // Until a subscription answers (the client may not be connected yet), ask again.
        Timers.StartSingleTimer("subscribe", RetrySubscribe.Instance, TimeSpan.FromSeconds(3));
    }

    internal sealed record RetrySubscribe
    {
        public static readonly RetrySubscribe Instance = new();
    }
}

/// <summary>Starts the remote result service (orchestrators) and remote subscriptions (external systems).</summary>
public static class RemoteResults
{
    public static void Register(ActorSystem system, IProjectDirectory projects, RedisStore store, int bufferSize, TimeSpan timeout)
    {
        var service = system.ActorOf(Props.Create(() => new RemoteResultService(projects, store, bufferSize, timeout)), RemoteResultService.Name);
        ClusterClientReceptionist.Get(system).RegisterService(service);
    }

    /// <summary>Subscribes to a project through <paramref name="clusterClient"/>; stop the subscriber actor to end it.
    /// If the serving orchestrator goes away, the subscription moves to another and goes on from its next position.</summary>
    /// <param name="from">As in the gRPC Subscribe: "latest", "earliest" or a position.</param>
    public static async Task<RemoteSubscription> SubscribeAsync(
        ActorSystem system, IActorRef clusterClient, string project, string from, TimeSpan timeout)
    {
        var channel = Channel.CreateUnbounded<TpResult>(new UnboundedChannelOptions { SingleReader = true });
        var started = new TaskCompletionSource<Address>(TaskCreationOptions.RunContinuationsAsynchronously);
        var actor = system.ActorOf(Props.Create(() => new RemoteResultSubscriber(clusterClient, project, from, channel.Writer, started)));
        var servedBy = await started.Task.WaitAsync(timeout);
        return new RemoteSubscription(actor, channel.Reader, servedBy);
    }
}

/// <param name="Subscriber">The subscribing actor; stop it to end the subscription.</param>
/// <param name="Results">The project's results in position order, each once.</param>
/// <param name="ServedBy">The orchestrator that served the subscription when it started.</param>
public sealed record RemoteSubscription(IActorRef Subscriber, ChannelReader<TpResult> Results, Address ServedBy)
{
    public void Deconstruct(out IActorRef subscriber, out ChannelReader<TpResult> results) => (subscriber, results) = (Subscriber, Results);
}
