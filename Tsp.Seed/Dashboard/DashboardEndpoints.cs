using System.Text;
using Akka.Actor;
using Google.Protobuf;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Tsp.Actors.Hosting;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Actors.Workflows;

namespace Tsp.Seed.Dashboard;

/// <summary>
/// The web dashboard on an orchestrator's operations port: one page (<c>/</c>) that polls a small JSON
/// API — the cluster-wide status (members, queues, per-node and per-model work, dead letters), each
/// project's DAG, its recent results with their detections, and the frames kept as previews.
/// </summary>
internal static class DashboardEndpoints
{
    private const int MaxRecentResults = 50;

    private static readonly JsonFormatter Json = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(true));

    public static void Map(WebApplication app)
    {
        app.MapGet("/", () => Results.Content(Page.Value, "text/html; charset=utf-8"));
        app.MapGet("/api/status", async (ActorSystem system, TspOptions options, CancellationToken cancelled) =>
        {
            var status = await system.ActorSelection(StatusService.Path).Ask<ClusterStatus>(new GetClusterStatus(), options.AskTimeout, cancelled);
            return Results.Content(Json.Format(status), "application/json");
        });
        app.MapGet("/api/projects", (WorkflowCatalog catalog) => Results.Json(catalog.All.OrderBy(w => w.Project, StringComparer.Ordinal).Select(w => new
        {
            project = w.Project,
            nodes = w.Nodes.Select(n => new { id = n.Id, processor = n.Processor, queue = n.Queue, role = n.Role, after = n.After }),
        })));
        app.MapGet("/api/results", async (string project, int? limit, WorkflowCatalog catalog, RedisStore store) =>
        {
            if (!catalog.TryGet(project, out _))
            {
                return Results.NotFound(new { error = $"unknown project '{project}' (deployed: {catalog.Describe()})" });
            }

            var count = Math.Clamp(limit ?? 12, 1, MaxRecentResults);
            var latest = await store.LatestPositionAsync(project);
            var results = await store.ReadResultsAsync(project, Math.Max(1, latest - count + 1), count);
            var json = new StringBuilder("[");
            foreach (var (_, result) in results.Reverse())
            {
                json.Append(json.Length > 1 ? "," : string.Empty).Append(Json.Format(result));
            }

            return Results.Content(json.Append(']').ToString(), "application/json");
        });
        app.MapGet("/api/preview/{project}/{runId}", async (string project, string runId, RedisStore store) =>
            await store.GetPreviewAsync(project, runId) is { } frame
                ? Results.Bytes(frame, ContentType(frame))
                : Results.NotFound());
    }

    /// <summary>What the frame's first bytes say it is; the browser draws PNG, JPEG, GIF, BMP and WebP.</summary>
    private static string ContentType(byte[] frame) => frame switch
    {
        [0x89, (byte)'P', (byte)'N', (byte)'G', ..] => "image/png",
        [0xFF, 0xD8, 0xFF, ..] => "image/jpeg",
        [(byte)'G', (byte)'I', (byte)'F', ..] => "image/gif",
        [(byte)'B', (byte)'M', ..] => "image/bmp",
        [(byte)'R', (byte)'I', (byte)'F', (byte)'F', _, _, _, _, (byte)'W', (byte)'E', (byte)'B', (byte)'P', ..] => "image/webp",
        _ => "application/octet-stream",
    };

    private static readonly Lazy<string> Page = new(() =>
    {
        using var stream = typeof(DashboardEndpoints).Assembly.GetManifestResourceStream("Tsp.Seed.Dashboard.dashboard.html")
            ?? throw new InvalidOperationException("the dashboard page is not embedded in Tsp.Seed");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    });
}
