namespace Tsp.Integration.Tests;

/// <summary>Whole clusters and child processes compete for two cores: one at a time.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ClusterCollection
{
    public const string Name = "cluster";
}
