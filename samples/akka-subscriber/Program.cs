// A minimal external Akka.NET system that receives a project's TP results through ClusterClient.
//   dotnet run --project samples/akka-subscriber -- --contact 127.0.0.1:4053 --project demo [--from earliest]
// --contact is an orchestrator's Akka address (host:port, the "cluster:" line of Tsp.Seed); this
// process must be reachable from the cluster at --host:--port (defaults: 127.0.0.1, any free port).
using Akka.Hosting;
using Akka.Remote.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Tsp.Actors.Hosting;
using Tsp.Actors.Northbound;

var flags = args.Select((a, i) => (a, i)).Where(p => p.a.StartsWith("--", StringComparison.Ordinal) && p.i + 1 < args.Length)
    .ToDictionary(p => p.a[2..], p => args[p.i + 1], StringComparer.Ordinal);
if (!flags.TryGetValue("contact", out var contact) || !flags.TryGetValue("project", out var project))
{
    Console.Error.WriteLine("usage: --contact HOST:PORT --project P [--from latest|earliest|N] [--host H] [--port P]");
    return 2;
}

var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
builder.Services.AddAkka("tsp-subscriber", (akka, _) => akka
    .WithRemoting(flags.GetValueOrDefault("host", "127.0.0.1"), int.Parse(flags.GetValueOrDefault("port", "0"), System.Globalization.CultureInfo.InvariantCulture))
    .AddTspResultClient([contact]));
using var host = builder.Build();
await host.StartAsync();

var system = host.Services.GetRequiredService<Akka.Actor.ActorSystem>();
var client = await host.Services.GetRequiredService<IRequiredActor<TspClusterClient>>().GetAsync();
var (_, results) = await RemoteResults.SubscribeAsync(system, client, project, flags.GetValueOrDefault("from", "latest"), TimeSpan.FromSeconds(30));
Console.WriteLine($"subscribed to {project}");
await foreach (var result in results.ReadAllAsync())
{
    Console.WriteLine($"{result.Project}@{result.Position} {result.RunId} {result.Status} detections={result.Detections.Count}");
}

return 0;
