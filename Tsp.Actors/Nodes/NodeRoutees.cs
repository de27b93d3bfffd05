using System.Collections.Concurrent;
using Akka.Actor;
using Microsoft.Extensions.Logging;

namespace Tsp.Actors.Nodes;

/// <summary>Asks a node routee to stop taking tasks and answer <see cref="NodeDrained"/> once it holds none.</summary>
public sealed record DrainNode
{
    public static readonly DrainNode Instance = new();
}

/// <param name="FinishedWhileDraining">Tasks the routee finished after the drain began (those it held, and any its queue sent before it heard of the drain).</param>
public sealed record NodeDrained(string Worker, int FinishedWhileDraining);

/// <summary>
/// The node routees living in this process (whatever orchestrator deployed them). On SIGTERM the host
/// drains them before the member leaves the cluster: each tells its queue to send no more, finishes
/// what it holds, and only then does the member leave — so no task of a worker that is stopped in
/// an orderly way is retried elsewhere.
/// </summary>
public sealed class NodeRoutees
{
    private readonly ConcurrentDictionary<IActorRef, byte> _routees = new();

    public int Count => _routees.Count;

    internal void Add(IActorRef routee) => _routees.TryAdd(routee, 0);

    internal void Remove(IActorRef routee) => _routees.TryRemove(routee, out _);

    /// <summary>Drains every routee, waiting at most <paramref name="timeout"/>; a routee that does not
    /// finish in time is logged (its tasks are then retried elsewhere when the member leaves).</summary>
    public async Task DrainAsync(TimeSpan timeout, ILogger logger)
    {
        var routees = _routees.Keys.ToList();
        if (routees.Count == 0)
        {
            return;
        }

        logger.LogInformation("draining {Count} node routee(s): no new tasks, finishing the ones in hand (at most {Timeout:0} s)", routees.Count, timeout.TotalSeconds);
        var drains = routees.Select(async routee =>
        {
            try
            {
                return (await routee.Ask<NodeDrained>(DrainNode.Instance, timeout)).FinishedWhileDraining;
            }
            catch (Exception e) when (e is AskTimeoutException or TaskCanceledException)
            {
                logger.LogWarning("node routee {Routee} did not drain within {Timeout:0} s; its tasks will be retried elsewhere", routee.Path, timeout.TotalSeconds);
                return 0;
            }
        });
        var finished = (await Task.WhenAll(drains)).Sum();
        logger.LogInformation("node routees drained: {Finished} task(s) finished while draining", finished);
    }
}
