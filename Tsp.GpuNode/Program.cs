using System.CommandLine;
using Akka.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Tsp.Actors.Hosting;
using Tsp.ServiceDefaults;
using Tsp.ServiceDefaults.CommandLine;

// Host wiring only: a worker member that hosts node routees for its roles (gpu and/or cpu).
var flags = new TspFlags();
var root = new RootCommand("TSP worker: runs the nodes of the queues of its roles (gpu and/or cpu, default gpu); start more to scale a role. Flags are also read from Tsp__* environment variables and appsettings.json (section \"Tsp\").");
flags.AddTo(root, flags.Seeds, flags.Roles, flags.Host, flags.PublicHost, flags.Port, flags.Redis, flags.Models);
root.SetAction(async parsed =>
{
    var options = TspProcess.ReadOptions(flags.ToConfiguration(parsed));
    if (options.Roles.Count == 0)
    {
        options.Roles = [TspRoles.Gpu];
    }

    if (options.Seeds.Count == 0)
    {
        throw new SettingException("a worker needs --seed HOST:PORT (or Tsp__Seeds__0)");
    }

    options.CheckMembership();
    var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
    TspProcess.Configure(builder.Services, builder.Logging, options);
    using var host = builder.Build();
    TspProcess.CheckDependencies(host, options);
    await host.RunAsync();
    return ExitCodes.Ok;
});
return await TspCommands.InvokeAsync(root, args);
