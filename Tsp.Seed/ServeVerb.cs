using Microsoft.Extensions.Hosting;
using Tsp.Actors.Hosting;
using Tsp.ServiceDefaults;
using Tsp.ServiceDefaults.Operations;

namespace Tsp.Seed;

/// <summary><c>standalone</c> (every role, embedded defaults) and <c>run</c> (a cluster member).</summary>
internal static class ServeVerb
{
    public static async Task<int> RunAsync(IReadOnlyDictionary<string, string?> flags, bool standalone)
    {
        var configuration = TspProcess.ReadConfiguration(flags);
        var options = TspProcess.ReadOptions(configuration);
        var grpcOptions = SeedHost.ReadGrpcOptions(configuration);
        using var embedded = standalone ? StandaloneServers.Apply(options) : null;
        if (!standalone && options.Roles.Count == 0)
        {
            options.Roles = [TspRoles.Seed, TspRoles.Orchestrator];
        }

        options.CheckMembership();
        using var host = SeedHost.Build(options, grpcOptions, TspProcess.ReadHttpPort(configuration, SeedHost.DefaultHttpPort), quiet: false);
        await TspProcess.StartAsync(host);
        if (!string.IsNullOrWhiteSpace(options.Kafka.Bootstrap))
        {
            Console.WriteLine($"kafka: {options.Kafka.Bootstrap}");
        }

        Console.WriteLine($"redis: {options.Redis}");
        await SeedHost.PrepareSampleModelsAsync(host);
        if (SeedHost.GrpcUrl(host) is { } grpc)
        {
            Console.WriteLine($"grpc: {grpc}");
        }

        if (SeedHost.HttpUrl(host) is { } http)
        {
            Console.WriteLine($"metrics: {http}{OperationsHttp.MetricsPath}");
            Console.WriteLine($"health: {http}{OperationsHttp.ReadyPath}");
            if (options.Has(TspRoles.Orchestrator))
            {
                Console.WriteLine($"dashboard: {http}/");
            }
        }

        Console.WriteLine($"cluster: {options.Host}:{options.Port} roles={string.Join(',', options.Roles.Count > 0 ? options.Roles : TspRoles.All)}");
        await host.WaitForShutdownAsync();
        return ExitCodes.Ok;
    }
}
