using Akka.Cluster.Sharding;
using Tsp.Actors.Protocol;
using Tsp.Actors.Workflows;

namespace Tsp.Actors.Tests.Workflows;

public sealed class RunMessageExtractorTests
{
    [Fact]
    public void With_as_many_shards_as_hosts_every_shard_holds_exactly_one_host()
    {
        var extractor = new RunMessageExtractor(64, 64);
        var hosts = RunMessageExtractor.AllHosts(64).ToList();

        Assert.Equal(64, hosts.Distinct().Count());
        Assert.Equal(64, hosts.Select(h => extractor.ShardId(h)).Distinct().Count());
    }

    [Fact]
    public void A_run_goes_to_one_of_the_configured_hosts_and_its_messages_follow_it()
    {
        var extractor = new RunMessageExtractor(16, 40);
        var hosts = RunMessageExtractor.AllHosts(40).ToHashSet();
        var used = new HashSet<string>();
        for (var i = 0; i < 2000; i++)
        {
            var runId = $"cam-{i}";
            var host = RunMessageExtractor.HostOf(runId, 40);
            Assert.Contains(host, hosts);
            used.Add(host);
            Assert.Equal(host, extractor.EntityId(new StartRun { RunId = runId }));
            Assert.Equal(host, extractor.EntityId(new CancelRun { RunId = runId }));
            var done = new NodeTaskDone { RunId = runId };
            Assert.Equal(extractor.ShardId(host), extractor.ShardId(extractor.EntityId(done)!, done));
            Assert.True(RunMessageExtractor.IsCurrent(host, 40));
        }

        Assert.Equal(40, used.Count);
        // More hosts than shards: host i lives in shard i mod 16.
        Assert.Equal("1", extractor.ShardId("17of40"));
    }

    [Theory]
    [InlineData("3of8", 64, false)]
    [InlineData("3of64", 64, true)]
    [InlineData("3", 64, false)]
    [InlineData("64of64", 64, false)]
    [InlineData("xof64", 64, false)]
    public void A_host_is_current_only_when_its_id_names_todays_count(string hostId, int hosts, bool current) =>
        Assert.Equal(current, RunMessageExtractor.IsCurrent(hostId, hosts));

    [Fact]
    public void Hosts_named_by_index_alone_keep_the_hashed_shard_they_had()
    {
        var extractor = new RunMessageExtractor(64, 64);
        var hashed = new HashCodeMessageExtractorProbe(64);

        Assert.All(Enumerable.Range(0, 8).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            legacy => Assert.Equal(hashed.ShardId(legacy), extractor.ShardId(legacy)));
    }

    private sealed class HashCodeMessageExtractorProbe(int shards) : HashCodeMessageExtractor(shards)
    {
        public override string? EntityId(object message) => null;
    }
}
