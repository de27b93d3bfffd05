using Akka.Actor;
using Akka.Cluster.Sharding;
using Akka.Cluster.Tools.PublishSubscribe;
using Akka.Event;
using Akka.Persistence;
using Tsp.Actors.Ingest;
using Tsp.Actors.Protocol;

namespace Tsp.Actors.Control;

/// <summary>
/// A project's control state (paused or not, who changed it and why), held durably by one sharded,
/// persistent entity per project. Each change is written to the journal before it is answered, then
/// published on the project's control topic (<see cref="IngestActor.ControlTopic"/>), which every
/// orchestrator's ingest of the project follows; an ingest that starts asks the entity instead.
/// </summary>
/// <remarks>Why the journal and not Redis: a pause is an operator's decision that must outlive any
/// process and any loss of the data plane, like an accepted run; Redis holds only data that can be
/// produced again or expires.</remarks>
public sealed class ProjectControl : ReceivePersistentActor
{
    public const string PersistenceIdPrefix = "project-control-";

    private readonly string _project;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private ProjectControlState _state;

    public ProjectControl(string project)
    {
        _project = project;
        _state = new ProjectControlState { Project = project };
        Recover<ProjectControlState>(state => _state = state);
        Command<GetProjectControlState>(_ => Sender.Tell(_state));
        Command<ChangeProjectControl>(Change);
    }

    public override string PersistenceId => PersistenceIdPrefix + _project;

    public static Props Props(string project) => Akka.Actor.Props.Create(() => new ProjectControl(project));

    private void Change(ChangeProjectControl change)
    {
        var next = new ProjectControlState
        {
            Project = _project,
            Paused = change.Paused,
            ChangedBy = change.ChangedBy,
            ChangedAtUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
            Reason = change.Reason,
        };
        if (next.Paused == _state.Paused)
        {
            // Nothing changes: no write, and the answer says since when it is so.
            Sender.Tell(_state);
            return;
        }

        var replyTo = Sender;
        Persist(next, state =>
        {
            _state = state;
            _log.Info("project '{0}' {1} by {2}{3}", _project, state.Paused ? "paused" : "resumed", state.ChangedBy, state.Reason.Length > 0 ? $": {state.Reason}" : "");
            DistributedPubSub.Get(Context.System).Mediator.Tell(new Publish(IngestActor.ControlTopic(_project), state));
            replyTo.Tell(state);
        });
    }
}

/// <summary>Routes control messages to their project's entity.</summary>
public sealed class ProjectControlExtractor(int maxShards) : HashCodeMessageExtractor(maxShards)
{
    public override string? EntityId(object message) => message switch
    {
        ChangeProjectControl change => change.Project,
        GetProjectControlState get => get.Project,
        _ => null,
    };
}
