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
}
