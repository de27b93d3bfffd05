using System.Globalization;

namespace Tsp.Actors.Nodes;

/// <summary>
/// The queues a worker serves and its slots for each (Celery's <c>-Q</c>): <c>gpu-model=2,gpu-ocr=1</c>
/// (<c>--queues</c>, <c>Tsp:WorkerQueues</c>). A queue named without slots gets what its pool deploys
/// here. Empty: the worker serves every queue of its roles. Routees of a queue it does not serve are
/// still deployed on it (a pool is pinned to a role) but get no slot, so no task of that queue runs here.
/// </summary>
public sealed class ServedQueues
{
    private readonly Dictionary<string, int?> _slots;

    private ServedQueues(Dictionary<string, int?> slots) => _slots = slots;

    public static ServedQueues All { get; } = new([]);

    public bool ServesAll => _slots.Count == 0;

    public IReadOnlyCollection<string> Names => _slots.Keys;

    /// <summary>The member's slots for <paramref name="queue"/>: null for its pools' deployment, 0 when not served.</summary>
    public int? SlotsFor(string queue) => ServesAll ? null : _slots.TryGetValue(queue, out var slots) ? slots : 0;

    /// <summary>Reads items of the form <c>queue</c> or <c>queue=slots</c>, each possibly a comma-separated list.</summary>
    /// <exception cref="FormatException">Names the item that is wrong and why.</exception>
    public static ServedQueues Parse(IEnumerable<string> items)
    {
        var slots = new Dictionary<string, int?>(StringComparer.Ordinal);
        foreach (var item in items.SelectMany(i => i.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)))
        {
            var equals = item.IndexOf('=', StringComparison.Ordinal);
            var name = (equals < 0 ? item : item[..equals]).Trim();
            if (name.Length == 0)
            {
                throw new FormatException($"'{item}' names no queue (expected QUEUE or QUEUE=SLOTS, e.g. gpu-model=2)");
            }

            int? count = null;
            if (equals >= 0)
            {
                var text = item[(equals + 1)..].Trim();
                if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var parsed) || parsed < 1)
                {
                    throw new FormatException($"'{item}': slots must be a whole number of at least 1, not '{text}'");
                }

                count = parsed;
            }

            if (!slots.TryAdd(name, count))
            {
                throw new FormatException($"queue '{name}' is named twice");
            }
        }

        return new ServedQueues(slots);
    }

    public override string ToString() => ServesAll
        ? "every queue of its roles"
        : string.Join(", ", _slots.Select(s => s.Value is { } n ? $"{s.Key}={n}" : s.Key));
}
