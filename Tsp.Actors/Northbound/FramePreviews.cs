using Tsp.Actors.Storage;

namespace Tsp.Actors.Northbound;

/// <summary>
/// Picks the finished runs whose frame is kept for the dashboard: at most one per project every
/// <see cref="StorageOptions.PreviewEvery"/> in each orchestrator (a copy of every frame would double
/// Redis's traffic). One per process, shared by its run hosts: one per host made 64 previews a second
/// of a busy project, each a 64 KiB read and write and a 64 KiB array, for a dashboard that shows one.
/// </summary>
public sealed class FramePreviews(TimeSpan every)
{
    private readonly Dictionary<string, long> _last = new(StringComparer.Ordinal);

    /// <returns>Whether to keep a preview of this run of the project (false: its last one is too recent).</returns>
    public bool IsDue(string project)
    {
        var now = Environment.TickCount64;
        lock (_last)
        {
            if (_last.TryGetValue(project, out var last) && now - last < every.TotalMilliseconds)
            {
                return false;
            }

            _last[project] = now;
            return true;
        }
    }
}
