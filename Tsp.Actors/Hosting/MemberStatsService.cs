using Akka.Actor;
using Tsp.Actors.Nodes.Onnx;
using Tsp.Actors.Protocol;
using Tsp.Actors.Telemetry;

namespace Tsp.Actors.Hosting;

/// <summary>
/// On every member (<c>/user/tsp-member-stats</c>): answers <see cref="GetMemberStats"/> with what
/// this process has run since it started, per node and per model (<see cref="MemberStatsCollector"/>).
/// The status service of an orchestrator asks every member, so a cluster-wide view needs no Prometheus.
/// </summary>
public sealed class MemberStatsService : ReceiveActor
{
    public const string Name = "tsp-member-stats";
    public const string Path = "/user/" + Name;

    public MemberStatsService(MemberStatsCollector collector, OnnxModels models)
    {
        var address = Akka.Cluster.Cluster.Get(Context.System).SelfAddress.ToString();
        Receive<GetMemberStats>(_ =>
        {
            var stats = new MemberStats { Address = address };
            stats.Nodes.AddRange(collector.Nodes.Select(n => new NodeStats { Project = n.Project, Node = n.Node, Queue = n.Queue, Succeeded = n.Succeeded, Failed = n.Failed, Seconds = n.Seconds }));
            stats.Models.AddRange(collector.Models.Select(m => new ModelStats { Model = m.Model, Version = m.Version, Inferences = m.Inferences, Batches = m.Batches, Rows = m.Rows, QueueSeconds = m.QueueSeconds, ComputeSeconds = m.ComputeSeconds, Failures = m.Failures }));
            stats.Served.AddRange(models.Loaded.Select(m => ToServed(m, address)));
            Sender.Tell(stats);
        });
        Receive<GetModelIndex>(_ =>
        {
            var index = new MemberModelIndex();
            index.Versions.AddRange(models.Index().Select(v =>
            {
                v.Member = address;
                return v;
            }));
            Sender.Tell(index);
        });
    }

    private static ServedModel ToServed(ServedModelState model, string member)
    {
        var served = new ServedModel { Model = model.Model, Version = model.Version, Provider = model.Provider, Member = member };
        if (model.Batching is { } batching)
        {
            served.BatchLimit = batching.Limit;
            served.BatchDelayMs = batching.Delay.TotalMilliseconds;
            served.AdaptiveBatching = batching.Adaptive;
            served.BatchCosts.AddRange(batching.Costs.Select(c => new BatchCostStat { Rows = c.Rows, MsPerRow = c.MsPerRow, Samples = c.Samples }));
        }

        return served;
    }
}

public static class MemberStatsServices
{
    public static void Register(ActorSystem system, OnnxModels models) =>
        system.ActorOf(Props.Create(() => new MemberStatsService(MemberStatsCollector.Shared, models)), MemberStatsService.Name);
}
