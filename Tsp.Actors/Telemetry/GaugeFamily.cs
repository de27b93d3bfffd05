using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace Tsp.Actors.Telemetry;

/// <summary>
/// An observable gauge whose measurements come from the parts that own the state: each registers a
/// source with <see cref="Observe"/> and disposes the registration when it stops. A source runs on the
/// exporter's thread, so it reads only what its owner publishes for other threads (a volatile
/// snapshot), never an actor's state.
/// </summary>
public sealed class GaugeFamily
{
    private readonly ConcurrentDictionary<Registration, Func<IEnumerable<Measurement<long>>>> _sources = new();

    internal GaugeFamily(Meter meter, string name, string description)
    {
        Name = name;
        meter.CreateObservableGauge(name, Read, unit: null, description: description);
    }

    public string Name { get; }

    /// <summary>Adds a source of measurements until the returned registration is disposed.</summary>
    public IDisposable Observe(Func<IEnumerable<Measurement<long>>> source)
    {
        var registration = new Registration(this);
        _sources[registration] = source;
        return registration;
    }

    /// <summary>What every source says now; a source that throws is left out of this reading.</summary>
    public IReadOnlyList<Measurement<long>> Read()
    {
        var measurements = new List<Measurement<long>>();
        foreach (var source in _sources.Values)
        {
            try
            {
                measurements.AddRange(source());
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // A source whose owner is stopping; the next reading goes without it.
            }
        }

        return measurements;
    }

    private sealed class Registration(GaugeFamily family) : IDisposable
    {
        public void Dispose() => family._sources.TryRemove(this, out _);
    }
}
