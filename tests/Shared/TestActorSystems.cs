using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Hosting;
using Akka.Remote.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Tsp.Actors.Hosting;

namespace Tsp.Tests.Shared;

/// <summary>An actor system with TSP's serialization, a one-member cluster (for pub-sub) and the real
/// journal, but no TSP actors: tests create the actors they examine.</summary>
public sealed class JournalledSystem : IDisposable
{
    private readonly IHost _host;

    private JournalledSystem(IHost host)
    {
        _host = host;
        System = host.Services.GetRequiredService<ActorSystem>();
    }

    public ActorSystem System { get; }

    public static JournalledSystem Start(TspOptions options)
    {
        var port = TestPorts.Free();
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Services.AddAkka(TspHostingExtensions.SystemName, (akka, _) =>
        {
            akka.ConfigureLoggers(l => l.LogLevel = Akka.Event.LogLevel.InfoLevel)
                .AddTspSerialization()
                .WithRemoting("127.0.0.1", port)
                .WithClustering(new ClusterOptions { SeedNodes = [$"akka.tcp://{TspHostingExtensions.SystemName}@127.0.0.1:{port}"] })
                .WithDistributedPubSub(role: null!)
                .AddTspJournal(options)
                .AddHocon(TestTiming.Config, HoconAddMode.Prepend);
        });
        var host = builder.Build();
        host.StartAsync().GetAwaiter().GetResult();
        return new JournalledSystem(host);
    }

    public void Dispose()
    {
        _host.StopAsync().GetAwaiter().GetResult();
        _host.Dispose();
    }
}
