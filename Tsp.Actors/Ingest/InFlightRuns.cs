using System.Collections.Concurrent;

namespace Tsp.Actors.Ingest;

/// <summary>
/// Bounds the runs of one project that are accepted but unfinished. A slot is taken before a run is
/// started and given back when its result arrives (or at once when the run was already finished or
/// rejected). A redelivered message of a run that holds a slot does not take a second one.
/// </summary>
public sealed class InFlightRuns(int max) : IDisposable
{
    private readonly SemaphoreSlim _slots = new(max, max);
    private readonly ConcurrentDictionary<string, byte> _runs = new(StringComparer.Ordinal);
    private int _peak;

    // ConcurrentDictionary.Count takes every one of its locks (up to 1024 once it has grown): far too
    // slow per record, so the count is kept here.
    private int _count;

    public int Max => max;

    public int Count => Volatile.Read(ref _count);

    /// <summary>The highest count seen.</summary>
    public int Peak => Volatile.Read(ref _peak);

    public async Task AcquireAsync(string runId, CancellationToken cancellationToken)
    {
        if (_runs.ContainsKey(runId))
        {
            return;
        }

        await _slots.WaitAsync(cancellationToken);
        Hold(runId);
    }

    /// <summary>Takes a slot for the run if one is free without waiting (or the run holds one already).</summary>
    public bool TryAcquire(string runId)
    {
        if (_runs.ContainsKey(runId))
        {
            return true;
        }

        if (!_slots.Wait(0))
        {
            return false;
        }

        Hold(runId);
        return true;
    }

    private void Hold(string runId)
    {
        if (!_runs.TryAdd(runId, 0))
        {
            _slots.Release();
            return;
        }

        var count = Interlocked.Increment(ref _count);
        int peak;
        while (count > (peak = Volatile.Read(ref _peak)) && Interlocked.CompareExchange(ref _peak, count, peak) != peak)
        {
        }
    }

    public void Dispose() => _slots.Dispose();

    public void Release(string runId)
    {
        if (_runs.TryRemove(runId, out _))
        {
            Interlocked.Decrement(ref _count);
            _slots.Release();
        }
    }
}
