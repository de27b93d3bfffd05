using Akka.Actor;
using Akka.Cluster.Sharding;
using Akka.TestKit;
using Akka.TestKit.Xunit2;
using Google.Protobuf;
using Tsp.Actors.Dispatch;
using Tsp.Actors.Hosting;
using Tsp.Actors.Nodes;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Actors.Workflows;
using Tsp.Tests.Shared;
using Xunit.Abstractions;

namespace Tsp.Actors.Tests.Workflows;

/// <summary>
/// The run entity against the real journal and real Redis, with a probe as its node queue. Run once
/// on SQLite and once on PostgreSQL (same code path, different provider).
/// </summary>
public abstract class WorkflowRunActorTests : TestKit, IAsyncLifetime
{
    private const string Yaml = """
        project: PROJECT
        nodes:
          - { id: pre, processor: passthrough, role: cpu, queue: q }
          - { id: a, processor: checksum, role: cpu, queue: q, after: [pre] }
          - { id: b, processor: checksum, role: cpu, queue: q, after: [pre] }
          - { id: join, processor: checksum, role: cpu, queue: q, after: [a, b] }
        """;

    private readonly JournalledSystem _system;
    private readonly string _project = TestServers.Unique("run");
    private readonly TestProbe _queue;
    private RedisStore _store = null!;
    private RunServices _services = null!;

    protected WorkflowRunActorTests(JournalledSystem system, ITestOutputHelper output)
        : base(system.System, output)
    {
        _system = system;
        _queue = CreateTestProbe("queue");
    }

    public async Task InitializeAsync()
    {
        _store = await RedisStore.ConnectAsync(TestServers.Redis);
        var catalog = new WorkflowCatalog();
        catalog.Deploy(WorkflowLoader.Parse(Yaml.Replace("PROJECT", _project), "t.yaml", NodeProcessorRegistry.WithBuiltIns().Names));
        var queues = new NodeQueues();
        queues.Add("q", _queue);
        _services = new RunServices(catalog, queues, _store, Akka.Cluster.Tools.PublishSubscribe.DistributedPubSub.Get(Sys).Mediator);
    }

    public async Task DisposeAsync()
    {
        await _store.DisposeAsync();
        _system.Dispose();
    }

    /// <summary>Hosts a run entity as sharding would: stops it when it asks to passivate, and tells the test.</summary>
    private sealed class ShardStandIn : ReceiveActor
    {
        public ShardStandIn(Props entity, IActorRef observer)
        {
            var child = Context.ActorOf(entity, "entity");
            Receive<Passivate>(_ =>
            {
                observer.Tell("passivated");
                Context.Stop(child);
            });
            ReceiveAny(message => child.Forward(message));
        }
    }

    private IActorRef StartEntity(string runId, TestProbe observer) =>
        Sys.ActorOf(Props.Create(() => new ShardStandIn(WorkflowRunActor.Props(runId, _services), observer.Ref)));

    private StartRun Start(string runId) => new()
    {
        RunId = runId,
        Project = _project,
        FrameKey = RedisKeys.Frame(_project, runId),
        SourceId = "cam",
        AcceptedAtUnixMs = 1,
    };

    private NodeTask ExpectTask(string node)
    {
        var task = _queue.ExpectMsg<NodeTask>(TimeSpan.FromSeconds(10));
        Assert.Equal(node, task.NodeId);
        return task;
    }

    private static NodeTaskDone Done(NodeTask task) => new()
    {
        TaskId = task.TaskId,
        RunId = task.RunId,
        NodeId = task.NodeId,
        OutputKey = task.OutputKey,
        Attempts = 1,
        Metrics = { ["score"] = 0.5 },
    };

    private RunStateView View(IActorRef entity, string runId)
    {
        entity.Tell(new GetRunState { RunId = runId }, TestActor);
        return ExpectMsg<RunStateView>();
    }

    [Fact]
    public async Task A_run_stopped_mid_way_resumes_from_its_journal_and_runs_only_what_was_not_done()
    {
        var runId = TestServers.Unique("r");
        await _store.PutBlobAsync(RedisKeys.Frame(_project, runId), new byte[] { 1, 2, 3 });
        var observer = CreateTestProbe();
        var first = StartEntity(runId, observer);

        first.Tell(Start(runId), TestActor);
        Assert.Equal(StartOutcome.Accepted, ExpectMsg<RunAccepted>().Outcome);
        var pre = ExpectTask("pre");
        Assert.Equal([new NodeInput { NodeId = "frame", Key = RedisKeys.Frame(_project, runId) }], pre.Inputs);
        first.Tell(Done(pre), _queue);
        var fanOut = new[] { _queue.ExpectMsg<NodeTask>(), _queue.ExpectMsg<NodeTask>() };
        Assert.Equal(["a", "b"], fanOut.Select(t => t.NodeId).Order());
        first.Tell(Done(fanOut.Single(t => t.NodeId == "a")), _queue);
        AwaitAssert(
            () =>
            {
                var view = View(first, runId);
                Assert.Equal(NodeStatus.Completed, view.Nodes.Single(n => n.NodeId == "a").Status);
                Assert.Equal(0, view.UnwrittenEvents);
            },
            TimeSpan.FromSeconds(10));

        Watch(first);
        Sys.Stop(first);
        ExpectTerminated(first);

        var second = StartEntity(runId, observer);
        var redispatched = ExpectTask("b");
        _queue.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        second.Tell(Start(runId), TestActor);
        Assert.Equal(StartOutcome.AlreadyRunning, ExpectMsg<RunAccepted>().Outcome);

        second.Tell(Done(redispatched), _queue);
        var join = ExpectTask("join");
        Assert.Equal(["a", "b"], join.Inputs.Select(i => i.NodeId).Order());
        second.Tell(Done(join), _queue);

        observer.ExpectMsg("passivated", TimeSpan.FromSeconds(10));
        var results = await _store.ReadResultsAsync(_project, 0, 10);
        var result = Assert.Single(results).Result;
        Assert.Equal(runId, result.RunId);
        Assert.Equal(RunStatus.Succeeded, result.Status);
        Assert.All(result.Nodes, n => Assert.Equal(NodeStatus.Completed, n.Status));
        Assert.Empty(await _store.ReadDeadLettersAsync(_project));

        // Its events are gone, yet the run is known as finished: a redelivered start is a no-op.
        var third = StartEntity(runId, observer);
        var view = View(third, runId);
        Assert.True(view.Exists && view.Completed);
        Assert.Empty(view.Nodes);
        third.Tell(Start(runId), TestActor);
        Assert.Equal(StartOutcome.AlreadyCompleted, ExpectMsg<RunAccepted>().Outcome);
        _queue.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        Assert.Single(await _store.ReadResultsAsync(_project, 0, 10));
    }

    [Fact]
    public void A_run_whose_project_is_no_longer_deployed_is_not_taken_for_finished()
    {
        var runId = TestServers.Unique("r");
        var first = StartEntity(runId, CreateTestProbe());
        first.Tell(Start(runId), TestActor);
        ExpectMsg<RunAccepted>();
        ExpectTask("pre");
        Watch(first);
        Sys.Stop(first);
        ExpectTerminated(first);

        var undeployed = _services with { Catalog = new WorkflowCatalog() };
        var second = Sys.ActorOf(Props.Create(() => new ShardStandIn(WorkflowRunActor.Props(runId, undeployed), TestActor)));
        var view = View(second, runId);
        second.Tell(Start(runId), TestActor);

        Assert.True(view.Exists);
        Assert.False(view.Completed);
        var reply = ExpectMsg<RunAccepted>();
        Assert.Equal(StartOutcome.Rejected, reply.Outcome);
        Assert.Contains($"project '{_project}' waits: the project is not deployed", reply.Error, StringComparison.Ordinal);
        _queue.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
    }

    [Fact]
    public async Task Concurrent_duplicate_starts_persist_once_and_all_get_accepted()
    {
        var runId = TestServers.Unique("r");
        var entity = StartEntity(runId, CreateTestProbe());

        entity.Tell(Start(runId), TestActor);
        entity.Tell(Start(runId), TestActor);

        var replies = new[] { ExpectMsg<RunAccepted>(), ExpectMsg<RunAccepted>() };
        Assert.All(replies, r => Assert.Equal(StartOutcome.Accepted, r.Outcome));
        ExpectTask("pre");
        _queue.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        await Task.CompletedTask;
    }

    [Fact]
    public async Task A_node_that_fails_for_good_fails_the_run_and_writes_a_dead_letter()
    {
        var runId = TestServers.Unique("r");
        var observer = CreateTestProbe();
        var entity = StartEntity(runId, observer);
        entity.Tell(Start(runId), TestActor);
        ExpectMsg<RunAccepted>();

        var pre = ExpectTask("pre");
        entity.Tell(new NodeTaskFailed { TaskId = pre.TaskId, RunId = runId, NodeId = "pre", Reason = "corrupt image: bad PNG header", Attempts = 2 }, _queue);

        observer.ExpectMsg("passivated", TimeSpan.FromSeconds(10));
        var result = Assert.Single(await _store.ReadResultsAsync(_project, 0, 10)).Result;
        Assert.Equal(RunStatus.Failed, result.Status);
        Assert.Equal("node 'pre' failed after 2 attempt(s): corrupt image: bad PNG header", result.Error);
        var dead = Assert.Single(await _store.ReadDeadLettersAsync(_project));
        Assert.Equal(("run", runId, "pre"), (dead.Origin, dead.Reference, dead.NodeId));
        Assert.Contains("corrupt image", dead.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void A_start_for_an_unknown_project_is_rejected_with_the_deployed_ones_named()
    {
        var runId = TestServers.Unique("r");
        var entity = StartEntity(runId, CreateTestProbe());

        entity.Tell(new StartRun { RunId = runId, Project = "nope", FrameKey = "k" }, TestActor);

        var reply = ExpectMsg<RunAccepted>();
        Assert.Equal(StartOutcome.Rejected, reply.Outcome);
        Assert.Equal($"unknown project 'nope' (deployed: {_project})", reply.Error);
        _queue.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
    }

    [Fact]
    public void Run_events_round_trip_through_the_protobuf_serializer()
    {
        var serialization = Sys.Serialization;
        IRunEvent[] events =
        [
            new RunStarted { RunId = "r", Project = "p", FrameKey = "k", WorkflowHash = "h" },
            new NodeCompleted { Result = new NodeResult { NodeId = "n", Metrics = { ["score"] = 0.25 } }, Detections = { new Detection { Label = "crack", Score = 0.9f } } },
            new NodeFailed { NodeId = "n", Reason = "x", Attempts = 3 },
            new RunCompleted { Status = RunStatus.Failed, CompletedAtUnixMs = 9 },
        ];

        foreach (var e in events)
        {
            var serializer = serialization.FindSerializerFor(e);
            Assert.IsType<TspProtobufSerializer>(serializer);
            var manifest = Akka.Serialization.Serialization.ManifestFor(serializer, e);
            var back = serialization.Deserialize(serializer.ToBinary(e), serializer.Identifier, manifest);
            Assert.Equal(e, back);
            Assert.Equal(e.GetType().Name, manifest);
        }
    }
}

public sealed class WorkflowRunActorOnSqliteTests(ITestOutputHelper output)
    : WorkflowRunActorTests(JournalledSystem.Start(new TspOptions { SqlitePath = TestServers.TempSqlitePath() }), output);

public sealed class WorkflowRunActorOnPostgresTests(ITestOutputHelper output)
    : WorkflowRunActorTests(JournalledSystem.Start(new TspOptions { Postgres = TestServers.CreatePostgresDatabaseAsync().GetAwaiter().GetResult() }), output);
