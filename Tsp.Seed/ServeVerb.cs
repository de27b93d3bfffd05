using Microsoft.Extensions.Hosting;
using Tsp.Actors.Hosting;
using Tsp.Actors.Storage;

namespace Tsp.Seed;

/// <summary><c>standalone</c> (every role, embedded defaults) and <c>run</c> (a cluster member).</summary>
internal static class ServeVerb
{
    public const string DemoWorkflow = "samples/demo/workflow.yaml";

    public static async Task<int> RunAsync(TspCommandLine cli, bool standalone)
    {
        var options = SeedHost.ReadOptions(cli.Configuration);
        using var embedded = standalone ? ApplyStandaloneDefaults(options) : null;
        if (!standalone && options.Roles.Count == 0)
        {
            options.Roles = [TspRoles.Seed, TspRoles.Orchestrator];
        }

        using var host = SeedHost.Build(options, quiet: false);
        await host.StartAsync();
        if (embedded is not null)
        {
            Console.WriteLine($"redis: {embedded.ConnectionString}");
        }

        Console.WriteLine($"cluster: {options.Host}:{options.Port} roles={string.Join(',', options.Roles.Count > 0 ? options.Roles : TspRoles.All)}");
        await host.WaitForShutdownAsync();
        return 0;
    }

    /// <summary>Standalone mode: every role, embedded Garnet unless Redis is configured, the SQLite
    /// journal, and the demo workflow unless others are given.</summary>
    public static EmbeddedRedis? ApplyStandaloneDefaults(TspOptions options)
    {
        options.Roles = [.. TspRoles.All];
        options.Seeds = [];
        if (options.Workflows.Count == 0)
        {
            options.Workflows = [SeedHost.ResolveSample(DemoWorkflow)];
        }

        if (!string.IsNullOrWhiteSpace(options.Redis))
        {
            return null;
        }

        var embedded = EmbeddedRedis.Start();
        options.Redis = embedded.ConnectionString;
        return embedded;
    }
}
