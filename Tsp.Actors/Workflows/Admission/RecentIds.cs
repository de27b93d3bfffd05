using System.IO.Hashing;
using System.Text;

namespace Tsp.Actors.Workflows.Admission;

/// <summary>A bounded set of the most recently added run ids: the finished runs a host remembers, to
/// answer a redelivered start with AlreadyCompleted at once.</summary>
/// <remarks>It keeps a 128-bit hash of each id (XxHash128 of its UTF-8), not the id. A host remembers
/// its last 512 runs for seconds at full load and longer below it, and an id string kept longer than
/// a young collection's interval is what young collections trace again and again: under the
/// segments GC, survivors below its promotion threshold stay in gen0, so every remembered id was
/// marked at every collection until a gen1 one (docs/design.md, "Garbage collection"). Hashes live in two arrays without references, which no collection traces. Two ids
/// share a hash with a chance of about 2^-128 per pair.</remarks>
internal sealed class RecentIds(int capacity)
{
    private readonly Queue<UInt128> _order = new();
    private readonly HashSet<UInt128> _keys = [];

    public bool Contains(string id) => _keys.Contains(KeyOf(id));

    public void Add(string id) => Add(KeyOf(id));

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

    public static UInt128 KeyOf(string id)
    {
        // Run ids are at most 200 characters, so at most 800 UTF-8 bytes.
        var bytes = id.Length <= 256 ? stackalloc byte[Encoding.UTF8.GetMaxByteCount(id.Length)] : new byte[Encoding.UTF8.GetMaxByteCount(id.Length)];
        return XxHash128.HashToUInt128(bytes[..Encoding.UTF8.GetBytes(id, bytes)]);
    }
}
