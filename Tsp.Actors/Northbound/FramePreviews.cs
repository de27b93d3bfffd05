using Tsp.Actors.Storage;

namespace Tsp.Actors.Northbound;

/// <summary>
/// Picks the finished runs whose frame a run host keeps for the dashboard: at most one per project
/// every <see cref="StorageOptions.PreviewEvery"/> (a copy of every frame would double Redis's traffic).
/// One per run host, used on its thread only.
/// </summary>
public sealed class FramePreviews(TimeSpan every)
{
    private readonly Dictionary<string, long> _last = new(StringComparer.Ordinal);

    /// <returns>Whether to keep a preview of this run of the project (false: its last one is too recent).</returns>
    public bool IsDue(string project)
    {
        var now = Environment.TickCount64;
        if (_last.TryGetValue(project, out var last) && now - last < every.TotalMilliseconds)
        {
            return false;
        }

        _last[project] = now;
        return true;
    }
}
