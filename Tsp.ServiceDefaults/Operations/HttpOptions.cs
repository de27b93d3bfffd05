namespace Tsp.ServiceDefaults.Operations;

/// <summary>The operations port of a process (section <c>Tsp:Http</c>): Prometheus metrics, health
/// probes and, on orchestrators, the dashboard, on one HTTP/1.1 port.</summary>
public sealed class HttpOptions
{
    public const string Section = "Tsp:Http";

    /// <summary>-1: none; 0: any free port (printed at start); unset: the host's default (8080 for
    /// Tsp.Seed, any free port for a worker, of which a machine often runs several).</summary>
    public int? Port { get; set; }
}
