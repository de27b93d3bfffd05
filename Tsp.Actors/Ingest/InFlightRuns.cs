namespace Tsp.Actors.Ingest;

/// <summary>
/// Bounds the runs of one project that are accepted but unfinished. A slot is taken before a run is
/// started and given back when its result arrives (or at once when the run was already finished or
/// rejected). A redelivered message of a run that holds a slot does not take a second one.
/// </summary>
/// <typeparam name="TRun">What names a run: ingest uses its record's (partition, offset), so that
/// holding a slot costs no run id string.</typeparam>
public sealed class InFlightRuns<TRun>(int max) : IDisposable
    where TRun : notnull
{
    private readonly SemaphoreSlim _slots = new(max, max);

    // Taken per record by the ingest stream and per result by the ingest actor: a plain set under a
    // lock, as a ConcurrentDictionary would allocate a node per run. Sized for its bound at once:
    // growing it while it fills re-allocates its arrays, past 85 KB on the large object heap, whose
    // budget then triggers full collections.
    private readonly HashSet<TRun> _runs = new(Math.Min(max, 1 << 20));
    private int _peak;
    private int _count;

    public int Max => max;

    public int Count => Volatile.Read(ref _count);

    /// <summary>The highest count seen.</summary>
    public int Peak => Volatile.Read(ref _peak);

    public async Task AcquireAsync(TRun run, CancellationToken cancellationToken)
    {
        if (Holds(run))
        {
            return;
        }

        await _slots.WaitAsync(cancellationToken);
        Hold(run);
    }

    /// <summary>Takes a slot for the run if one is free without waiting (or the run holds one already).</summary>
    public bool TryAcquire(TRun run)
    {
        if (Holds(run))
        {
            return true;
        }

        if (!_slots.Wait(0))
        {
            return false;
        }

        Hold(run);
        return true;
    }

    private bool Holds(TRun run)
    {
        lock (_runs)
        {
            return _runs.Contains(run);
        }
    }

    private void Hold(TRun run)
    {
        int count;
        lock (_runs)
        {
            if (!_runs.Add(run))
            {
                _slots.Release();
                return;
            }

            count = ++_count;
            if (count > _peak)
            {
                _peak = count;
            }
        }
    }

    public void Dispose() => _slots.Dispose();

    public void Release(TRun run)
    {
        lock (_runs)
        {
            if (!_runs.Remove(run))
            {
                return;
            }

            _count--;
        }

        _slots.Release();
    }
}
