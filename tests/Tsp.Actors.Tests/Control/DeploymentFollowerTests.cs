using Akka.TestKit.Xunit2;
using Tsp.Actors.Control;
using Tsp.Actors.Hosting;
using Tsp.Actors.Nodes;
using Tsp.Actors.Protocol;
using Tsp.Actors.Workflows;
using Tsp.Tests.Shared;
using Xunit.Abstractions;

namespace Tsp.Actors.Tests.Control;

/// <summary>An orchestrator following deployed versions: a run recovered on a version is dispatched as
/// soon as the catalog knows that version, so what the version needs (its queues) is made first.</summary>
public sealed class DeploymentFollowerTests(ITestOutputHelper output)
    : TestKit(JournalledSystem.Start(new TspOptions { SqlitePath = TestServers.TempSqlitePath() }).System, output)
{
    private static readonly string[] Queues = ["q-old", "q-new"];

    [Fact]
    public void Every_version_is_prepared_before_the_catalog_knows_it_and_the_newest_becomes_current()
    {
        var catalog = new WorkflowCatalog();
        var processors = NodeProcessorRegistry.WithBuiltIns();
        var versions = Queues
            .Select(queue => WorkflowLoader.Parse($"project: p\nnodes:\n  - {{ id: a, processor: checksum, role: cpu, queue: {queue} }}\n", "p.yaml", processors.Names))
            .ToList();
        var prepared = new List<(string Queue, bool KnownAlready)>();
        var deployed = new List<string>();
        var deployments = CreateTestProbe();
        var follower = Sys.ActorOf(DeploymentFollower.Props(
            deployments,
            catalog,
            processors,
            known: w => prepared.Add((w.Nodes[0].Queue, catalog.TryGetVersion(w.Project, w.Hash, out _))),
            deployed: w => deployed.Add(w.Nodes[0].Queue),
            removed: _ => { }));
        var state = new Deployments
        {
            Projects = { new DeployedProject { Project = "p", Versions = { versions.Select(v => new WorkflowVersion { Hash = v.Hash, Yaml = v.Yaml, Source = v.Source }) } } },
        };

        follower.Tell(new DeploymentFollower.ApplyDeployments(state), TestActor);
        ExpectMsg<Akka.Done>(TimeSpan.FromSeconds(10));

        Assert.Equal([("q-old", false), ("q-new", false)], prepared);
        Assert.Equal(["q-new"], deployed);
        Assert.True(catalog.TryGetVersion("p", versions[0].Hash, out _));
        Assert.True(catalog.TryGet("p", out var current) && current.Hash == versions[1].Hash);
    }
}
