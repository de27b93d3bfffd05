using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using OpenTelemetry.Metrics;
using Tsp.Actors.Hosting;
using Tsp.Actors.Telemetry;

namespace Tsp.ServiceDefaults.Operations;

/// <summary>
/// What every process serves for operators on its HTTP port: <c>/metrics</c> (Prometheus, the
/// <see cref="TspMetrics"/> meter and the runtime's), <c>/health/live</c> and <c>/health/ready</c>
/// (<see cref="TspHealth"/>; the gRPC health service of an orchestrator answers the same checks).
/// </summary>
public static class OperationsHttp
{
    public const string MetricsPath = "/metrics";
    public const string LivePath = "/health/live";
    public const string ReadyPath = "/health/ready";

    private const string LiveTag = "live";
    private const string ReadyTag = "ready";

    // Relaxed: a reason reads "model 'x'" to an operator's curl, not "model \u0027x\u0027".
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <param name="port">-1: no HTTP port (health checks are still registered for gRPC).</param>
    public static void Add(WebApplicationBuilder builder, TspOptions options, int port)
    {
        var endpoints = new BoundEndpoints();
        builder.Services.AddSingleton(endpoints);
        builder.Services.AddHealthChecks()
            .AddCheck<LiveCheck>("live", tags: [LiveTag])
            .AddCheck<ReadyCheck>("ready", tags: [ReadyTag]);
        builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics
            .AddMeter(TspMetrics.MeterName, "System.Runtime")
            .AddPrometheusExporter());
        if (port >= 0)
        {
            builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(BoundEndpoints.ListenAddress(options), port, listen =>
            {
                listen.Protocols = HttpProtocols.Http1;
                endpoints.Http = listen;
            }));
        }
    }

    public static void Map(WebApplication app)
    {
        app.MapPrometheusScrapingEndpoint(MetricsPath);
        app.MapHealthChecks(LivePath, Probe(LiveTag));
        app.MapHealthChecks(ReadyPath, Probe(ReadyTag));
    }

    /// <summary>The operations port's URL once started; null when there is none.</summary>
    public static string? Url(IServiceProvider services) =>
        BoundEndpoints.Url(services.GetService<BoundEndpoints>()?.Http, services.GetRequiredService<TspOptions>(), "http");

    private static HealthCheckOptions Probe(string tag) => new()
    {
        Predicate = check => check.Tags.Contains(tag),
        ResponseWriter = WriteAsync,
    };

    /// <summary>200 or 503, and a JSON body naming each check and what it found.</summary>
    private static Task WriteAsync(HttpContext context, HealthReport report)
    {
        context.Response.ContentType = "application/json";
        var checks = report.Entries.SelectMany(e => e.Value.Data.TryGetValue("checks", out var detail) && detail is IReadOnlyList<Actors.Hosting.HealthCheck> parts
            ? parts
            : [new Actors.Hosting.HealthCheck(e.Key, e.Value.Status == HealthStatus.Healthy, e.Value.Description ?? string.Empty)]);
        return context.Response.WriteAsync(JsonSerializer.Serialize(new { status = report.Status.ToString(), checks }, Json));
    }

    private sealed class LiveCheck(TspHealth health) : IHealthCheck
    {
        public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
            Task.FromResult(health.Live ? HealthCheckResult.Healthy("the actor system runs") : HealthCheckResult.Unhealthy("the actor system has terminated"));
    }

    private sealed class ReadyCheck(TspHealth health) : IHealthCheck
    {
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        {
            var readiness = await health.CheckAsync(cancellationToken);
            var data = new Dictionary<string, object> { ["checks"] = readiness.Checks };
            return readiness.Ready
                ? HealthCheckResult.Healthy("ready", data)
                : HealthCheckResult.Unhealthy(readiness.Summary, data: data);
        }
    }
}
