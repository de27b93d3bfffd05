using Akka.Actor;
using Akka.Cluster;
using Akka.Event;

namespace Tsp.Actors.Hosting;

/// <summary>
/// Warns, on every member, about any other member whose split brain resolver settings differ from
/// its own. They must be equal: the resolver's decisions are taken by the leader (the member with
/// the lowest address, often a worker) at its own stable-after, while every member downs the whole
/// cluster once a change stays undecided past its own stable-after plus a few seconds — so one
/// member with a shorter setting than the leader takes the cluster down at the first crash. Each
/// member carries its settings as a role (<see cref="ClusterTuning.AsRole"/>), which the cluster gossips.
/// </summary>
public sealed class ClusterTimingsWatch : ReceiveActor
{
    private readonly HashSet<UniqueAddress> _warned = [];

    public ClusterTimingsWatch(string mine)
    {
        var log = Context.GetLogger();
        var cluster = Cluster.Get(Context.System);
        Receive<ClusterEvent.MemberUp>(up =>
        {
            var theirs = up.Member.Roles.FirstOrDefault(r => r.StartsWith(ClusterTuning.RolePrefix, StringComparison.Ordinal));
            if (!up.Member.UniqueAddress.Equals(cluster.SelfUniqueAddress) && theirs != mine && _warned.Add(up.Member.UniqueAddress))
            {
                log.Warning(
                    "member {0} resolves splits with {1}, this member with {2}: give every member the same Tsp:Cluster settings, or a member with a shorter StableAfter than the leader downs the whole cluster at the first crash",
                    up.Member.Address, theirs?[ClusterTuning.RolePrefix.Length..] ?? "unknown settings (not a TSP member?)", mine[ClusterTuning.RolePrefix.Length..]);
            }
        });
        Receive<ClusterEvent.IMemberEvent>(_ => { });
        Receive<ClusterEvent.CurrentClusterState>(_ => { });
    }

    public static Props Props(string mine) => Akka.Actor.Props.Create(() => new ClusterTimingsWatch(mine));

    protected override void PreStart() =>
        Cluster.Get(Context.System).Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents, typeof(ClusterEvent.MemberUp));

    protected override void PostStop() => Cluster.Get(Context.System).Unsubscribe(Self);
}
