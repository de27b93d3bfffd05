using System.Diagnostics.CodeAnalysis;

namespace Tsp.Actors.Workflows.Admission;

/// <summary>
/// A string-keyed dictionary in 16 segments, for indexes that grow to tens of thousands of entries
/// in a burst (a run host's queued runs during an ingest backlog). One dictionary's entry array
/// passes 85 KB at a few thousand entries and is then re-allocated on the large object heap at every
/// doubling; each of those allocations counts against the large object budget, which triggers full
/// collections (bench ingest: 37 MB of such arrays over a run, one blocking gen2 per repeat).
/// Segments stay below that size sixteen times longer, and their growth is ordinary gen0 garbage.
/// </summary>
internal sealed class SegmentedDictionary<TValue>
{
    private const int Segments = 16;
    private readonly Dictionary<string, TValue>[] _segments = [.. Enumerable.Range(0, Segments).Select(_ => new Dictionary<string, TValue>(StringComparer.Ordinal))];

    public int Count { get; private set; }

    public void Add(string key, TValue value)
    {
        SegmentOf(key).Add(key, value);
        Count++;
    }

    public bool Remove(string key)
    {
        if (!SegmentOf(key).Remove(key))
        {
            return false;
        }

        Count--;
        return true;
    }

    public bool TryGetValue(string key, [MaybeNullWhen(false)] out TValue value) => SegmentOf(key).TryGetValue(key, out value);

    public IEnumerable<string> Keys => _segments.SelectMany(segment => segment.Keys);

    public bool ContainsKey(string key) => SegmentOf(key).ContainsKey(key);

    // The last two characters: run ids end in a Kafka offset or a random hex id, both evenly spread.
    private Dictionary<string, TValue> SegmentOf(string key) =>
        _segments[key.Length == 0 ? 0 : ((key[^1] * 31) + (key.Length > 1 ? key[^2] : 0)) & (Segments - 1)];
}
