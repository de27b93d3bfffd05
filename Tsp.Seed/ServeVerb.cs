using Microsoft.Extensions.Hosting;
using Tsp.Actors.Hosting;

namespace Tsp.Seed;

/// <summary><c>standalone</c> (every role, embedded defaults) and <c>run</c> (a cluster member).</summary>
internal static class ServeVerb
{
    public static async Task<int> RunAsync(TspCommandLine cli, bool standalone)
    {
        var options = SeedHost.ReadOptions(cli.Configuration);
        using var embedded = standalone ? StandaloneServers.Apply(options) : null;
        if (!standalone && options.Roles.Count == 0)
        {
            options.Roles = [TspRoles.Seed, TspRoles.Orchestrator];
        }

        using var host = SeedHost.Build(options, quiet: false);
        await host.StartAsync();
        if (!string.IsNullOrWhiteSpace(options.Kafka.Bootstrap))
        {
            Console.WriteLine($"kafka: {options.Kafka.Bootstrap}");
        }

        Console.WriteLine($"redis: {options.Redis}");

        Console.WriteLine($"cluster: {options.Host}:{options.Port} roles={string.Join(',', options.Roles.Count > 0 ? options.Roles : TspRoles.All)}");
        await host.WaitForShutdownAsync();
        return 0;
    }
}
