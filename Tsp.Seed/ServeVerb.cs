using Microsoft.Extensions.Hosting;
using Tsp.Actors.Hosting;
using Tsp.ServiceDefaults;

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
        using var host = SeedHost.Build(options, grpcOptions, quiet: false);
        try
        {
            await host.StartAsync();
        }
        catch (IOException e) when (SeedHost.ServesGrpc(options, grpcOptions))
        {
            await Console.Error.WriteLineAsync($"error: cannot serve gRPC on {options.Host}:{grpcOptions.Port} ({e.Message}); choose another with --grpc-port (0: any free port, -1: none)");
            return ExitCodes.PortInUse;
        }

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

        Console.WriteLine($"cluster: {options.Host}:{options.Port} roles={string.Join(',', options.Roles.Count > 0 ? options.Roles : TspRoles.All)}");
        await host.WaitForShutdownAsync();
        return ExitCodes.Ok;
    }
}
