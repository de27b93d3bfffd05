using Akka.Actor;
using Akka.Cluster.Tools.PublishSubscribe;
using Grpc.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Tsp.Actors.Hosting;
using Tsp.Actors.Northbound;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Seed;
using Tsp.Seed.Grpc;
using Tsp.Tests.Shared;

namespace Tsp.Integration.Tests;

/// <summary>A subscriber whose project's results log Redis lost (no AOF, a wipe) is told so, with
/// where to resume, instead of silently dropping the new log's results as repeats.</summary>
public sealed class ResultsLogResetTests
{
    private static readonly string[] RunNames = ["one", "two", "three"];

    [Fact]
    public async Task A_subscriber_whose_results_log_Redis_lost_is_ended_with_DATA_LOSS_and_where_to_resume()
    {
        var project = TestServers.Unique("reset");
        var options = new TspOptions { Redis = TestServers.Redis, SqlitePath = TestServers.TempSqlitePath(), Workflows = [GrpcTestClients.Workflow(project)] };
        using var host = SeedHost.Build(options, new GrpcOptions { Port = 0 }, httpPort: -1, quiet: true);
        await host.StartAsync();
        var store = host.Services.GetRequiredService<RedisStore>();
        var mediator = DistributedPubSub.Get(host.Services.GetRequiredService<ActorSystem>()).Mediator;
        using var channel = Grpc.Net.Client.GrpcChannel.ForAddress(SeedHost.GrpcUrl(host)!);
        using var call = new TspService.TspServiceClient(channel).Subscribe(new SubscribeRequest { Projects = { project }, From = "earliest" });

        // Three results, then the log vanishes as with a Redis that lost it, and the new log's first
        // result comes at a position the subscriber already passed.
        foreach (var name in RunNames)
        {
            var result = new TpResult { Project = project, RunId = TestServers.Unique(name) };
            await store.AppendResultAsync(result);
            mediator.Tell(new Publish(ResultPublisher.TopicFor(project), result));
        }

        for (var position = 1; position <= RunNames.Length; position++)
        {
            Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
            Assert.Equal(position, call.ResponseStream.Current.Position);
        }

        await using (var redis = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(TestServers.Redis))
        {
            await redis.GetDatabase().KeyDeleteAsync([RedisKeys.ResultsSequence(project), RedisKeys.Results(project)]);
        }

        var first = new TpResult { Project = project, RunId = TestServers.Unique("after-loss") };
        await store.AppendResultAsync(first);
        Assert.Equal(1, first.Position);
        mediator.Tell(new Publish(ResultPublisher.TopicFor(project), first));

        var error = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Equal(StatusCode.DataLoss, error.StatusCode);
        Assert.Contains($"the results log of project '{project}' was reset (Redis lost it)", error.Status.Detail, StringComparison.Ordinal);
        Assert.Equal($"{project}=1", error.Trailers.GetValue(TspGrpcService.ResumeTrailer));

        // Resuming where the server says reads the new log from its start.
        using var resumed = new TspService.TspServiceClient(channel).Subscribe(new SubscribeRequest { Projects = { project }, From = error.Trailers.GetValue(TspGrpcService.ResumeTrailer) });
        Assert.True(await resumed.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Equal(first.RunId, resumed.ResponseStream.Current.RunId);
        resumed.Dispose();
        await host.StopAsync();
    }
}
