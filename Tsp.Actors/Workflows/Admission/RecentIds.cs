namespace Tsp.Actors.Workflows.Admission;

/// <summary>A bounded set of the most recently added ids: the finished runs a host remembers, to
/// answer a redelivered start with AlreadyCompleted at once.</summary>
internal sealed class RecentIds(int capacity)
{
    private readonly Queue<string> _order = new();
    private readonly HashSet<string> _ids = new(StringComparer.Ordinal);

    public bool Contains(string id) => _ids.Contains(id);

    public void Add(string id)
    {
        if (capacity <= 0 || !_ids.Add(id))
        {
            return;
        }

        _order.Enqueue(id);
        if (_order.Count > capacity)
        {
            _ids.Remove(_order.Dequeue());
        }
    }

    /// <summary>Oldest first.</summary>
    public IReadOnlyCollection<string> Newest() => _order;
}
