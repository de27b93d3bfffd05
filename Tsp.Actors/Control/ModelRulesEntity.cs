using Akka.Actor;
using Akka.Cluster.Sharding;
using Akka.Cluster.Tools.PublishSubscribe;
using Akka.Event;
using Akka.Persistence;
using Tsp.Actors.Nodes.Onnx;
using Tsp.Actors.Protocol;

namespace Tsp.Actors.Control;

/// <summary>
/// The operator's model rules (a pinned version, unloaded), held durably by one persistent entity for
/// the cluster, published on <see cref="Topic"/> when they change and followed by every member that
/// serves models (<see cref="ModelRulesFollower"/>), which also asks for them when it starts.
/// </summary>
public sealed class ModelRulesEntity : ReceivePersistentActor
{
    public const string EntityId = "all";
    public const string Topic = "tsp-model-rules";

    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly Dictionary<string, ModelRule> _rules = new(StringComparer.Ordinal);

    public ModelRulesEntity()
    {
        Recover<ModelRule>(rule => _rules[rule.Model] = rule);
        Command<GetModelRules>(_ => Sender.Tell(State()));
        Command<ChangeModelRule>(change =>
        {
            var rule = change.Rule.Clone();
            rule.ChangedAtUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            var replyTo = Sender;
            Persist(rule, persisted =>
            {
                _rules[persisted.Model] = persisted;
                _log.Info("model '{0}': {1} by {2}", persisted.Model, persisted.Unloaded ? "unloaded" : persisted.PinnedVersion > 0 ? $"version {persisted.PinnedVersion} pinned" : "loaded (repository policy)", persisted.ChangedBy);
                DistributedPubSub.Get(Context.System).Mediator.Tell(new Publish(Topic, State()));
                replyTo.Tell(persisted);
            });
        });
    }

    public override string PersistenceId => "model-rules";

    public static Props Props() => Akka.Actor.Props.Create(() => new ModelRulesEntity());

    private ModelRules State()
    {
        var state = new ModelRules();
        state.Models.Add(_rules.Values.OrderBy(r => r.Model, StringComparer.Ordinal));
        return state;
    }
}

/// <summary>Routes every model-rules message to the one entity.</summary>
public sealed class ModelRulesExtractor() : HashCodeMessageExtractor(1)
{
    public override string? EntityId(object message) => message switch
    {
        GetModelRules or ChangeModelRule => ModelRulesEntity.EntityId,
        _ => null,
    };
}

/// <summary>On a member that serves models: applies the operator's rules to its <see cref="OnnxModels"/>,
/// asked for at start (every 2 s until answered, then every 30 s) and followed as they change.</summary>
public sealed class ModelRulesFollower : ReceiveActor, IWithTimers
{
    public const string Name = "tsp-model-rules";

    public ModelRulesFollower(IActorRef rules, OnnxModels models)
    {
        var known = false;
        var log = Context.GetLogger();
        Receive<ModelRules>(state =>
        {
            models.ApplyRules(state.Models).ContinueWith(
                t => log.Warning("applying the model rules failed: {0}", t.Exception?.GetBaseException().Message),
                CancellationToken.None,
                TaskContinuationOptions.OnlyOnFaulted,
                TaskScheduler.Default);
            if (!known)
            {
                known = true;
                Timers!.StartPeriodicTimer("ask", AskRules.Instance, TimeSpan.FromSeconds(30));
            }
        });
        Receive<AskRules>(_ => rules.Tell(new GetModelRules()));
        Receive<SubscribeAck>(_ => { });
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(IActorRef rules, OnnxModels models) => Akka.Actor.Props.Create(() => new ModelRulesFollower(rules, models));

    protected override void PreStart()
    {
        DistributedPubSub.Get(Context.System).Mediator.Tell(new Subscribe(ModelRulesEntity.Topic, Self));
        Self.Tell(AskRules.Instance);
        Timers.StartPeriodicTimer("ask", AskRules.Instance, TimeSpan.FromSeconds(2));
    }

    private sealed record AskRules
    {
        public static readonly AskRules Instance = new();
    }
}
