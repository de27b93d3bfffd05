using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Exporter;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using Tsp.Actors.Hosting;
using Tsp.Actors.Telemetry;

namespace Tsp.ServiceDefaults.Operations;

/// <summary>
/// Exports the runs' traces (<see cref="TspTracing"/>) over OTLP when the standard OpenTelemetry
/// variables name a collector: <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> (e.g. http://collector:4317),
/// <c>OTEL_EXPORTER_OTLP_PROTOCOL</c> (grpc, the default, or http/protobuf), <c>OTEL_SERVICE_NAME</c>
/// (default tsp-{roles}) and <c>OTEL_TRACES_SAMPLER_ARG</c> (the share of runs traced, 0..1, default
/// 1). Sampling is decided on the trace id, which every process derives from the run id, so a run is
/// traced on all of them or on none.
/// </summary>
public static class Tracing
{
    public static void Add(IServiceCollection services, TspOptions options)
    {
        if (Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_ENDPOINT") is not { Length: > 0 } endpoint)
        {
            return;
        }

        var http = string.Equals(Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_PROTOCOL"), "http/protobuf", StringComparison.OrdinalIgnoreCase);
        var ratio = double.TryParse(Environment.GetEnvironmentVariable("OTEL_TRACES_SAMPLER_ARG"), NumberStyles.Float, CultureInfo.InvariantCulture, out var arg) ? Math.Clamp(arg, 0, 1) : 1;
        var service = Environment.GetEnvironmentVariable("OTEL_SERVICE_NAME") is { Length: > 0 } name
            ? name
            : "tsp-" + string.Join('-', options.Roles.Count > 0 ? options.Roles : ["standalone"]);
        services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService(service, serviceInstanceId: $"{options.PublicHost ?? options.Host}:{options.Port}"))
            .WithTracing(tracing => tracing
                .AddSource(TspTracing.SourceName)
                .SetSampler(new TraceIdRatioBasedSampler(ratio))
                .AddOtlpExporter(otlp =>
                {
                    // Set in code, an HTTP endpoint is the signal's own URL, not the collector's base.
                    var uri = new Uri(endpoint);
                    otlp.Endpoint = http && uri.AbsolutePath is "/" or "" ? new Uri(uri, "v1/traces") : uri;
                    otlp.Protocol = http ? OtlpExportProtocol.HttpProtobuf : OtlpExportProtocol.Grpc;
                }));
    }
}
