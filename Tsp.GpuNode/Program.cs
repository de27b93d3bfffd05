using Akka.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Tsp.Actors.Hosting;

// Host wiring only: a worker member that hosts node routees for its roles (gpu and/or cpu).
TspCommandLine cli;
try
{
    cli = TspCommandLine.Parse(["run", .. args], new HashSet<string>());
}
catch (FormatException e)
{
    await Console.Error.WriteLineAsync($"error: {e.Message}");
    return 2;
}

var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
builder.Configuration.AddJsonFile("appsettings.json", optional: true).AddEnvironmentVariables().AddInMemoryCollection(cli.Configuration);
builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
var options = builder.Configuration.GetSection(TspOptions.Section).Get<TspOptions>() ?? new TspOptions();
if (options.Roles.Count == 0)
{
    options.Roles = [TspRoles.Gpu];
}

if (options.Seeds.Count == 0)
{
    await Console.Error.WriteLineAsync("error: a worker needs --seed HOST:PORT (or Tsp__Seeds__0)");
    return 2;
}

try
{
    options.CheckMembership();
}
catch (FormatException e)
{
    await Console.Error.WriteLineAsync($"error: {e.Message}");
    return 2;
}

builder.Services.AddTspServices(options);
builder.Services.AddAkka(TspHostingExtensions.SystemName, (akka, _) =>
{
    akka.ConfigureLoggers(l => l.AddLoggerFactory());
    akka.AddTsp(options);
});
using var host = builder.Build();
try
{
    // Connect now, so an unreachable Redis fails the start with its address, not the first task.
    host.Services.GetRequiredService<Tsp.Actors.Storage.RedisStore>();
}
catch (InvalidOperationException e)
{
    await Console.Error.WriteLineAsync($"error: {e.Message}");
    return 4;
}

await host.RunAsync();
return 0;
