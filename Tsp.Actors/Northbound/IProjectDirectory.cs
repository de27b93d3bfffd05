namespace Tsp.Actors.Northbound;

/// <summary>What subscriptions need to know of the deployed projects: whether one exists, and how to
/// name them all in an error. The workflow catalog answers it; subscriptions never see workflows.</summary>
public interface IProjectDirectory
{
    bool IsDeployed(string project);

    /// <summary>The deployed projects for a message ("a, b", or "none").</summary>
    string Describe();
}
