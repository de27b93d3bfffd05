using System.CommandLine;
using Microsoft.Extensions.Hosting;
using Tsp.Actors.Hosting;
using Tsp.ServiceDefaults;
using Tsp.ServiceDefaults.CommandLine;
using Tsp.ServiceDefaults.Operations;

// Host wiring only: a worker member that hosts node routees for its roles (gpu and/or cpu).
var flags = new TspFlags();
var root = new RootCommand("TSP worker: runs the nodes of the queues of its roles (gpu and/or cpu, default gpu), or of the queues named with --queues; start more to scale a role or a queue. Flags are also read from Tsp__* environment variables and appsettings.json (section \"Tsp\").");
flags.AddTo(root, flags.Seeds, flags.Roles, flags.Host, flags.PublicHost, flags.Port, flags.Redis, flags.Models, flags.HttpPort, flags.Queues);
root.SetAction(async parsed =>
{
    var configuration = TspProcess.ReadConfiguration(flags.ToConfiguration(parsed));
    var options = TspProcess.ReadOptions(configuration);
    if (options.Roles.Count == 0)
    {
        options.Roles = [TspRoles.Gpu];
    }

    if (options.Seeds.Count == 0)
    {
        throw new SettingException("a worker needs --seed HOST:PORT (or Tsp__Seeds__0)");
    }

    options.CheckMembership();
    using var host = TspProcess.Build(options, TspProcess.ReadHttpPort(configuration, defaultPort: 0), quiet: false);
    await TspProcess.StartAsync(host);
    Console.WriteLine($"serves: {options.ServedQueues()}");
    if (OperationsHttp.Url(host.Services) is { } http)
    {
        Console.WriteLine($"metrics: {http}{OperationsHttp.MetricsPath}");
        Console.WriteLine($"health: {http}{OperationsHttp.ReadyPath}");
    }

    await host.WaitForShutdownAsync();
    return ExitCodes.Ok;
});
return await TspCommands.InvokeAsync(root, args);
