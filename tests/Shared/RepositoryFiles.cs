namespace Tsp.Tests.Shared;

/// <summary>Files of the repository the tests run from (samples, manifests, dashboards).</summary>
public static class RepositoryFiles
{
    /// <summary>The folder holding Tsp.sln, found above the test binaries.</summary>
    public static string Root { get; } = FindRoot();

    public static string PathOf(params string[] parts) => Path.Combine([Root, .. parts]);

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Tsp.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new DirectoryNotFoundException("Tsp.sln not found above " + AppContext.BaseDirectory);
    }
}
