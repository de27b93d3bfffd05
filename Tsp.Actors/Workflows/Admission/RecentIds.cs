using Tsp.Actors.Telemetry;

namespace Tsp.Actors.Workflows.Admission;

/// <summary>A bounded set of the most recently added run ids: the finished runs a host remembers, to
/// answer a redelivered start with AlreadyCompleted at once.</summary>
/// <remarks>It keeps a 128-bit hash of each id (<see cref="TspTracing.RunHash"/>, also the run's
/// trace id), not the id. A host remembers its last 512 runs for seconds at full load and longer
/// below it, and an id string kept longer than a young collection's interval is what young
/// collections trace again and again: under the segments GC, survivors below its promotion
/// threshold stay in gen0, so every remembered id was marked at every collection until a gen1 one
/// (docs/design.md, "Garbage collection"). Hashes live in two arrays without references, which no
/// collection traces. Two ids share a hash with a chance of about 2^-128 per pair.</remarks>
internal sealed class RecentIds(int capacity)
{
    private readonly Queue<UInt128> _order = new();
    private readonly HashSet<UInt128> _keys = [];

    public bool Contains(string id) => _keys.Contains(TspTracing.RunHash(id));

    public void Add(string id) => Add(TspTracing.RunHash(id));

    public void Add(UInt128 key)
    {
        if (capacity <= 0 || !_keys.Add(key))
        {
            return;
        }

        _order.Enqueue(key);
        if (_order.Count > capacity)
        {
            _keys.Remove(_order.Dequeue());
        }
    }

    /// <summary>Oldest first.</summary>
    public IReadOnlyCollection<UInt128> Newest() => _order;
}
