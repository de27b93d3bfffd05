namespace Tsp.Actors.Nodes.Onnx;

/// <summary>What a batch of one size costs, as measured while serving.</summary>
/// <param name="Rows">Batch size (rows).</param>
/// <param name="MsPerRow">Compute time per row, a moving average over recent batches of this size.</param>
/// <param name="Samples">Batches of this size measured.</param>
public sealed record BatchCost(int Rows, double MsPerRow, long Samples);

/// <summary>The batch limit and queue delay a model version uses now, and what they were chosen from.</summary>
public sealed record BatchChoice(int Limit, TimeSpan Delay, bool Adaptive, IReadOnlyList<BatchCost> Costs);

/// <summary>
/// Chooses a model version's batch size while it serves: whether batching pays depends on the model
/// and the device (on a GPU a batch of 8 costs little more than one image; on this CPU a batch of 4
/// costs more per image than single images), so it is measured, not configured.
/// </summary>
/// <remarks>
/// The candidates are the powers of two up to <c>max_batch_size</c>, and the maximum itself. Each batch
/// that ran records its compute time per row under its size when that is a candidate. The choice is the
/// candidate with the least time per row whose batch fits the latency budget (its compute plus the
/// queue delay), and it changes only for one at least 3 % cheaper, so two near-equal sizes do not
/// alternate. A candidate is tried only when enough requests wait to fill it at once: trying never
/// holds a request back. Until every candidate that load has allowed is measured
/// (<see cref="MinSamples"/> batches), and then once every <see cref="ExploreEvery"/> batches, the
/// batcher tries the next candidate in turn, so a change of load or of device is followed. Its
/// measurements are the compute times where it serves, contention with the rest of the process
/// included: what a size costs there, not in a quiet loop. The queue delay is
/// the configured <c>max_queue_delay_ms</c> when the choice batches, none when it runs single rows:
/// waiting for company only pays when company is cheaper.
/// </remarks>
public sealed class BatchTuner
{
    public const int MinSamples = 5;
    public const int ExploreEvery = 64;
    private const double Smoothing = 0.2;
    private const double Hysteresis = 0.97;

    private readonly object _gate = new();
    private readonly int[] _candidates;
    private readonly double[] _msPerRow;
    private readonly long[] _samples;
    private readonly TimeSpan _maxDelay;
    private readonly double _budgetMs;
    private int _chosen;
    private long _batches;
    private int _nextTrial;

    /// <param name="latencyBudget">The longest a batch may take, its queue delay included; zero: no bound.</param>
    /// <param name="adaptive">False: always <paramref name="maxBatchSize"/> and <paramref name="maxDelay"/> (Triton's fixed setting).</param>
    public BatchTuner(int maxBatchSize, TimeSpan maxDelay, TimeSpan latencyBudget, bool adaptive)
    {
        var max = Math.Max(1, maxBatchSize);
        _candidates = [.. Enumerable.Range(0, 31).Select(i => 1 << i).TakeWhile(c => c < max).Append(max)];
        _msPerRow = new double[_candidates.Length];
        _samples = new long[_candidates.Length];
        _maxDelay = maxDelay;
        _budgetMs = latencyBudget.TotalMilliseconds;
        Adaptive = adaptive && max > 1;
        // Without measurements, start where a fixed setting would: it is right on a GPU, and the first
        // batches measure it.
        _chosen = _candidates.Length - 1;
    }

    public bool Adaptive { get; }

    /// <summary>The batch limit and queue delay for the next batch, given how many requests wait
    /// besides the one that starts it.</summary>
    public (int Limit, TimeSpan Delay) Next(int waiting)
    {
        if (!Adaptive)
        {
            return (_candidates[^1], _maxDelay);
        }

        lock (_gate)
        {
            var periodic = _batches % ExploreEvery == 0;
            for (var i = 0; i < _candidates.Length; i++)
            {
                var trial = (_nextTrial + i) % _candidates.Length;
                if (trial != _chosen && _candidates[trial] <= waiting + 1 && (_samples[trial] < MinSamples || periodic))
                {
                    _nextTrial = trial + 1;
                    return (_candidates[trial], TimeSpan.Zero);
                }
            }

            return (_candidates[_chosen], DelayFor(_chosen));
        }
    }

    /// <summary>A batch of <paramref name="rows"/> rows took <paramref name="computeMs"/>.</summary>
    public void Record(int rows, double computeMs)
    {
        if (!Adaptive || rows <= 0)
        {
            return;
        }

        lock (_gate)
        {
            _batches++;
            var index = Array.IndexOf(_candidates, rows);
            if (index < 0)
            {
                return;
            }

            var perRow = computeMs / rows;
            _msPerRow[index] = _samples[index] == 0 ? perRow : _msPerRow[index] + (Smoothing * (perRow - _msPerRow[index]));
            _samples[index]++;
            Choose();
        }
    }

    public BatchChoice Choice
    {
        get
        {
            lock (_gate)
            {
                var costs = _candidates.Select((c, i) => new BatchCost(c, _msPerRow[i], _samples[i])).Where(c => c.Samples > 0).ToList();
                return Adaptive
                    ? new BatchChoice(_candidates[_chosen], DelayFor(_chosen), true, costs)
                    : new BatchChoice(_candidates[^1], _maxDelay, false, costs);
            }
        }
    }

    private TimeSpan DelayFor(int candidate) => _candidates[candidate] > 1 ? _maxDelay : TimeSpan.Zero;

    private void Choose()
    {
        var best = -1;
        for (var i = 0; i < _candidates.Length; i++)
        {
            if (_samples[i] < MinSamples || !FitsBudget(i))
            {
                continue;
            }

            if (best < 0 || _msPerRow[i] < _msPerRow[best])
            {
                best = i;
            }
        }

        if (best < 0 || best == _chosen)
        {
            return;
        }

        var current = _samples[_chosen] >= MinSamples && FitsBudget(_chosen) ? _msPerRow[_chosen] : double.MaxValue;
        if (_msPerRow[best] <= current * Hysteresis)
        {
            _chosen = best;
        }
    }

    private bool FitsBudget(int candidate) =>
        _budgetMs <= 0 || (_msPerRow[candidate] * _candidates[candidate]) + DelayFor(candidate).TotalMilliseconds <= _budgetMs;
}
