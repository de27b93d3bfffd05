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

    /// <summary>Dead letters a cluster-wide answer carries, newest first over every project.</summary>
    public const int RecentDeadLetters = 10;

    public StatusService(WorkflowCatalog catalog, NodeQueues queues, KafkaIngests ingests, RedisStore store, ActiveRunCounter activeRuns, IActorRef runHosts, TimeSpan timeout)
    {
        var system = Context.System;
        Receive<GetClusterStatus>(request => (request.LocalOnly ? CollectAsync(request.WithRunHosts) : CollectClusterWideAsync()).PipeTo(Sender, failure: e => new Status.Failure(e)));

        // This orchestrator's answer, plus every other orchestrator's queues and runs, every member's
        // stats and the newest dead letters. A member that does not answer within a short bound is
        // named, not waited for: the view is for an operator looking at a cluster that may be failing.
        async Task<ClusterStatus> CollectClusterWideAsync()
        {
            var status = await CollectAsync(withRunHosts: true);
            var cluster = Akka.Cluster.Cluster.Get(system);
            var bound = TimeSpan.FromSeconds(Math.Min(3, timeout.TotalSeconds));
            var up = cluster.State.Members.Where(m => m.Status == Akka.Cluster.MemberStatus.Up && !cluster.State.Unreachable.Contains(m)).ToList();
            var peers = up.Where(m => m.HasRole(TspRoles.Orchestrator) && !m.Address.Equals(cluster.SelfAddress))
                .Select(async m => (m.Address, Answer: await AskAsync<ClusterStatus>(m.Address, Path, new GetClusterStatus { LocalOnly = true }, bound)));
            var members = up.Select(async m => (m.Address, Answer: await AskAsync<Protocol.MemberStats>(m.Address, MemberStatsService.Path, new GetMemberStats(), bound)));
            foreach (var (address, answer) in await Task.WhenAll(peers))
            {
                if (answer is null)
                {
                    status.Unanswered.Add($"{address} (status)");
                    continue;
                }

                status.Queues.AddRange(answer.Queues);
                status.ActiveRuns += answer.ActiveRuns;
                status.QueuedRuns += answer.QueuedRuns;
                foreach (var project in answer.Projects)
                {
                    if (status.Projects.FirstOrDefault(p => p.Project == project.Project) is { } mine)
                    {
                        mine.KafkaInFlightRuns += project.KafkaInFlightRuns;
                        mine.KafkaConsumed += project.KafkaConsumed;
                        mine.DeadLettered += project.DeadLettered;
                        mine.KafkaPartitions.AddRange(project.KafkaPartitions);
                        mine.Paused |= project.Paused;
                    }
                }
            }

            foreach (var (address, answer) in await Task.WhenAll(members))
            {
                if (answer is null)
                {
                    status.Unanswered.Add($"{address} (stats)");
                }
                else
                {
                    status.MemberStats.Add(answer);
                }
            }

            var dead = await Task.WhenAll(catalog.Projects.Select(p => store.ReadDeadLettersAsync(p, RecentDeadLetters)));
            status.RecentDeadLetters.AddRange(dead.SelectMany(d => d).OrderByDescending(d => d.AtUnixMs).Take(RecentDeadLetters));
            return status;
        }

        async Task<T?> AskAsync<T>(Address address, string path, object message, TimeSpan bound)
            where T : class
        {
            try
            {
                return await system.ActorSelection(new RootActorPath(address) / path.TrimStart('/').Split('/')).Ask<T>(message, bound);
            }
            catch (Exception e) when (e is AskTimeoutException or ActorNotFoundException or TaskCanceledException)
            {
                return null;
            }
        }

        async Task<ClusterStatus> CollectAsync(bool withRunHosts)
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
                    Orchestrator = cluster.SelfAddress.ToString(),
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
                    Cancelled = stats.Cancelled,
                });
            }

            foreach (var project in catalog.Projects)
            {
                var described = new ProjectStatus { Project = project, LatestPosition = await store.LatestPositionAsync(project) };
                if (ingests.ByProject.TryGetValue(project, out var ingest))
                {
                    var stats = await ingest.Ask<IngestStats>(GetIngestStats.Instance, timeout);
                    (described.KafkaInFlightRuns, described.KafkaConsumed, described.DeadLettered, described.Paused) = (stats.InFlightRuns, stats.Consumed, stats.DeadLettered, stats.Paused);
                    described.KafkaPartitions.AddRange(stats.Partitions.Select(p => new KafkaPartitionStatus { Partition = p.Partition, NextOffset = p.NextOffset, EndOffset = p.EndOffset, Paused = p.Paused }));
                }

                status.Projects.Add(described);
            }

            status.ActiveRuns = (int)activeRuns.Count;
            status.QueuedRuns = (int)activeRuns.Queued;
            if (withRunHosts)
            {
                await AddRunHostsAsync(status);
            }

            return status;
        }

        async Task AddRunHostsAsync(ClusterStatus status)
        {
            var bound = TimeSpan.FromSeconds(Math.Min(3, timeout.TotalSeconds));
            try
            {
                var stats = await runHosts.Ask<ClusterShardingStats>(new GetClusterShardingStats(bound), bound + TimeSpan.FromSeconds(1));
                status.RunHosts.AddRange(stats.Regions
                    .Select(r => new OrchestratorRunHosts { Address = r.Key.ToString(), Hosts = r.Value.Stats.Values.Sum() })
                    .OrderBy(r => r.Address, StringComparer.Ordinal));
            }
            catch (Exception e) when (e is AskTimeoutException or TaskCanceledException)
            {
                status.Unanswered.Add("run hosts (sharding stats)");
            }
        }
    }
}

public static class StatusServices
{
    /// <param name="runHosts">The workflow-run hosts' shard region, asked where its hosts are.</param>
    public static void Register(ActorSystem system, WorkflowCatalog catalog, NodeQueues queues, KafkaIngests ingests, RedisStore store, ActiveRunCounter activeRuns, IActorRef runHosts, TimeSpan timeout)
    {
        var service = system.ActorOf(Props.Create(() => new StatusService(catalog, queues, ingests, store, activeRuns, runHosts, timeout)), StatusService.Name);
        ClusterClientReceptionist.Get(system).RegisterService(service);
    }
}
