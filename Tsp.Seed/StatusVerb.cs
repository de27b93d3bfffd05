using System.Globalization;
using Akka.Actor;
using Akka.Cluster.Tools.Client;
using Akka.Hosting;
using Akka.Remote.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Tsp.Actors.Hosting;
using Tsp.Actors.Protocol;
using Tsp.ServiceDefaults;

namespace Tsp.Seed;

/// <summary><c>status --seed HOST:PORT</c>: asks an orchestrator (through ClusterClient) for members,
/// roles, reachability, its node queues and each project's in-flight runs, and prints them.</summary>
internal static class StatusVerb
{
    public static async Task<int> RunAsync(IReadOnlyDictionary<string, string?> flags)
    {
        await using var client = await StatusClient.StartAsync(TspProcess.ReadOptions(flags), "status");
        if (await client.AskAsync(localOnly: true, withRunHosts: true) is not { } status)
        {
            return ExitCodes.Unreachable;
        }

        Console.Write(Describe(status));
        return ExitCodes.Ok;
    }

    public static string Describe(ClusterStatus status)
    {
        var text = new System.Text.StringBuilder();
        text.AppendLine($"answered by {status.AnsweredBy}");
        text.AppendLine("members:");
        foreach (var m in status.Members)
        {
            text.AppendLine($"  {m.Address}  {m.Status}  {(m.Reachable ? "reachable" : "UNREACHABLE")}  roles={string.Join(',', m.Roles)}");
        }

        text.AppendLine("queues (this orchestrator):");
        foreach (var q in status.Queues)
        {
            text.AppendLine(string.Create(CultureInfo.InvariantCulture, $"  {q.Name} ({q.Role})  routees={q.Routees} credits={q.FreeSlots}/{q.Slots} waiting={q.Waiting} in_flight={q.InFlight} dispatched={q.Dispatched} retried={q.Retried} requeued={q.Requeued} failed={q.Failed} cancelled={q.Cancelled}{(q.Draining > 0 ? $" draining={q.Draining}" : "")}"));
        }

        text.AppendLine("projects:");
        foreach (var p in status.Projects)
        {
            text.AppendLine(string.Create(CultureInfo.InvariantCulture, $"  {p.Project}  kafka_in_flight_runs={p.KafkaInFlightRuns} kafka_consumed={p.KafkaConsumed} dead_lettered={p.DeadLettered} results={p.LatestPosition}{(p.Paused ? " paused" : "")}"));
            foreach (var k in p.KafkaPartitions)
            {
                text.AppendLine(string.Create(CultureInfo.InvariantCulture, $"    partition {k.Partition}  next={Offset(k.NextOffset)} end={Offset(k.EndOffset)} lag={(k.NextOffset >= 0 && k.EndOffset >= 0 ? Math.Max(0, k.EndOffset - k.NextOffset).ToString(CultureInfo.InvariantCulture) : "?")}{(k.Paused ? " paused" : "")}"));
            }
        }

        text.AppendLine("run hosts:");
        foreach (var o in status.RunHosts)
        {
            text.AppendLine(string.Create(CultureInfo.InvariantCulture, $"  {o.Address}  hosts={o.Hosts}"));
        }

        text.AppendLine(string.Create(CultureInfo.InvariantCulture, $"active runs on this orchestrator: {status.ActiveRuns}{(status.QueuedRuns > 0 ? $" ({status.QueuedRuns} queued in their hosts for a turn)" : "")}"));
        return text.ToString();
    }

    private static string Offset(long offset) => offset >= 0 ? offset.ToString(CultureInfo.InvariantCulture) : "?";
}

/// <summary>A ClusterClient to an orchestrator's status service, for the client verbs (status, top).</summary>
internal sealed class StatusClient : IAsyncDisposable
{
    private readonly IHost _host;
    private readonly IActorRef _client;
    private readonly TspOptions _options;

    private StatusClient(IHost host, IActorRef client, TspOptions options) => (_host, _client, _options) = (host, client, options);

    /// <exception cref="SettingException">No seed is given, or the TLS settings do not load.</exception>
    public static async Task<StatusClient> StartAsync(TspOptions options, string verb)
    {
        if (options.Seeds.Count == 0)
        {
            throw new SettingException($"{verb} needs --seed HOST:PORT (an orchestrator, e.g. the seed)");
        }

        options.CheckMembership();
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Services.AddAkka($"tsp-{verb}", (akka, _) => akka
            .ConfigureLoggers(l => l.LogLevel = Akka.Event.LogLevel.ErrorLevel)
            .WithTspRemoting(options, port: 0)
            .AddTspResultClient(options.Seeds, options.Tls));
        var host = builder.Build();
        await host.StartAsync();
        return new StatusClient(host, await host.Services.GetRequiredService<IRequiredActor<TspClusterClient>>().GetAsync(), options);
    }

    /// <param name="localOnly">Only the answering orchestrator's queues and runs; otherwise the whole
    /// cluster's, with every member's stats and the newest dead letters.</param>
    /// <param name="withRunHosts">Also how many run hosts each orchestrator holds.</param>
    /// <returns>Null when no orchestrator answered in time (said on standard error).</returns>
    public async Task<ClusterStatus?> AskAsync(bool localOnly, bool withRunHosts = false)
    {
        try
        {
            return await _client.Ask<ClusterStatus>(new ClusterClient.Send(StatusService.Path, new GetClusterStatus { LocalOnly = localOnly, WithRunHosts = withRunHosts }), _options.AskTimeout);
        }
        catch (AskTimeoutException)
        {
            await Console.Error.WriteLineAsync($"error: no answer from {string.Join(", ", _options.Seeds)} within {_options.AskTimeout.TotalSeconds:0} s (is it running, and an orchestrator?)");
            return null;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _host.StopAsync();
        _host.Dispose();
    }
}
