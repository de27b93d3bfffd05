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
    private readonly Lock _lock = new();

    // Taken per batch by the ingest stream and per result by the ingest actor: a plain set under a
    // lock, as a ConcurrentDictionary would allocate a node per run. Sized for its bound at once:
    // growing it while it fills re-allocates its arrays, past 85 KB on the large object heap, whose
    // budget then triggers full collections.
    private readonly HashSet<TRun> _runs = new(Math.Min(max, 1 << 20));
    private int _peak;
    private int _count;

    // Completed by the next release; null while nobody waits.
    private TaskCompletionSource? _released;

    public int Max => max;

    public int Count => Volatile.Read(ref _count);

    /// <summary>The highest count seen.</summary>
    public int Peak => Volatile.Read(ref _peak);

    /// <summary>Takes a slot for the run, waiting for one as long as none is free (or the run holds one already).</summary>
    public async Task AcquireAsync(TRun run, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task released;
            lock (_lock)
            {
                if (TryHold(run))
                {
                    return;
                }

                released = (_released ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
            }

            await released.WaitAsync(cancellationToken);
        }
    }

    /// <summary>Takes a slot for the run if one is free without waiting (or the run holds one already).</summary>
    public bool TryAcquire(TRun run) => TryAcquireAll([run]) == 1;

    /// <summary>Takes slots for runs in order, without waiting, under one lock: until one finds no free
    /// slot. Returns how many runs hold a slot now (the first ones).</summary>
    public int TryAcquireAll(ReadOnlySpan<TRun> runs)
    {
        lock (_lock)
        {
            for (var i = 0; i < runs.Length; i++)
            {
                if (!TryHold(runs[i]))
                {
                    return i;
                }
            }

            return runs.Length;
        }
    }

    private bool TryHold(TRun run)
    {
        if (_count >= max)
        {
            return _runs.Contains(run);
        }

        if (_runs.Add(run))
        {
            _count++;
            _peak = Math.Max(_peak, _count);
        }

        return true;
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _released?.TrySetCanceled();
            _released = null;
        }
    }

    public void Release(TRun run)
    {
        TaskCompletionSource? released;
        lock (_lock)
        {
            if (!_runs.Remove(run))
            {
                return;
            }

            _count--;
            released = _released;
            _released = null;
        }

        released?.TrySetResult();
    }
}
