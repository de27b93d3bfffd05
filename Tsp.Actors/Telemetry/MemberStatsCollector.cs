using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace Tsp.Actors.Telemetry;

/// <summary>A node of a project on one queue, and what this process ran of it.</summary>
public sealed record NodeTotals(string Project, string Node, string Queue, long Succeeded, long Failed, double Seconds);

/// <summary>A model version, and what this process ran of it.</summary>
public sealed record ModelTotals(string Model, string Version, long Inferences, long Batches, long Rows, double QueueSeconds, double ComputeSeconds, long Failures = 0);

/// <summary>
/// What this process has run since it started, per node and per model, summed from the
/// <see cref="TspMetrics"/> instruments by a <see cref="MeterListener"/>, for viewers that ask a
/// member directly (the <c>top</c> console, the dashboard) rather than a Prometheus. Cumulative: a
/// viewer takes the difference of two readings for rates and interval latencies.
/// </summary>
public sealed class MemberStatsCollector : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<(string Project, string Node, string Queue), NodeSums> _nodes = new();
    private readonly ConcurrentDictionary<(string Model, string Version), ModelSums> _models = new();

    private MemberStatsCollector()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == TspMetrics.MeterName && instrument.Name is "tsp_node_duration" or "tsp_model_batches" or "tsp_model_failures" or "tsp_model_inferences" or "tsp_model_batch_size" or "tsp_model_queue" or "tsp_model_compute")
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<double>(OnDouble);
        _listener.SetMeasurementEventCallback<long>(OnLong);
        _listener.SetMeasurementEventCallback<int>(OnInt);
        _listener.Start();
    }

    /// <summary>The process's one collector, listening from its first use on.</summary>
    public static MemberStatsCollector Shared { get; } = new();

    public IReadOnlyList<NodeTotals> Nodes =>
        [.. _nodes.Select(n => new NodeTotals(n.Key.Project, n.Key.Node, n.Key.Queue, Interlocked.Read(ref n.Value.Succeeded), Interlocked.Read(ref n.Value.Failed), n.Value.Seconds))];

    public IReadOnlyList<ModelTotals> Models =>
        [.. _models.Select(m => new ModelTotals(m.Key.Model, m.Key.Version, Interlocked.Read(ref m.Value.Inferences), Interlocked.Read(ref m.Value.Batches), Interlocked.Read(ref m.Value.Rows), m.Value.QueueSeconds, m.Value.ComputeSeconds, Interlocked.Read(ref m.Value.Failures)))];

    public void Dispose() => _listener.Dispose();

    private static string Tag(ReadOnlySpan<KeyValuePair<string, object?>> tags, string name)
    {
        foreach (var tag in tags)
        {
            if (tag.Key == name)
            {
                return tag.Value?.ToString() ?? string.Empty;
            }
        }

        return string.Empty;
    }

    private ModelSums Model(ReadOnlySpan<KeyValuePair<string, object?>> tags) =>
        _models.GetOrAdd((Tag(tags, "model"), Tag(tags, "version")), _ => new ModelSums());

    private void OnDouble(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state)
    {
        switch (instrument.Name)
        {
            case "tsp_node_duration":
                var sums = _nodes.GetOrAdd((Tag(tags, "project"), Tag(tags, "node"), Tag(tags, "queue")), _ => new NodeSums());
                Interlocked.Increment(ref Tag(tags, "status") == "ok" ? ref sums.Succeeded : ref sums.Failed);
                Add(ref sums.Seconds, value);
                break;
            case "tsp_model_queue":
                Add(ref Model(tags).QueueSeconds, value);
                break;
            case "tsp_model_compute":
                Add(ref Model(tags).ComputeSeconds, value);
                break;
        }
    }

    private void OnLong(Instrument instrument, long value, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state)
    {
        switch (instrument.Name)
        {
            case "tsp_model_inferences":
                Interlocked.Add(ref Model(tags).Inferences, value);
                break;
            case "tsp_model_batches":
                Interlocked.Add(ref Model(tags).Batches, value);
                break;
            case "tsp_model_failures":
                Interlocked.Add(ref Model(tags).Failures, value);
                break;
        }
    }

    private void OnInt(Instrument instrument, int value, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state)
    {
        if (instrument.Name == "tsp_model_batch_size")
        {
            Interlocked.Add(ref Model(tags).Rows, value);
        }
    }

    private static void Add(ref double sum, double value)
    {
        double seen, next;
        do
        {
            seen = Volatile.Read(ref sum);
            next = seen + value;
        }
        while (Interlocked.CompareExchange(ref sum, next, seen) != seen);
    }

    private sealed class NodeSums
    {
        public long Succeeded;
        public long Failed;
        public double Seconds;
    }

    private sealed class ModelSums
    {
        public long Inferences;
        public long Batches;
        public long Rows;
        public double QueueSeconds;
        public double ComputeSeconds;
        public long Failures;
    }
}
