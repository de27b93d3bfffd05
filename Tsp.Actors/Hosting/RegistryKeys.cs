using Akka.Actor;

namespace Tsp.Actors.Hosting;

/// <summary>Marker for the workflow-run shard region in the actor registry.</summary>
public sealed class WorkflowRuns;

/// <summary>Marker for the region of the one workflow-deployments entity (<see cref="Control.WorkflowDeployments"/>).</summary>
public sealed class WorkflowDeploymentsRegion;

/// <summary>Marker for the region of the one model-rules entity (<see cref="Control.ModelRulesEntity"/>).</summary>
public sealed class ModelRulesRegion;

/// <summary>Marker for the project-control shard region (<see cref="Control.ProjectControl"/>).</summary>
public sealed class ProjectControls;

/// <summary>The Kafka ingest actors of this orchestrator, by project (each behind a backoff supervisor
/// that forwards messages to it).</summary>
public sealed class KafkaIngests
{
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, IActorRef> _byProject = new(StringComparer.Ordinal);

    public IReadOnlyDictionary<string, IActorRef> ByProject => _byProject;

    internal void Add(string project, IActorRef ingest) => _byProject[project] = ingest;

    internal IActorRef? Remove(string project) => _byProject.TryRemove(project, out var ingest) ? ingest : null;
}


/// <summary>Registry key of the ClusterClient that external systems subscribe through.</summary>
public sealed class TspClusterClient;
