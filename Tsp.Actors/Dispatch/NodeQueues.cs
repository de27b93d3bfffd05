using System.Collections.Concurrent;
using Akka.Actor;

namespace Tsp.Actors.Dispatch;

/// <summary>The node queue actors of this orchestrator, by queue name.</summary>
public sealed class NodeQueues
{
    private readonly ConcurrentDictionary<string, IActorRef> _queues = new(StringComparer.Ordinal);

    public IReadOnlyDictionary<string, IActorRef> All => _queues;

    public void Add(string name, IActorRef queue) => _queues[name] = queue;

    public bool TryGet(string name, out IActorRef queue) => _queues.TryGetValue(name, out queue!);

    /// <summary>Waits until every queue has at least one routee (they deploy once the cluster is up);
    /// work submitted earlier is not lost, it only waits in its queue.</summary>
    /// <exception cref="TimeoutException">Names the queues still without routees.</exception>
    public async Task WaitForRouteesAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var stats = await Task.WhenAll(_queues.Values.Select(q => q.Ask<QueueStats>(GetQueueStats.Instance, timeout)));
            var empty = stats.Where(s => s.Workers == 0).Select(s => $"{s.Queue} ({s.Role})").ToList();
            if (empty.Count == 0)
            {
                return;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"no routees within {timeout.TotalSeconds:0} s for queue(s) {string.Join(", ", empty)}: is a member with that role up?");
            }

            await Task.Delay(50);
        }
    }
}
