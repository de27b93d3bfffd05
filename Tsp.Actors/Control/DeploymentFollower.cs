using Akka.Actor;
using Akka.Cluster.Tools.PublishSubscribe;
using Akka.Event;
using Tsp.Actors.Nodes;
using Tsp.Actors.Protocol;
using Tsp.Actors.Workflows;

namespace Tsp.Actors.Control;

/// <summary>
/// Keeps an orchestrator's <see cref="WorkflowCatalog"/> in step with the workflows deployed through
/// TspControl (<see cref="WorkflowDeployments"/>): asks for them when it starts (every 2 s until
/// answered, then every 30 s in case a published change was lost) and applies every published
/// change. A new current version gets its queues and ingest, a removed project loses its ingest;
/// run hosts are told (<see cref="CatalogChanged"/>) so the runs that waited for a version go on.
/// </summary>
public sealed class DeploymentFollower : ReceiveActor, IWithTimers
{
    public const string Name = "tsp-deployments";
    private const string AskTimer = "ask";

    private readonly IActorRef _deployments;
    private readonly WorkflowCatalog _catalog;
    private readonly NodeProcessorRegistry _processors;
    private readonly Action<WorkflowDefinition> _known;
    private readonly Action<WorkflowDefinition> _deployed;
    private readonly Action<string> _removed;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    // By version hash (a hash of the workflow's text, its project included).
    private readonly Dictionary<string, WorkflowDefinition?> _parsed = new(StringComparer.Ordinal);
    private bool _arrived;

    /// <param name="known">Called with each version before the catalog knows it, so before any run
    /// can take it (a run recovered on that version is dispatched as soon as it is known): what its
    /// nodes need, their queues, must exist by then.</param>
    /// <param name="deployed">Called with each workflow that becomes its project's current version.</param>
    /// <param name="removed">Called with each project removed.</param>
    public DeploymentFollower(IActorRef deployments, WorkflowCatalog catalog, NodeProcessorRegistry processors, Action<WorkflowDefinition> known, Action<WorkflowDefinition> deployed, Action<string> removed)
    {
        _deployments = deployments;
        _catalog = catalog;
        _processors = processors;
        _known = known;
        _deployed = deployed;
        _removed = removed;
        Receive<Deployments>(Apply);
        Receive<ApplyDeployments>(apply =>
        {
            Apply(apply.State);
            Sender.Tell(Akka.Done.Instance);
        });
        Receive<AskDeployments>(_ => _deployments.Tell(new GetDeployments()));
        Receive<SubscribeAck>(_ => { });
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(IActorRef deployments, WorkflowCatalog catalog, NodeProcessorRegistry processors, Action<WorkflowDefinition> known, Action<WorkflowDefinition> deployed, Action<string> removed) =>
        Akka.Actor.Props.Create(() => new DeploymentFollower(deployments, catalog, processors, known, deployed, removed));

    protected override void PreStart()
    {
        DistributedPubSub.Get(Context.System).Mediator.Tell(new Subscribe(WorkflowDeployments.Topic, Self));
        Self.Tell(AskDeployments.Instance);
        Timers.StartPeriodicTimer(AskTimer, AskDeployments.Instance, TimeSpan.FromSeconds(2));
    }

    private void Apply(Deployments state)
    {
        foreach (var project in state.Projects)
        {
            Apply(project);
        }

        if (!_arrived)
        {
            _arrived = true;
            _catalog.DeploymentsArrived();
            Timers.StartPeriodicTimer(AskTimer, AskDeployments.Instance, TimeSpan.FromSeconds(30));
        }

        Context.System.EventStream.Publish(CatalogChanged.Instance);
    }

    private void Apply(DeployedProject project)
    {
        var versions = project.Versions.Select(Parse).ToList();
        foreach (var version in versions.Where(v => v is not null))
        {
            _known(version!);
            _catalog.Remember(version!);
        }

        if (project.Removed)
        {
            if (_catalog.Remove(project.Project))
            {
                _log.Info("project '{0}' removed: no new runs; its runs in flight finish", project.Project);
                _removed(project.Project);
            }

            return;
        }

        if (versions.Count == 0 || versions[^1] is not { } current)
        {
            return;
        }

        var before = _catalog.TryGet(project.Project, out var deployed) ? deployed : null;
        if (before?.Hash == current.Hash)
        {
            return;
        }

        if (!_arrived && before is not null)
        {
            _log.Warning("project '{0}': the workflow this process started with ({1}, version {2}) is not the one deployed through TspControl (version {3}), which stays; deploy the file to use it", project.Project, before.Source, before.Hash, current.Hash);
        }

        _catalog.Deploy(current);
        _log.Info("project '{0}': new runs take workflow version {1}{2}", project.Project, current.Hash, before is null ? "" : $" (was {before.Hash})");
        _deployed(current);
    }

    /// <summary>A deployed version as this orchestrator's processors read it; null (logged once) when it
    /// does not validate here, e.g. a processor this orchestrator lacks.</summary>
    private WorkflowDefinition? Parse(WorkflowVersion version)
    {
        if (_parsed.TryGetValue(version.Hash, out var known))
        {
            return known;
        }

        WorkflowDefinition? parsed = null;
        try
        {
            parsed = WorkflowLoader.Parse(version.Yaml, version.Source, _processors.Names);
            WorkflowContracts.Check(parsed, _processors);
        }
        catch (WorkflowValidationException e)
        {
            _log.Error("deployed workflow version {0} ({1}) does not validate on this orchestrator, which keeps what it has: {2}", version.Hash, version.Source, e.Message);
            parsed = null;
        }

        _parsed[version.Hash] = parsed;
        return parsed;
    }

    /// <summary>Applies a change at once and answers when done: the gateway that made the change
    /// answers only once its own orchestrator takes new runs on it.</summary>
    public sealed record ApplyDeployments(Deployments State);

    private sealed record AskDeployments
    {
        public static readonly AskDeployments Instance = new();
    }
}
