using Google.Protobuf;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Playwright;
using SkiaSharp;
using Tsp.Actors.Hosting;
using Tsp.Actors.Ingest;
using Tsp.Actors.Protocol;
using Tsp.Seed;
using Tsp.Seed.Grpc;
using Tsp.Tests.Shared;
using Xunit.Abstractions;

namespace Tsp.Integration.Tests.Operations;

/// <summary>The web dashboard in a real headless Chromium (Debian's, driven by Playwright): the page
/// shows the members and the project's DAG, and a submitted frame appears with its detection boxes.</summary>
[Collection(ClusterCollection.Name)]
public sealed class DashboardTests(ITestOutputHelper output)
{
    private static readonly float Patience = 90_000;
    private static readonly string[] BoxAttributes = ["x", "y", "width", "height"];
    private static readonly string[] ChromiumPaths = ["/usr/bin/chromium", "/usr/bin/chromium-browser"];

    [Fact]
    public async Task The_page_shows_the_members_the_DAG_and_a_submitted_frame_with_its_boxes()
    {
        var project = TestServers.Unique("dash");
        var options = new TspOptions
        {
            Redis = TestServers.Redis,
            SqlitePath = TestServers.TempSqlitePath(),
            Workflows =
            [
                TestServers.WriteWorkflow($$"""
                    project: {{project}}
                    nodes:
                      - { id: pre, processor: image.normalize, role: cpu, queue: dash-cpu, params: { width: 16, height: 16, channels: 1, mean: "0", std: "1" } }
                      - { id: boxes, processor: map.regions, role: cpu, queue: dash-cpu, after: [pre], params: { threshold: 0.5, label: square } }
                    """),
            ],
        };
        using var host = SeedHost.Build(options, new GrpcOptions { Port = -1 }, httpPort: 0, quiet: true);
        await host.StartAsync();
        var url = SeedHost.HttpUrl(host)!;
        var member = Akka.Cluster.Cluster.Get(host.System()).SelfAddress.ToString();

        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(new() { ExecutablePath = Chromium(), Args = ["--no-sandbox"], Headless = true });
        var page = await browser.NewPageAsync();
        page.Console += (_, message) => output.WriteLine($"page: {message.Text}");
        await page.GotoAsync(url + "/");
        await page.WaitForSelectorAsync($"#members tr[data-address='{member}']", new() { Timeout = Patience });
        await page.WaitForSelectorAsync($"svg.dag[data-project='{project}'] g.dag-node[data-node='boxes']", new() { Timeout = Patience });

        var runId = TestServers.Unique("run");
        var accepted = await host.Services.GetRequiredService<RunSubmitter>().SubmitAsync(new Frame { Project = project, Data = ByteString.CopyFrom(WhiteSquareOnBlack()) }, runId);
        Assert.Equal(StartOutcome.Accepted, accepted.Outcome);

        var box = await page.WaitForSelectorAsync($".result[data-run-id='{runId}'] rect.box", new() { Timeout = Patience });
        Assert.NotNull(box);
        // The square is at 16..48 of a 64-pixel frame: the box is drawn in the frame's pixels.
        Assert.Equal(["16", "16", "32", "32"], await Task.WhenAll(BoxAttributes.Select(async a => (await box!.GetAttributeAsync(a))!)));
        await page.WaitForSelectorAsync($".result[data-run-id='{runId}'] img", new() { Timeout = Patience, State = WaitForSelectorState.Attached });
        await page.WaitForSelectorAsync($"svg.dag[data-project='{project}'] g.dag-node[data-node='boxes'] text:has-text('1 ok')", new() { Timeout = Patience });
        await page.ScreenshotAsync(new() { Path = Path.Combine(Path.GetTempPath(), "tsp-tests", "dashboard.png"), FullPage = true });
        await host.StopAsync();
    }

    /// <summary>Debian's chromium (test.sh installs it); Playwright never downloads a browser here.</summary>
    private static string Chromium() =>
        ChromiumPaths.FirstOrDefault(File.Exists)
        ?? throw new FileNotFoundException("chromium is not installed (test.sh installs Debian's chromium)");

    private static byte[] WhiteSquareOnBlack()
    {
        using var bitmap = new SKBitmap(64, 64);
        using (var canvas = new SKCanvas(bitmap))
        {
            canvas.Clear(SKColors.Black);
            using var white = new SKPaint { Color = SKColors.White };
            canvas.DrawRect(16, 16, 32, 32, white);
        }

        using var image = SKImage.FromBitmap(bitmap);
        using var png = image.Encode(SKEncodedImageFormat.Png, 100);
        return png.ToArray();
    }
}
