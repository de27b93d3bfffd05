using Akka.Actor;
using Akka.TestKit.Xunit2;
using Tsp.Actors.Dispatch;
using Tsp.Tests.Shared;
using Xunit.Abstractions;

namespace Tsp.Actors.Tests.Dispatch;

public sealed class TspDispatchersTests(ITestOutputHelper output) : TestKit(TspDispatchers.Config(0).WithFallback(TestTiming.Config), output: output)
{
    private sealed class ThreadReporter : ReceiveActor
    {
        public ThreadReporter() =>
            Receive<string>(_ => Sender.Tell((Environment.CurrentManagedThreadId, Thread.CurrentThread.IsThreadPoolThread)));
    }

    private (int Thread, bool Pooled) ThreadOf(IActorRef actor)
    {
        actor.Tell("which", TestActor);
        return ExpectMsg<(int, bool)>();
    }

    [Theory]
    [InlineData(TspDispatchers.GpuNodes)]
    [InlineData(TspDispatchers.KafkaConsumers)]
    public void A_pinned_dispatcher_gives_each_actor_a_thread_of_its_own_outside_the_thread_pool(string dispatcher)
    {
        var first = Sys.ActorOf(Props.Create(() => new ThreadReporter()).WithDispatcher(dispatcher));
        var second = Sys.ActorOf(Props.Create(() => new ThreadReporter()).WithDispatcher(dispatcher));

        var firstThreads = Enumerable.Range(0, 5).Select(_ => ThreadOf(first)).ToList();
        var secondThreads = Enumerable.Range(0, 5).Select(_ => ThreadOf(second)).ToList();

        // A blocking wait on a pool thread would take a thread the actors share.
        Assert.All(firstThreads.Concat(secondThreads), t => Assert.False(t.Pooled));
        Assert.Single(firstThreads.Select(t => t.Thread).Distinct());
        Assert.Single(secondThreads.Select(t => t.Thread).Distinct());
        Assert.NotEqual(firstThreads[0].Thread, secondThreads[0].Thread);
    }

    [Fact]
    public void CPU_routees_run_on_the_thread_pool_unless_given_threads_of_their_own()
    {
        var shared = Sys.ActorOf(Props.Create(() => new ThreadReporter()).WithDispatcher(TspDispatchers.CpuNodes));
        Assert.All(Enumerable.Range(0, 5).Select(_ => ThreadOf(shared)), t => Assert.True(t.Pooled));

        using var dedicated = ActorSystem.Create("dedicated", TspDispatchers.Config(2).WithFallback(TestTiming.Config));
        var reporters = Enumerable.Range(0, 4).Select(_ => dedicated.ActorOf(Props.Create(() => new ThreadReporter()).WithDispatcher(TspDispatchers.CpuNodes))).ToList();
        var threads = reporters.SelectMany(r => Enumerable.Range(0, 5).Select(_ => r.Ask<(int Thread, bool Pooled)>("which", Dilated(TimeSpan.FromSeconds(10))).Result)).ToList();

        Assert.All(threads, t => Assert.False(t.Pooled));
        Assert.InRange(threads.Select(t => t.Thread).Distinct().Count(), 1, 2);
    }
}
