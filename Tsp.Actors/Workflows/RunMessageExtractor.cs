using Akka.Cluster.Sharding;
using Tsp.Actors.Protocol;

namespace Tsp.Actors.Workflows;

/// <summary>Routes every <see cref="IRunMessage"/> to the run entity named by its run id.</summary>
public sealed class RunMessageExtractor(int maxShards) : HashCodeMessageExtractor(maxShards)
{
    public override string? EntityId(object message) => (message as IRunMessage)?.RunId;
}
