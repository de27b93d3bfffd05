using Tsp.Actors.Storage;

namespace Tsp.Actors.Northbound;

/// <summary>A run's frame: its frame string and its bytes there.</summary>
public readonly record struct FramePreview(string FrameKey, FrameSlice Slice);

/// <summary>
/// Picks the finished runs whose frame a run host keeps for the dashboard: at most one per project
/// every <see cref="StorageOptions.PreviewEvery"/> (a copy of every frame would double Redis's traffic).
/// One per run host, used on its thread only.
/// </summary>
public sealed class FramePreviews(TimeSpan every)
{
    private readonly Dictionary<string, long> _last = new(StringComparer.Ordinal);

    /// <returns>The frame to keep, or null when this project's last preview is too recent.</returns>
    public FramePreview? Take(string project, string frameKey, FrameSlice slice)
    {
        var now = Environment.TickCount64;
        if (_last.TryGetValue(project, out var last) && now - last < every.TotalMilliseconds)
        {
            return null;
        }

        _last[project] = now;
        return new FramePreview(frameKey, slice);
    }
}
