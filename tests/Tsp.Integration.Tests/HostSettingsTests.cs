using Microsoft.Extensions.Hosting;
using Tsp.Actors.Hosting;
using Tsp.Tests.Shared;

namespace Tsp.Integration.Tests;

/// <summary>Settings given as typed options reach the actor system they configure.</summary>
[Collection(ClusterCollection.Name)]
public sealed class HostSettingsTests
{
    [Fact]
    public async Task Cluster_timings_drain_timeout_and_node_dispatchers_from_the_options_reach_the_actor_system()
    {
        var options = new TspOptions
        {
            Redis = TestServers.Redis,
            SqlitePath = TestServers.TempSqlitePath(),
            Roles = [TspRoles.Seed, TspRoles.Orchestrator, TspRoles.Cpu],
            Cluster = new ClusterTuning { StableAfter = TimeSpan.FromSeconds(7), AcceptableHeartbeatPause = TimeSpan.FromMilliseconds(4500) },
            DrainTimeout = TimeSpan.FromSeconds(12),
            CpuNodeThreads = 3,
        };
        using var host = await TestServers.StartHostAsync(options);
        var config = host.System().Settings.Config;

        Assert.Equal(TimeSpan.FromSeconds(7), config.GetTimeSpan("akka.cluster.split-brain-resolver.stable-after"));
        Assert.Equal(TimeSpan.FromMilliseconds(4500), config.GetTimeSpan("akka.cluster.failure-detector.acceptable-heartbeat-pause"));
        Assert.Equal(TimeSpan.FromSeconds(17), config.GetTimeSpan("akka.coordinated-shutdown.phases.service-requests-done.timeout"));
        Assert.Equal(3, config.GetInt("tsp.dispatchers.cpu-nodes.dedicated-thread-pool.thread-count"));
        await host.StopAsync();
    }
}
