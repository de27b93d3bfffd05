using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Sharding;
using Akka.Cluster.Tools.Client;
using Tsp.Actors.Dispatch;
using Tsp.Actors.Ingest;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Actors.Workflows;

namespace Tsp.Actors.Hosting;

/// <summary>
/// Answers <see cref="GetClusterStatus"/> on an orchestrator (receptionist service
/// <c>/user/tsp-status</c>): members with roles and reachability, this orchestrator's node queues
/// (routees, credits, depth), per project Kafka in-flight runs and the results log's position.
/// </summary>
public sealed class StatusService : ReceiveActor
{
    public const string Name = "tsp-status";
    public const string Path = "/user/" + Name;

    public StatusService(WorkflowCatalog catalog, NodeQueues queues, KafkaIngests ingests, RedisStore store, ActiveRunCounter activeRuns, TimeSpan timeout)
    {
        Receive<GetClusterStatus>(_ => CollectAsync().PipeTo(Sender, failure: e => new Status.Failure(e)));

        async Task<ClusterStatus> CollectAsync()
        {
            var cluster = Akka.Cluster.Cluster.Get(Context.System);
            var state = cluster.State;
            var status = new ClusterStatus { AnsweredBy = cluster.SelfAddress.ToString() };
            foreach (var member in state.Members.OrderBy(m => m.Address.ToString(), StringComparer.Ordinal))
            {
                status.Members.Add(new Protocol.MemberStatus
                {
                    Address = member.Address.ToString(),
                    Roles = { member.Roles.Where(r => !r.StartsWith(ClusterTuning.RolePrefix, StringComparison.Ordinal)).Order(StringComparer.Ordinal) },
                    Status = member.Status.ToString(),
                    Reachable = !state.Unreachable.Contains(member),
                });
            }

            foreach (var (name, queue) in queues.All.OrderBy(q => q.Key, StringComparer.Ordinal))
            {
                var stats = await queue.Ask<QueueStats>(GetQueueStats.Instance, timeout);
                status.Queues.Add(new QueueStatus
                {
                    Name = name,
                    Role = stats.Role,
                    Routees = stats.Workers,
                    Slots = stats.Slots,
                    FreeSlots = stats.FreeSlots,
                    Waiting = stats.Pending,
                    InFlight = stats.InFlight,
                    Dispatched = stats.Dispatched,
                    Retried = stats.Retried,
                    Requeued = stats.Requeued,
                    Draining = stats.Draining,
                    Failed = stats.Failed,
                });
            }

            foreach (var project in catalog.Projects)
            {
                var described = new ProjectStatus { Project = project, LatestPosition = await store.LatestPositionAsync(project) };
                if (ingests.ByProject.TryGetValue(project, out var ingest))
                {
                    var stats = await ingest.Ask<IngestStats>(GetIngestStats.Instance, timeout);
                    (described.KafkaInFlightRuns, described.KafkaConsumed, described.DeadLettered) = (stats.InFlightRuns, stats.Consumed, stats.DeadLettered);
                    described.KafkaPartitions.AddRange(stats.Partitions.Select(p => new KafkaPartitionStatus { Partition = p.Partition, NextOffset = p.NextOffset, EndOffset = p.EndOffset, Paused = p.Paused }));
                }

                status.Projects.Add(described);
            }

            status.ActiveRuns = (int)activeRuns.Count;
            status.QueuedRuns = (int)activeRuns.Queued;
            return status;
        }
    }
}

public static class StatusServices
{
    public static void Register(ActorSystem system, WorkflowCatalog catalog, NodeQueues queues, KafkaIngests ingests, RedisStore store, ActiveRunCounter activeRuns, TimeSpan timeout)
    {
        var service = system.ActorOf(Props.Create(() => new StatusService(catalog, queues, ingests, store, activeRuns, timeout)), StatusService.Name);
        ClusterClientReceptionist.Get(system).RegisterService(service);
    }
}
