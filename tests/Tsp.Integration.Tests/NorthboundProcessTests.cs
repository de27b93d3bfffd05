using Grpc.Net.Client;
using Tsp.Actors.Protocol;
using Tsp.Tests.Shared;
using Xunit.Abstractions;

namespace Tsp.Integration.Tests;

/// <summary>What a user runs: <c>standalone</c> prints where its servers are, and <c>subscribe</c>
/// prints the results that gRPC submissions produce (no tokens configured: open, plain HTTP/2).</summary>
[Collection(ClusterCollection.Name)]
public sealed class NorthboundProcessTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);
    private readonly ChildProcesses _processes = new(output);

    public void Dispose() => _processes.Dispose();

    [Fact]
    public async Task Standalone_prints_its_endpoints_and_the_subscribe_command_prints_each_result()
    {
        var project = TestServers.Unique("cli");
        var workflow = GrpcTestClients.Workflow(project);
        var standalone = _processes.Start("Tsp.Seed.dll", "standalone", "--grpc-port", "0", "--workflow", workflow, "--journal", TestServers.TempSqlitePath());
        var grpc = (await standalone.WaitForLineAsync(l => l.StartsWith("grpc: ", StringComparison.Ordinal), Timeout))["grpc: ".Length..];
        Assert.Matches(@"^kafka: 127\.0\.0\.1:\d+", standalone.Lines.Single(l => l.StartsWith("kafka: ", StringComparison.Ordinal)));
        Assert.Matches(@"^redis: 127\.0\.0\.1:\d+", standalone.Lines.Single(l => l.StartsWith("redis: ", StringComparison.Ordinal)));
        Assert.Matches(@"^http://127\.0\.0\.1:\d+$", grpc);

        using var channel = GrpcTestClients.Channel(grpc);
        var client = new TspService.TspServiceClient(channel);
        var first = await client.SubmitAsync(new SubmitRequest { Frame = GrpcTestClients.Frame(project, 0) });
        var subscriber = _processes.Start("Tsp.Seed.dll", "subscribe", "--grpc", grpc, "--project", project, "--from", "earliest");
        var runIds = new List<string> { first.RunId };
        for (var i = 1; i < 5; i++)
        {
            runIds.Add((await client.SubmitAsync(new SubmitRequest { Frame = GrpcTestClients.Frame(project, i) })).RunId);
        }

        for (var i = 0; i < runIds.Count; i++)
        {
            var line = await subscriber.WaitForLineAsync(l => l.StartsWith($"{project}@{i + 1} ", StringComparison.Ordinal), Timeout);
            Assert.Matches($@"^{project}@{i + 1} [0-9a-f]+ succeeded detections=0 latency_ms=\d+ workflow=[0-9a-f]{{16}}$", line);
        }

        Assert.Equal(runIds.Order(StringComparer.Ordinal), subscriber.Lines.Where(l => l.StartsWith(project + "@", StringComparison.Ordinal)).Select(l => l.Split(' ')[1]).Order(StringComparer.Ordinal));
    }
}
