using Akka.Actor;
using Akka.Cluster.Sharding;
using Akka.Cluster.Tools.PublishSubscribe;
using Akka.Event;
using Akka.Persistence;
using Tsp.Actors.Protocol;

namespace Tsp.Actors.Control;

/// <summary>
/// Every workflow deployed through TspControl, held durably by one persistent entity for the whole
/// cluster (deploys are rare and small: one entity keeps them in one order, and an orchestrator that
/// starts reads them all with one ask). A change is written, then published on
/// <see cref="Topic"/> (every orchestrator's <c>DeploymentFollower</c> applies it to its catalog),
/// then answered. Validation happens before a version gets here (<see cref="RunControl"/>).
/// </summary>
public sealed class WorkflowDeployments : ReceivePersistentActor
{
    public const string EntityId = "all";
    public const string Topic = "tsp-deployments";

    /// <summary>Versions kept per project: runs started on an older one still finish on it while
    /// their orchestrator runs; after a restart a run of a version no longer kept resumes on the
    /// current one (and says so in the log).</summary>
    public const int VersionsKept = 10;

    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly Dictionary<string, DeployedProject> _projects = new(StringComparer.Ordinal);

    public WorkflowDeployments()
    {
        Recover<DeployedProject>(project => _projects[project.Project] = project);
        Command<GetDeployments>(_ => Sender.Tell(State()));
        Command<DeployVersion>(Deploy);
        Command<RemoveDeployedProject>(Remove);
    }

    public override string PersistenceId => "workflow-deployments";

    public static Props Props() => Akka.Actor.Props.Create(() => new WorkflowDeployments());

    private void Deploy(DeployVersion deploy)
    {
        var current = _projects.GetValueOrDefault(deploy.Project);
        if (current is { Removed: false } && current.Versions.Count > 0 && current.Versions[^1].Hash == deploy.Version.Hash)
        {
            Sender.Tell(State());
            return;
        }

        var next = new DeployedProject { Project = deploy.Project };
        next.Versions.Add((current?.Versions ?? []).Where(v => v.Hash != deploy.Version.Hash).TakeLast(VersionsKept - 1));
        next.Versions.Add(deploy.Version);
        Change(next, $"workflow of '{deploy.Project}' deployed: version {deploy.Version.Hash} by {deploy.Version.DeployedBy}");
    }

    private void Remove(RemoveDeployedProject remove)
    {
        var next = _projects.TryGetValue(remove.Project, out var current) ? current.Clone() : new DeployedProject { Project = remove.Project };
        if (next.Removed)
        {
            Sender.Tell(State());
            return;
        }

        next.Removed = true;
        Change(next, $"project '{remove.Project}' removed by {remove.RemovedBy}; its runs in flight finish");
    }

    private void Change(DeployedProject next, string logLine)
    {
        var replyTo = Sender;
        Persist(next, project =>
        {
            _projects[project.Project] = project;
            _log.Info(logLine);
            var state = State();
            DistributedPubSub.Get(Context.System).Mediator.Tell(new Publish(Topic, state));
            replyTo.Tell(state);
        });
    }

    private Deployments State()
    {
        var state = new Deployments();
        state.Projects.Add(_projects.Values.OrderBy(p => p.Project, StringComparer.Ordinal));
        return state;
    }
}

/// <summary>Routes every deployments message to the one entity.</summary>
public sealed class WorkflowDeploymentsExtractor() : HashCodeMessageExtractor(1)
{
    public override string? EntityId(object message) => message switch
    {
        GetDeployments or DeployVersion or RemoveDeployedProject => WorkflowDeployments.EntityId,
        _ => null,
    };
}
