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
/// The run host against the real journal and real Redis, with a probe as its node queue. Run once
/// on SQLite and once on PostgreSQL (same code path, different provider). Stopping a host and
/// starting another with the same id is what a crash and a restart elsewhere look like to it.
/// </summary>
public abstract class WorkflowRunHostTests : TestKit, IAsyncLifetime
{
    private const string Yaml = """
        project: PROJECT
        nodes:
          - { id: pre, processor: passthrough, role: cpu, queue: q }
          - { id: a, processor: checksum, role: cpu, queue: q, after: [pre] }
          - { id: b, processor: checksum, role: cpu, queue: q, after: [pre] }
          - { id: join, processor: checksum, role: cpu, queue: q, after: [frame, a, b] }
        """;

    private readonly JournalledSystem _system;
    private readonly string _project = TestServers.Unique("run");
    private readonly TestProbe _queue;
    private RedisStore _store = null!;
    private RunServices _services = null!;

    protected WorkflowRunHostTests(JournalledSystem system, ITestOutputHelper output)
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

    private readonly string _hostId = TestServers.Unique("host");

    private IActorRef StartHost(RunServices? services = null) => Sys.ActorOf(WorkflowRunHost.Props(_hostId, services ?? _services));

    private void Crash(IActorRef host)
    {
        Watch(host);
        Sys.Stop(host);
        ExpectTerminated(host);
    }

    private async Task<TpResult> AwaitResultAsync(string runId)
    {
        TpResult? found = null;
        await AwaitAssertAsync(
            async () => found = Assert.Single(await _store.ReadResultsAsync(_project, 0, 100), r => r.Result.RunId == runId).Result,
            TimeSpan.FromSeconds(10));
        return found!;
    }

    /// <summary>Writes a 3-byte frame for <paramref name="runId"/>, starts a host and the run on it, and
    /// checks that the run was accepted.</summary>
    private async Task<IActorRef> StartedRunAsync(string runId, RunServices? services = null)
    {
        await _store.PutBlobAsync(RedisKeys.Frames(_project, runId), new byte[] { 1, 2, 3 });
        var host = StartHost(services);
        host.Tell(Start(runId), TestActor);
        Assert.Equal(StartOutcome.Accepted, ExpectMsg<RunAccepted>().Outcome);
        return host;
    }

    private StartRun Start(string runId) => new()
    {
        RunId = runId,
        Project = _project,
        FrameKey = RedisKeys.Frames(_project, runId),
        FrameLength = 3,
        SourceId = "cam",
        AcceptedAtUnixMs = 1,
    };

    private NodeTask ExpectTask(string node)
    {
        var task = _queue.ExpectMsg<NodeTask>(TimeSpan.FromSeconds(10));
        Assert.Equal(node, task.NodeId);
        return task;
    }

    /// <summary>A node's answer; by default one that ran long enough to be written at once
    /// (<see cref="RunHostTuning.WriteNodeResultsFrom"/>).</summary>
    private static NodeTaskDone Done(NodeTask task, TimeSpan? ran = null) => new()
    {
        TaskId = task.TaskId,
        RunId = task.RunId,
        NodeId = task.NodeId,
        OutputKey = task.OutputKey,
        Attempts = 1,
        DurationUs = (long)(ran ?? TimeSpan.FromSeconds(1)).TotalMicroseconds,
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
        var first = await StartedRunAsync(runId);
        var pre = ExpectTask("pre");
        Assert.Equal([new NodeInput { NodeId = "frame", Key = RedisKeys.Frames(_project, runId), Length = 3 }], pre.Inputs);
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

        Crash(first);

        var second = StartHost();
        var redispatched = ExpectTask("b");
        _queue.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        second.Tell(Start(runId), TestActor);
        Assert.Equal(StartOutcome.AlreadyRunning, ExpectMsg<RunAccepted>().Outcome);

        second.Tell(Done(redispatched), _queue);
        var join = ExpectTask("join");
        Assert.Equal(["frame", "a", "b"], join.Inputs.Select(i => i.NodeId));
        Assert.Equal(pre.Inputs[0], join.Inputs[0]);
        second.Tell(Done(join), _queue);

        var result = await AwaitResultAsync(runId);
        Assert.Equal(RunStatus.Succeeded, result.Status);
        Assert.All(result.Nodes, n => Assert.Equal(NodeStatus.Completed, n.Status));
        Assert.Empty(await _store.ReadDeadLettersAsync(_project));

        // Recovered again, the host knows the run as finished: a redelivered start is a no-op.
        await AwaitAssertAsync(async () => Assert.True(View(second, runId).Completed), TimeSpan.FromSeconds(10));
        Crash(second);
        var third = StartHost();
        var view = View(third, runId);
        Assert.True(view.Exists && view.Completed);
        third.Tell(Start(runId), TestActor);
        Assert.Equal(StartOutcome.AlreadyCompleted, ExpectMsg<RunAccepted>().Outcome);
        _queue.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        Assert.Single(await _store.ReadResultsAsync(_project, 0, 10));
    }

    [Fact]
    public async Task A_small_output_carried_by_its_reply_reaches_the_children_in_their_tasks_and_after_a_crash_they_read_it_by_key()
    {
        var runId = TestServers.Unique("r");
        var first = await StartedRunAsync(runId);
        var pre = ExpectTask("pre");
        var carried = Done(pre);
        carried.Output = Google.Protobuf.ByteString.CopyFrom(7, 7);
        first.Tell(carried, _queue);

        var fanOut = new[] { _queue.ExpectMsg<NodeTask>(), _queue.ExpectMsg<NodeTask>() };
        Assert.All(fanOut, task =>
        {
            var input = Assert.Single(task.Inputs);
            Assert.Equal(pre.OutputKey, input.Key);
            Assert.True(input.HasData);
            Assert.Equal([7, 7], input.Data.ToByteArray());
        });
        first.Tell(Done(fanOut.Single(t => t.NodeId == "a")), _queue);
        AwaitAssert(() => Assert.Equal(0, View(first, runId).UnwrittenEvents), TimeSpan.FromSeconds(10));

        // Carried outputs live in the host's memory only: the recovered host hands b its parent by key.
        Crash(first);
        var second = StartHost();
        var redispatched = ExpectTask("b");
        Assert.False(Assert.Single(redispatched.Inputs).HasData);
        var fromB = Done(redispatched);
        fromB.Output = Google.Protobuf.ByteString.CopyFrom(9);
        second.Tell(fromB, _queue);

        var join = ExpectTask("join");
        Assert.Equal(["frame", "a", "b"], join.Inputs.Select(i => i.NodeId));
        Assert.Equal([false, false, true], join.Inputs.Select(i => i.HasData));
        Assert.Equal([9], join.Inputs[2].Data.ToByteArray());
        second.Tell(Done(join), _queue);
        Assert.Equal(RunStatus.Succeeded, (await AwaitResultAsync(runId)).Status);
    }

    /// <summary>A short node's answer whose output its worker left to the host (<see cref="NodeTask.DeferOutputUnderUs"/>).</summary>
    private static NodeTaskDone Deferred(NodeTask task, params byte[] output)
    {
        Assert.True(task.DeferOutputUnderUs > 1000, $"task {task.TaskId} does not allow its output to be deferred");
        var done = Done(task, TimeSpan.FromMilliseconds(1));
        done.Output = ByteString.CopyFrom(output);
        done.OutputDeferred = true;
        return done;
    }

    [Fact]
    public async Task A_deferred_output_reaches_the_children_survives_a_crash_in_its_journaled_result_and_is_written_with_the_runs_result()
    {
        var runId = TestServers.Unique("r");
        var first = await StartedRunAsync(runId);
        var pre = ExpectTask("pre");
        Assert.Equal((long)new RunHostTuning().WriteNodeResultsFrom.TotalMicroseconds, pre.DeferOutputUnderUs);
        first.Tell(Deferred(pre, 7, 7), _queue);

        var fanOut = new[] { _queue.ExpectMsg<NodeTask>(), _queue.ExpectMsg<NodeTask>() };
        Assert.All(fanOut, task => Assert.Equal([7, 7], Assert.Single(task.Inputs).Data.ToByteArray()));

        // a ran 1 s: written at once, and pre's held result with it, its output inside.
        first.Tell(Done(fanOut.Single(t => t.NodeId == "a")), _queue);
        AwaitAssert(() => Assert.Equal(0, View(first, runId).UnwrittenEvents), TimeSpan.FromSeconds(10));
        Crash(first);

        // Recovered: b gets pre's output from the journal, which is the only place it is.
        var second = StartHost();
        var redispatched = ExpectTask("b");
        Assert.Equal([7, 7], Assert.Single(redispatched.Inputs).Data.ToByteArray());
        Assert.False(await _store.BlobExistsAsync(pre.OutputKey));
        second.Tell(Deferred(redispatched, 9), _queue);

        var join = ExpectTask("join");
        Assert.Equal(["frame", "a", "b"], join.Inputs.Select(i => i.NodeId));
        Assert.Equal([false, false, true], join.Inputs.Select(i => i.HasData));
        second.Tell(Deferred(join, 1, 2, 3), _queue);

        // Once the result is in the log, every output it names is in Redis, for the finished-blob TTL.
        var result = await AwaitResultAsync(runId);
        Assert.Equal(RunStatus.Succeeded, result.Status);
        var db = _store.Connection.GetDatabase();
        foreach (var (node, output) in new[] { ("pre", new byte[] { 7, 7 }), ("b", [9]), ("join", [1, 2, 3]) })
        {
            var key = result.Nodes.Single(n => n.NodeId == node).OutputKey;
            Assert.Equal(output, await _store.GetBlobAsync(key));
            Assert.InRange((await db.KeyTimeToLiveAsync(key))!.Value, TimeSpan.FromSeconds(1), _store.Options.FinishedBlobTtl);
        }
    }

    [Fact]
    public async Task A_short_nodes_result_goes_with_its_runs_next_write_so_a_crash_runs_only_that_node_again()
    {
        var shortNode = TimeSpan.FromMilliseconds(1);
        var runId = TestServers.Unique("r");
        var first = await StartedRunAsync(runId);

        // pre ran 1 ms: acted on at once (a and b dispatched), but held back from the journal.
        first.Tell(Done(ExpectTask("pre"), shortNode), _queue);
        var fanOut = new[] { _queue.ExpectMsg<NodeTask>(), _queue.ExpectMsg<NodeTask>() };
        var held = View(first, runId);
        Assert.Equal(NodeStatus.Completed, held.Nodes.Single(n => n.NodeId == "pre").Status);
        Assert.Equal(1, held.UnwrittenEvents);

        // a ran 1 s: written at once, and pre's result with it.
        first.Tell(Done(fanOut.Single(t => t.NodeId == "a")), _queue);
        AwaitAssert(() => Assert.Equal(0, View(first, runId).UnwrittenEvents), TimeSpan.FromSeconds(10));

        // b is short again, and the host crashes before anything else of the run is written.
        first.Tell(Done(fanOut.Single(t => t.NodeId == "b"), shortNode), _queue);
        var join = ExpectTask("join");
        Assert.Equal(1, View(first, runId).UnwrittenEvents);
        Crash(first);

        // Recovered: pre and a stand, b runs again, then join.
        var second = StartHost();
        var redispatched = ExpectTask("b");
        _queue.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        second.Tell(Done(redispatched, shortNode), _queue);
        join = ExpectTask("join");
        second.Tell(Done(join, shortNode), _queue);

        var result = await AwaitResultAsync(runId);
        Assert.All(result.Nodes, n => Assert.Equal(NodeStatus.Completed, n.Status));

        // Its completion is durable: recovered again, the host knows the run as finished.
        await AwaitAssertAsync(async () => Assert.True(View(second, runId).Completed), TimeSpan.FromSeconds(10));
        Crash(second);
        var third = StartHost();
        third.Tell(Start(runId), TestActor);
        Assert.Equal(StartOutcome.AlreadyCompleted, ExpectMsg<RunAccepted>().Outcome);
        _queue.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        Assert.Single(await _store.ReadResultsAsync(_project, 0, 10));
    }

    /// <summary>Services whose hosts write a published run's mark only with another write (or a stop).</summary>
    private RunServices MarkOnlyWithAnotherWrite() => _services with { Tuning = new RunHostTuning { PublishedMarkDelay = TimeSpan.FromHours(1) } };

    /// <summary>Finishes a run started on <paramref name="host"/> (pre written, the rest short) and waits for its result.</summary>
    private async Task<TpResult> FinishShortAsync(IActorRef host, string runId)
    {
        var shortNode = TimeSpan.FromMilliseconds(1);
        var pre = ExpectTask("pre");
        Assert.Equal(runId, pre.RunId);
        host.Tell(Done(pre), _queue);
        host.Tell(Done(_queue.ExpectMsg<NodeTask>(TimeSpan.FromSeconds(10)), shortNode), _queue);
        host.Tell(Done(_queue.ExpectMsg<NodeTask>(TimeSpan.FromSeconds(10)), shortNode), _queue);
        host.Tell(Done(ExpectTask("join"), shortNode), _queue);
        return await AwaitResultAsync(runId);
    }

    [Fact]
    public async Task A_run_published_before_its_mark_is_written_keeps_its_frame_runs_again_after_a_crash_and_its_first_result_stands()
    {
        var services = MarkOnlyWithAnotherWrite();
        var runId = TestServers.Unique("r");
        var first = await StartedRunAsync(runId, services);
        var published = await FinishShortAsync(first, runId);

        // Out, but nothing of its end is written: not reported completed, and its frame is kept for a re-run.
        Assert.False(View(first, runId).Completed);
        Assert.True(await _store.BlobExistsAsync(RedisKeys.Frames(_project, runId)));
        Crash(first);

        // Recovered from its written events: pre stands, the short nodes run again, and the run ends
        // again (this time its mark is written on its own, soon).
        var second = StartHost();
        var again = new[] { _queue.ExpectMsg<NodeTask>(TimeSpan.FromSeconds(10)), _queue.ExpectMsg<NodeTask>(TimeSpan.FromSeconds(10)) };
        Assert.Equal(["a", "b"], again.Select(t => t.NodeId).Order());
        foreach (var task in again)
        {
            second.Tell(Done(task, TimeSpan.FromMilliseconds(1)), _queue);
        }

        second.Tell(Done(ExpectTask("join"), TimeSpan.FromMilliseconds(1)), _queue);
        AwaitAssert(() => Assert.True(View(second, runId).Completed), TimeSpan.FromSeconds(10));
        var logged = Assert.Single(await _store.ReadResultsAsync(_project, 0, 10));
        Assert.Equal((published.RunId, published.Position), (logged.Result.RunId, logged.Result.Position));
    }

    [Fact]
    public async Task A_published_runs_mark_goes_with_its_hosts_next_write_after_which_its_frame_is_deleted_and_recovery_forgets_it()
    {
        var services = MarkOnlyWithAnotherWrite();
        var finished = TestServers.Unique("r");
        var next = TestServers.Unique("r");
        foreach (var runId in new[] { finished, next })
        {
            await _store.PutBlobAsync(RedisKeys.Frames(_project, runId), new byte[] { 1, 2, 3 });
        }

        var host = StartHost(services);
        host.Tell(Start(finished), TestActor);
        Assert.Equal(StartOutcome.Accepted, ExpectMsg<RunAccepted>().Outcome);
        await FinishShortAsync(host, finished);
        Assert.False(View(host, finished).Completed);

        // Kept until then, but to operators it is finished: not listed, left to the results log, not cancelled.
        // The result reaches subscribers before the host hears that its append completed: wait for that.
        AwaitAssert(
            () =>
            {
                host.Tell(new GetRunSummary { RunId = finished }, TestActor);
                Assert.Equal(RunStage.Unspecified, ExpectMsg<RunSummary>().Stage);
            },
            TimeSpan.FromSeconds(10));
        host.Tell(new ListHostRuns { Project = _project }, TestActor);
        Assert.Empty(ExpectMsg<HostRuns>().Runs);
        host.Tell(new CancelRun { RunId = finished, Project = _project, Reason = "late" }, TestActor);
        Assert.Equal(CancelOutcome.AlreadyFinished, ExpectMsg<CancelRunReply>().Outcome);

        // The next start's write carries the mark: the finished run is forgotten, its frame deleted.
        host.Tell(Start(next), TestActor);
        Assert.Equal(StartOutcome.Accepted, ExpectMsg<RunAccepted>().Outcome);
        Assert.Equal(next, ExpectTask("pre").RunId);
        await AwaitAssertAsync(async () =>
        {
            Assert.True(View(host, finished).Completed);
            Assert.False(await _store.BlobExistsAsync(RedisKeys.Frames(_project, finished)));
        }, TimeSpan.FromSeconds(10));
        Crash(host);

        // Recovered: only the unfinished run walks again; the finished one is known as such.
        var recovered = StartHost(services);
        Assert.Equal(next, ExpectTask("pre").RunId);
        _queue.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        recovered.Tell(Start(finished), TestActor);
        Assert.Equal(StartOutcome.AlreadyCompleted, ExpectMsg<RunAccepted>().Outcome);
        Assert.Single(await _store.ReadResultsAsync(_project, 0, 10));
    }

    [Fact]
    public async Task Handed_off_with_a_mark_unwritten_a_host_writes_it_before_it_stops_and_its_next_incarnation_does_not_run_the_run_again()
    {
        var services = MarkOnlyWithAnotherWrite();
        var runId = TestServers.Unique("r");
        var first = await StartedRunAsync(runId, services);
        await FinishShortAsync(first, runId);

        Watch(first);
        first.Tell(WorkflowRunHost.RunHostStop.Instance);
        ExpectTerminated(first, TimeSpan.FromSeconds(10));

        var second = StartHost(services);
        second.Tell(Start(runId), TestActor);
        Assert.Equal(StartOutcome.AlreadyCompleted, ExpectMsg<RunAccepted>().Outcome);
        _queue.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
    }

    [Fact]
    public async Task A_host_of_an_earlier_RunHosts_finishes_its_run_then_asks_its_shard_to_retire_it_and_stops_after_its_writes()
    {
        var runId = TestServers.Unique("r");
        var before = await StartedRunAsync(runId);
        ExpectTask("pre");
        AwaitAssert(() => Assert.Equal(0, View(before, runId).UnwrittenEvents), TimeSpan.FromSeconds(10));
        Crash(before);

        // Restarted with 4 hosts: this host's id names none of them, so it is of an earlier layout.
        var services = _services with { RunHosts = 4 };
        var shard = CreateTestProbe("shard");
        var host = shard.ChildActorOf(WorkflowRunHost.Props(_hostId, services));
        var pre = ExpectTask("pre");
        host.Tell(Done(pre), _queue);
        foreach (var task in new[] { _queue.ExpectMsg<NodeTask>(), _queue.ExpectMsg<NodeTask>() })
        {
            // While the run is unfinished, the host stays.
            shard.ExpectNoMsg(TimeSpan.FromMilliseconds(100));
            host.Tell(Done(task), _queue);
        }

        host.Tell(Done(ExpectTask("join")), _queue);
        Assert.Equal(RunStatus.Succeeded, (await AwaitResultAsync(runId)).Status);
        var passivate = shard.ExpectMsg<Passivate>(TimeSpan.FromSeconds(10));
        Assert.Same(WorkflowRunHost.RunHostStop.Instance, passivate.StopMessage);

        Watch(host);
        host.Tell(WorkflowRunHost.RunHostStop.Instance, shard);
        ExpectTerminated(host, TimeSpan.FromSeconds(10));

        // What it wrote is whole: recovered, it knows the run as finished and retires at once.
        var recovered = shard.ChildActorOf(WorkflowRunHost.Props(_hostId, services));
        Assert.True(View(recovered, runId).Completed);
        shard.ExpectMsg<Passivate>(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task Handed_off_with_node_results_unwritten_a_host_writes_them_before_it_stops_and_its_next_incarnation_goes_on_from_them()
    {
        var runId = TestServers.Unique("r");
        var first = await StartedRunAsync(runId);
        first.Tell(Done(ExpectTask("pre")), _queue);
        var fanOut = new[] { _queue.ExpectMsg<NodeTask>(), _queue.ExpectMsg<NodeTask>() };

        // The answer and the hand-off arrive together: the answer is recorded, not yet written.
        Watch(first);
        first.Tell(Done(fanOut.Single(t => t.NodeId == "a")), _queue);
        first.Tell(WorkflowRunHost.RunHostStop.Instance);
        ExpectTerminated(first, TimeSpan.FromSeconds(10));

        var second = StartHost();
        var redispatched = ExpectTask("b");
        _queue.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        second.Tell(Done(redispatched), _queue);
        second.Tell(Done(ExpectTask("join")), _queue);
        Assert.Equal(RunStatus.Succeeded, (await AwaitResultAsync(runId)).Status);
    }

    [Fact]
    public async Task Runs_interleaved_in_one_host_survive_recovery_from_a_snapshot_and_the_events_after_it()
    {
        // A snapshot every 4 events: the crash below lands after several snapshots and some events.
        var services = _services with { Tuning = new RunHostTuning { SnapshotEvery = 4 } };
        var runs = Enumerable.Range(0, 6).Select(_ => TestServers.Unique("r")).ToList();
        var first = StartHost(services);
        foreach (var runId in runs)
        {
            first.Tell(Start(runId), TestActor);
        }

        var accepted = Enumerable.Range(0, runs.Count).Select(_ => ExpectMsg<RunAccepted>()).ToList();
        Assert.All(accepted, a => Assert.Equal(StartOutcome.Accepted, a.Outcome));
        var pres = Enumerable.Range(0, runs.Count).Select(_ => ExpectTask("pre")).ToList();

        // Runs 0-2 finish; runs 3-5 get as far as a and b of which only a completes.
        foreach (var pre in pres)
        {
            first.Tell(Done(pre), _queue);
        }

        var fanOut = Enumerable.Range(0, 2 * runs.Count).Select(_ => _queue.ExpectMsg<NodeTask>()).ToList();
        foreach (var task in fanOut.Where(t => runs.IndexOf(t.RunId) < 3 || t.NodeId == "a"))
        {
            first.Tell(Done(task), _queue);
        }

        var joins = Enumerable.Range(0, 3).Select(_ => ExpectTask("join")).ToList();
        foreach (var join in joins)
        {
            first.Tell(Done(join), _queue);
        }

        foreach (var runId in runs.Take(3))
        {
            await AwaitResultAsync(runId);
        }

        AwaitAssert(() => Assert.All(runs.Skip(3), r => Assert.Equal(0, View(first, r).UnwrittenEvents)), TimeSpan.FromSeconds(10));
        RunHostStats before = null!;
        AwaitAssert(
            () =>
            {
                first.Tell(GetRunHostStats.Instance, TestActor);
                before = ExpectMsg<RunHostStats>();
                Assert.True(before.LastSnapshot > 0, "no snapshot saved yet");
            },
            TimeSpan.FromSeconds(10));
        Crash(first);

        var second = StartHost(services);
        second.Tell(GetRunHostStats.Instance, TestActor);
        var after = ExpectMsg<RunHostStats>();
        Assert.Equal(before.LastSnapshot, after.RecoveredFromSnapshot);
        // The three unfinished runs, plus any finished one whose completion came after the snapshot:
        // it is published again (a no-op for the results log) and then let go.
        Assert.InRange(after.Runs, 3, 6);
        var redispatched = Enumerable.Range(0, 3).Select(_ => ExpectTask("b")).ToList();
        Assert.Equal(runs.Skip(3).Order(), redispatched.Select(t => t.RunId).Order());
        _queue.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        foreach (var runId in runs.Take(3))
        {
            second.Tell(Start(runId), TestActor);
            Assert.Equal(StartOutcome.AlreadyCompleted, ExpectMsg<RunAccepted>().Outcome);
        }

        foreach (var task in redispatched)
        {
            second.Tell(Done(task), _queue);
        }

        foreach (var join in Enumerable.Range(0, 3).Select(_ => ExpectTask("join")).ToList())
        {
            second.Tell(Done(join), _queue);
        }

        foreach (var runId in runs)
        {
            Assert.Equal(RunStatus.Succeeded, (await AwaitResultAsync(runId)).Status);
        }

        Assert.Equal(runs.Count, (await _store.ReadResultsAsync(_project, 0, 100)).Count);
    }

    [Fact]
    public async Task Past_its_active_limit_a_host_queues_accepted_runs_durably_and_starts_them_in_order_as_others_finish()
    {
        var services = _services with { Tuning = new RunHostTuning { MaxActiveRuns = 2, SnapshotEvery = 3 } };
        var runs = Enumerable.Range(0, 6).Select(i => $"{TestServers.Unique("q")}-{i}").ToList();
        var first = StartHost(services);
        foreach (var runId in runs)
        {
            first.Tell(Start(runId), TestActor);
        }

        Assert.All(runs, _ => Assert.Equal(StartOutcome.Accepted, ExpectMsg<RunAccepted>().Outcome));
        Assert.Equal(runs.Take(2).Order(), new[] { ExpectTask("pre"), ExpectTask("pre") }.Select(t => t.RunId).Order());
        _queue.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        first.Tell(Start(runs[4]), TestActor);
        Assert.Equal(StartOutcome.AlreadyRunning, ExpectMsg<RunAccepted>().Outcome);
        Assert.True(View(first, runs[4]).Exists);
        first.Tell(GetRunHostStats.Instance, TestActor);
        var before = ExpectMsg<RunHostStats>();
        Assert.Equal((2, 4), (before.Runs, before.Queued));
        Assert.Equal((6, 4), (services.Active.Count, services.Active.Queued));

        // A crash: the queued runs are recovered as queued, the two active ones are dispatched again.
        Crash(first);
        var second = StartHost(services);
        second.Tell(GetRunHostStats.Instance, TestActor);
        var after = ExpectMsg<RunHostStats>();
        Assert.Equal((2, 4), (after.Runs, after.Queued));

        // Every task is done as it comes; a queued run starts only when an active one has finished.
        var firstDispatch = new List<string>();
        var joined = new HashSet<string>();
        while (joined.Count < runs.Count)
        {
            var task = _queue.ExpectMsg<NodeTask>(TimeSpan.FromSeconds(10));
            if (task.NodeId == "pre" && !firstDispatch.Contains(task.RunId))
            {
                firstDispatch.Add(task.RunId);
            }

            if (task.NodeId == "join")
            {
                joined.Add(task.RunId);
            }

            second.Tell(GetRunHostStats.Instance, TestActor);
            Assert.InRange(ExpectMsg<RunHostStats>().Runs, 0, 2);
            second.Tell(Done(task), _queue);
        }

        Assert.Equal(runs.Take(2).Order(), firstDispatch.Take(2).Order());
        Assert.Equal(runs.Skip(2), firstDispatch.Skip(2));
        foreach (var runId in runs)
        {
            Assert.Equal(RunStatus.Succeeded, (await AwaitResultAsync(runId)).Status);
        }

        AwaitAssert(() => Assert.Equal((0, 0), (services.Active.Count, services.Active.Queued)), TimeSpan.FromSeconds(10));
    }

    private RunsStarted Series(string prefix, long[] offsets, string frameKey, string[]? sources = null)
    {
        var series = new RunsStarted
        {
            Common = new RunStarted { Project = _project, FrameKey = frameKey, AcceptedAtUnixMs = 7 },
            RunIdPrefix = prefix,
            RunOffsets = { offsets },
            FrameOffsets = { offsets.Select((_, i) => (uint)(i * 10)) },
            FrameLengths = { offsets.Select((_, i) => (uint)(i + 1)) },
        };
        series.SourceIds.Add(sources ?? []);
        return series;
    }

    /// <summary>Answers a run's tasks after "pre" (which the caller holds) until its result is logged.</summary>
    private async Task<TpResult> FinishAfterPreAsync(IActorRef host, NodeTask pre)
    {
        host.Tell(Done(pre), _queue);
        return await FinishBranchesAsync(host, pre.RunId);
    }

    private async Task<TpResult> FinishBranchesAsync(IActorRef host, string runId)
    {
        var branches = new[] { _queue.ExpectMsg<NodeTask>(TimeSpan.FromSeconds(10)), _queue.ExpectMsg<NodeTask>(TimeSpan.FromSeconds(10)) };
        Assert.Equal(["a", "b"], branches.Select(t => t.NodeId).Order());
        Assert.All(branches, t => Assert.Equal(runId, t.RunId));
        Assert.All(branches, t => host.Tell(Done(t), _queue));
        host.Tell(Done(ExpectTask("join")), _queue);
        return await AwaitResultAsync(runId);
    }

    [Theory]
    [InlineData(100)]
    [InlineData(2)]
    public async Task A_series_past_the_active_limit_queues_whole_and_keeps_each_runs_id_source_and_frame_through_a_crash(int snapshotEvery)
    {
        // snapshotEvery 2: the queued series comes back from a snapshot; 100: from its journal event,
        // and run 11, which had started, leaves it out of turn when its node's event is replayed.
        var services = _services with { Tuning = new RunHostTuning { MaxActiveRuns = 1, SnapshotEvery = snapshotEvery } };
        var prefix = $"{TestServers.Unique("tsp.t")}-3-";
        var frames = RedisKeys.Frames(_project, TestServers.Unique("batch"));
        long[] offsets = [10, 11, 13, 20, 21];
        var sources = new[] { string.Empty, string.Empty, "cam-2", string.Empty, "cam-4" };
        var series = Series(prefix, offsets, frames, sources);
        var host = StartHost(services);
        host.Tell(new StartRuns { HostId = _hostId, Series = { series } }, TestActor);
        var answer = ExpectMsg<RunsAccepted>();
        Assert.Empty(answer.Results);
        Assert.Empty(answer.Errors);
        Assert.Equal(Enumerable.Repeat(StartOutcome.Accepted, 5), answer.Outcomes);

        var first = ExpectTask("pre");
        Assert.Equal(prefix + "10", first.RunId);
        await FinishAfterPreAsync(host, first);
        var second = ExpectTask("pre");
        Assert.Equal(prefix + "11", second.RunId);
        host.Tell(Done(second), _queue);
        _queue.ExpectMsg<NodeTask>(TimeSpan.FromSeconds(10));
        _queue.ExpectMsg<NodeTask>(TimeSpan.FromSeconds(10));

        // Redelivered: every run is known, finished or not.
        host.Tell(new StartRuns { HostId = _hostId, Series = { Series(prefix, offsets, frames, sources) } }, TestActor);
        Assert.Equal([StartOutcome.AlreadyCompleted, .. Enumerable.Repeat(StartOutcome.AlreadyRunning, 4)], ExpectMsg<RunsAccepted>().Outcomes);
        host.Tell(GetRunHostStats.Instance, TestActor);
        var stats = ExpectMsg<RunHostStats>();
        Assert.Equal((1, 3), (stats.Runs, stats.Queued));
        Assert.True(View(host, prefix + "13").Exists);
        Assert.False(View(host, prefix + "12").Exists);
        Assert.False(View(host, prefix + "013").Exists);

        // Run 11's pre is durable before the crash (had its write still been in flight, pre would run again).
        AwaitAssert(() => Assert.Equal(0, View(host, prefix + "11").UnwrittenEvents), TimeSpan.FromSeconds(10));
        Crash(host);
        var restarted = StartHost(services);
        Assert.True(View(restarted, prefix + "21").Exists);
        await FinishBranchesAsync(restarted, prefix + "11");
        for (var i = 2; i < offsets.Length; i++)
        {
            var pre = ExpectTask("pre");
            Assert.Equal(prefix + offsets[i], pre.RunId);
            var frame = Assert.Single(pre.Inputs);
            Assert.Equal((frames, (uint)(i * 10), (uint)(i + 1)), (frame.Key, frame.Offset, frame.Length));
            var result = await FinishAfterPreAsync(restarted, pre);
            Assert.Equal((sources[i], 7L), (result.SourceId, result.AcceptedAtUnixMs));
        }

        _queue.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        AwaitAssert(() => Assert.Equal((0, 0), (services.Active.Count, services.Active.Queued)), TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task A_series_that_overlaps_runs_the_host_knows_is_taken_run_by_run_each_once_in_order()
    {
        var services = _services with { Tuning = new RunHostTuning { MaxActiveRuns = 1 } };
        var prefix = $"{TestServers.Unique("tsp.t")}-0-";
        var frames = RedisKeys.Frames(_project, TestServers.Unique("batch"));
        var host = StartHost(services);
        host.Tell(new StartRuns { HostId = _hostId, Series = { Series(prefix, [1, 2, 3], frames) } }, TestActor);
        Assert.Equal(Enumerable.Repeat(StartOutcome.Accepted, 3), ExpectMsg<RunsAccepted>().Outcomes);
        // A run of the same id form submitted alone (gRPC) is the same run as a series' one.
        host.Tell(Start(prefix + "5"), TestActor);
        Assert.Equal(StartOutcome.Accepted, ExpectMsg<RunAccepted>().Outcome);

        host.Tell(new StartRuns { HostId = _hostId, Series = { Series(prefix, [3, 4, 5, 6], frames) } }, TestActor);
        Assert.Equal([StartOutcome.AlreadyRunning, StartOutcome.Accepted, StartOutcome.AlreadyRunning, StartOutcome.Accepted], ExpectMsg<RunsAccepted>().Outcomes);
        host.Tell(GetRunHostStats.Instance, TestActor);
        var stats = ExpectMsg<RunHostStats>();
        Assert.Equal((1, 5), (stats.Runs, stats.Queued));

        // Acceptance order: 1 (at once), the series' 2 and 3, 5 alone, then 4 and 6.
        foreach (var offset in new[] { 1, 2, 3, 5, 4, 6 })
        {
            var pre = ExpectTask("pre");
            Assert.Equal(prefix + offset, pre.RunId);
            await FinishAfterPreAsync(host, pre);
        }

        _queue.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        host.Tell(new StartRuns { HostId = _hostId, Series = { Series(prefix, [1, 6, 7], frames) } }, TestActor);
        Assert.Equal([StartOutcome.AlreadyCompleted, StartOutcome.AlreadyCompleted, StartOutcome.Accepted], ExpectMsg<RunsAccepted>().Outcomes);
        Assert.Equal(prefix + "7", ExpectTask("pre").RunId);
    }

    [Fact]
    public void A_series_of_an_unknown_project_or_malformed_is_rejected_run_by_run_with_the_reason()
    {
        var host = StartHost();
        var prefix = $"{TestServers.Unique("tsp.t")}-0-";
        var unknown = Series(prefix, [1, 2], "k");
        unknown.Common.Project = "nope";
        var mismatched = Series(prefix, [3, 4], "k");
        mismatched.FrameLengths.RemoveAt(1);
        var noDash = Series(prefix.TrimEnd('-'), [5], "k");
        var good = Series(prefix, [6], "k");

        host.Tell(new StartRuns { HostId = _hostId, Runs = { Start(prefix + "9") }, Series = { unknown, mismatched, noDash, good } }, TestActor);

        var answer = ExpectMsg<RunsAccepted>();
        Assert.Equal(StartOutcome.Accepted, Assert.Single(answer.Results).Outcome);
        Assert.Equal([StartOutcome.Rejected, StartOutcome.Rejected, StartOutcome.Rejected, StartOutcome.Rejected, StartOutcome.Rejected, StartOutcome.Accepted], answer.Outcomes);
        Assert.Equal(6, answer.Errors.Count);
        Assert.All(answer.Errors.Take(2), e => Assert.Equal($"unknown project 'nope' (deployed: {_project})", e));
        Assert.All(answer.Errors.Skip(2).Take(3), e => Assert.Contains("is malformed", e, StringComparison.Ordinal));
        Assert.Equal(string.Empty, answer.Errors[5]);
        Assert.Equal([prefix + "9", prefix + "6"], new[] { ExpectTask("pre").RunId, ExpectTask("pre").RunId });
    }

    [Fact]
    public void A_batch_of_starts_past_the_active_limit_is_answered_once_written_repeats_included()
    {
        var services = _services with { Tuning = new RunHostTuning { MaxActiveRuns = 1 } };
        var (a, b, c) = (TestServers.Unique("a"), TestServers.Unique("b"), TestServers.Unique("c"));
        var host = StartHost(services);
        host.Tell(new StartRuns { HostId = _hostId, Runs = { Start(a), Start(b), Start(c), Start(b) } }, TestActor);

        var results = ExpectMsg<RunsAccepted>().Results;
        Assert.Equal([a, b, c, b], results.Select(r => r.RunId));
        Assert.All(results, r => Assert.Equal(StartOutcome.Accepted, r.Outcome));
        Assert.Equal(a, ExpectTask("pre").RunId);
        _queue.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        host.Tell(new StartRuns { HostId = _hostId, Runs = { Start(c) } }, TestActor);
        Assert.Equal(StartOutcome.AlreadyRunning, ExpectMsg<RunsAccepted>().Results.Single().Outcome);
        host.Tell(GetRunHostStats.Instance, TestActor);
        var stats = ExpectMsg<RunHostStats>();
        Assert.Equal((1, 2), (stats.Runs, stats.Queued));

        Crash(host);
        var restarted = StartHost(services);
        Assert.All(new[] { a, b, c }, r => Assert.True(View(restarted, r).Exists));
        Assert.Equal(a, ExpectTask("pre").RunId);
        _queue.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
    }

    [Theory]
    [InlineData(100)]
    [InlineData(2)]
    public async Task Runs_started_together_keep_their_own_id_source_and_frame_through_a_crash(int snapshotEvery)
    {
        // snapshotEvery 2: the queued runs come back from a snapshot; 100: from the journal's one event.
        var services = _services with { Tuning = new RunHostTuning { MaxActiveRuns = 1, SnapshotEvery = snapshotEvery } };
        var frames = RedisKeys.Frames(_project, TestServers.Unique("batch"));
        var runs = Enumerable.Range(0, 5).Select(i => $"{TestServers.Unique("g")}-{i}").ToList();
        var sources = new[] { string.Empty, string.Empty, "cam-2", string.Empty, "cam-4" };
        var batch = new StartRuns { HostId = _hostId };
        batch.Runs.Add(runs.Select((runId, i) => new StartRun
        {
            RunId = runId,
            Project = _project,
            FrameKey = frames,
            FrameOffset = (uint)(i * 10),
            FrameLength = (uint)(i + 1),
            SourceId = sources[i],
            AcceptedAtUnixMs = 7,
        }));
        var first = StartHost(services);
        first.Tell(batch, TestActor);
        Assert.All(ExpectMsg<RunsAccepted>().Results, r => Assert.Equal(StartOutcome.Accepted, r.Outcome));
        Assert.Equal(runs[0], ExpectTask("pre").RunId);

        Crash(first);
        var second = StartHost(services);
        for (var i = 0; i < runs.Count; i++)
        {
            var task = ExpectTask("pre");
            Assert.Equal(runs[i], task.RunId);
            var frame = Assert.Single(task.Inputs);
            Assert.Equal((frames, (uint)(i * 10), (uint)(i + 1)), (frame.Key, frame.Offset, frame.Length));
            second.Tell(Done(task), _queue);
            var branches = new[] { _queue.ExpectMsg<NodeTask>(TimeSpan.FromSeconds(10)), _queue.ExpectMsg<NodeTask>(TimeSpan.FromSeconds(10)) };
            Assert.Equal(["a", "b"], branches.Select(t => t.NodeId).Order());
            Assert.All(branches, t => second.Tell(Done(t), _queue));
            second.Tell(Done(ExpectTask("join")), _queue);
            var result = await AwaitResultAsync(runs[i]);
            Assert.Equal((sources[i], 7L), (result.SourceId, result.AcceptedAtUnixMs));
        }
    }

    [Fact]
    public async Task A_frame_string_shared_by_runs_started_together_is_deleted_only_after_the_last_of_them_through_a_crash()
    {
        var services = _services with { Tuning = new RunHostTuning { MaxActiveRuns = 1 } };
        var frames = RedisKeys.Frames(_project, TestServers.Unique("batch"));
        await _store.PutBlobAsync(frames, new byte[] { 1, 2, 3 });
        var runs = Enumerable.Range(0, 3).Select(i => $"{TestServers.Unique("s")}-{i}").ToList();
        var batch = new StartRuns { HostId = _hostId };
        batch.Runs.Add(runs.Select((runId, i) => new StartRun { RunId = runId, Project = _project, FrameKey = frames, FrameOffset = (uint)i, FrameLength = 1, AcceptedAtUnixMs = 3 }));
        var host = StartHost(services);
        host.Tell(batch, TestActor);
        Assert.All(ExpectMsg<RunsAccepted>().Results, r => Assert.Equal(StartOutcome.Accepted, r.Outcome));

        async Task FinishAsync(IActorRef runHost, NodeTask pre)
        {
            runHost.Tell(Done(pre), _queue);
            runHost.Tell(Done(_queue.ExpectMsg<NodeTask>(TimeSpan.FromSeconds(10))), _queue);
            runHost.Tell(Done(_queue.ExpectMsg<NodeTask>(TimeSpan.FromSeconds(10))), _queue);
            runHost.Tell(Done(ExpectTask("join")), _queue);
            await AwaitResultAsync(pre.RunId);
        }

        NodeTask NextRun(string runId)
        {
            var pre = ExpectTask("pre");
            Assert.Equal(runId, pre.RunId);
            return pre;
        }

        Task<bool> ExistsAsync() => _store.BlobExistsAsync(frames);

        await FinishAsync(host, NextRun(runs[0]));
        NextRun(runs[1]);
        Crash(host);
        var restarted = StartHost(services);
        await FinishAsync(restarted, NextRun(runs[1]));
        // A run is dispatched only after the one before it left the host, releasing its use of the string.
        var last = NextRun(runs[2]);
        Assert.True(await ExistsAsync(), "the frame string was deleted while a run still needs it");

        await FinishAsync(restarted, last);
        await AwaitAssertAsync(async () => Assert.False(await ExistsAsync(), "the frame string outlived its runs"), TimeSpan.FromSeconds(10));
    }

    [Fact]
    public void A_start_without_a_frame_slice_is_rejected_with_the_run_named()
    {
        var runId = TestServers.Unique("r");
        var host = StartHost();
        var start = Start(runId);
        start.FrameLength = 0;

        host.Tell(start, TestActor);

        var reply = ExpectMsg<RunAccepted>();
        Assert.Equal(StartOutcome.Rejected, reply.Outcome);
        Assert.Contains($"run {runId}: no frame", reply.Error, StringComparison.Ordinal);
        _queue.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
    }

    [Fact]
    public void A_run_whose_project_is_no_longer_deployed_is_not_taken_for_finished()
    {
        var runId = TestServers.Unique("r");
        var first = StartHost();
        first.Tell(Start(runId), TestActor);
        ExpectMsg<RunAccepted>();
        ExpectTask("pre");
        Crash(first);

        var second = StartHost(_services with { Catalog = new WorkflowCatalog() });
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
    public void Concurrent_duplicate_starts_persist_once_and_all_get_accepted()
    {
        var runId = TestServers.Unique("r");
        var host = StartHost();

        host.Tell(Start(runId), TestActor);
        host.Tell(Start(runId), TestActor);

        var replies = new[] { ExpectMsg<RunAccepted>(), ExpectMsg<RunAccepted>() };
        Assert.All(replies, r => Assert.Equal(StartOutcome.Accepted, r.Outcome));
        ExpectTask("pre");
        _queue.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
    }

    [Fact]
    public void A_batch_of_starts_is_answered_in_its_order_with_each_runs_outcome_and_is_durable()
    {
        var (running, fresh) = (TestServers.Unique("r"), TestServers.Unique("r"));
        var host = StartHost();
        host.Tell(Start(running), TestActor);
        Assert.Equal(StartOutcome.Accepted, ExpectMsg<RunAccepted>().Outcome);
        ExpectTask("pre");

        host.Tell(new StartRuns { HostId = _hostId, Runs = { Start(fresh), Start(running), new StartRun { RunId = "ghost-1", Project = "nope", FrameKey = "k" }, Start(fresh) } }, TestActor);

        var results = ExpectMsg<RunsAccepted>().Results;
        Assert.Equal([fresh, running, "ghost-1", fresh], results.Select(r => r.RunId));
        Assert.Equal([StartOutcome.Accepted, StartOutcome.AlreadyRunning, StartOutcome.Rejected, StartOutcome.Accepted], results.Select(r => r.Outcome));
        Assert.Equal($"unknown project 'nope' (deployed: {_project})", results[2].Error);
        Assert.Equal(fresh, ExpectTask("pre").RunId);
        _queue.ExpectNoMsg(TimeSpan.FromMilliseconds(300));

        Crash(host);
        var restarted = StartHost();
        Assert.True(View(restarted, fresh).Exists);
        restarted.Tell(new StartRuns { HostId = _hostId }, TestActor);
        Assert.Empty(ExpectMsg<RunsAccepted>().Results);
    }

    [Fact]
    public async Task A_node_that_fails_for_good_fails_the_run_and_writes_a_dead_letter()
    {
        var runId = TestServers.Unique("r");
        var host = StartHost();
        host.Tell(Start(runId), TestActor);
        ExpectMsg<RunAccepted>();

        var pre = ExpectTask("pre");
        host.Tell(new NodeTaskFailed { TaskId = pre.TaskId, RunId = runId, NodeId = "pre", Reason = "corrupt image: bad PNG header", Attempts = 2 }, _queue);

        var result = await AwaitResultAsync(runId);
        Assert.Equal(RunStatus.Failed, result.Status);
        Assert.Equal("node 'pre' failed after 2 attempt(s): corrupt image: bad PNG header", result.Error);
        var dead = Assert.Single(await _store.ReadDeadLettersAsync(_project));
        Assert.Equal(("run", runId, "pre"), (dead.Origin, dead.Reference, dead.NodeId));
        Assert.Contains("corrupt image", dead.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_cancelled_run_takes_its_tasks_back_ends_cancelled_through_a_crash_and_ignores_late_answers()
    {
        var runId = TestServers.Unique("r");
        await _store.PutBlobAsync(RedisKeys.Frames(_project, runId), new byte[] { 1, 2, 3 });
        var first = StartHost();
        first.Tell(Start(runId), TestActor);
        ExpectMsg<RunAccepted>();
        var pre = ExpectTask("pre");
        first.Tell(Deferred(pre, 4, 2), _queue);
        var fanOut = new[] { _queue.ExpectMsg<NodeTask>(), _queue.ExpectMsg<NodeTask>() };

        first.Tell(new CancelRun { RunId = runId, Project = _project, Reason = "cancelled by ops: bad camera" }, TestActor);

        var taken = _queue.ExpectMsg<CancelTasks>();
        Assert.Equal(fanOut.Select(t => t.TaskId).Order(StringComparer.Ordinal), taken.TaskIds.Order(StringComparer.Ordinal));
        var reply = ExpectMsg<CancelRunReply>();
        Assert.Equal((runId, CancelOutcome.Cancelled), (reply.RunId, reply.Outcome));
        // Durable before answered: a crash now still ends the run cancelled.
        Crash(first);
        var second = StartHost();
        var result = await AwaitResultAsync(runId);
        Assert.Equal(RunStatus.Cancelled, result.Status);
        Assert.Equal("cancelled by ops: bad camera", result.Error);
        Assert.Equal([NodeStatus.Completed, NodeStatus.Unspecified, NodeStatus.Unspecified, NodeStatus.Unspecified], result.Nodes.Select(n => n.Status));
        Assert.Empty(await _store.ReadDeadLettersAsync(_project));
        // pre's output, held by the host, went to the journal with the cancel and to Redis with the result.
        Assert.Equal([4, 2], await _store.GetBlobAsync(pre.OutputKey));

        // A task's answer that crossed the cancel changes nothing, and nothing is dispatched.
        second.Tell(Done(fanOut[0]), _queue);
        second.Tell(new CancelRun { RunId = runId, Project = _project, Reason = "again" }, TestActor);
        Assert.Equal(CancelOutcome.AlreadyFinished, ExpectMsg<CancelRunReply>().Outcome);
        _queue.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        Assert.Single(await _store.ReadResultsAsync(_project, 0, 10));
    }

    [Fact]
    public async Task Cancel_answers_for_a_finished_run_an_unknown_run_and_another_projects_run()
    {
        var runId = TestServers.Unique("r");
        var host = StartHost();
        host.Tell(Start(runId), TestActor);
        ExpectMsg<RunAccepted>();
        var pre = ExpectTask("pre");

        host.Tell(new CancelRun { RunId = runId, Project = "other", Reason = "x" }, TestActor);
        Assert.Equal(CancelOutcome.OtherProject, ExpectMsg<CancelRunReply>().Outcome);
        host.Tell(new CancelRun { RunId = "ghost", Project = _project, Reason = "x" }, TestActor);
        var unknown = ExpectMsg<CancelRunReply>();
        Assert.Equal(CancelOutcome.NotFound, unknown.Outcome);
        Assert.Contains("'ghost'", unknown.Detail, StringComparison.Ordinal);

        // The last node's answer is applied before the cancel arrives: the run's own result stands.
        host.Tell(Done(pre), _queue);
        foreach (var task in new[] { _queue.ExpectMsg<NodeTask>(), _queue.ExpectMsg<NodeTask>() })
        {
            host.Tell(Done(task), _queue);
        }

        host.Tell(Done(ExpectTask("join")), _queue);
        host.Tell(new CancelRun { RunId = runId, Project = _project, Reason = "late" }, TestActor);
        Assert.Equal(CancelOutcome.AlreadyFinished, ExpectMsg<CancelRunReply>().Outcome);
        Assert.Equal(RunStatus.Succeeded, (await AwaitResultAsync(runId)).Status);
    }

    [Fact]
    public async Task Queued_runs_are_listed_and_cancelled_by_source_without_ever_being_dispatched()
    {
        var host = StartHost(_services with { Tuning = new RunHostTuning { MaxActiveRuns = 1 } });
        var (active, queuedA, queuedB) = (TestServers.Unique("r"), TestServers.Unique("r"), TestServers.Unique("r"));
        host.Tell(Start(active), TestActor);
        host.Tell(Start(queuedA), TestActor);
        var b = Start(queuedB);
        b.SourceId = "cam-2";
        host.Tell(b, TestActor);
        for (var i = 0; i < 3; i++)
        {
            ExpectMsg<RunAccepted>();
        }

        ExpectTask("pre");
        host.Tell(new ListHostRuns { HostId = _hostId, Project = _project }, TestActor);
        var listed = ExpectMsg<HostRuns>().Runs;
        Assert.Equal(RunStage.Running, listed.Single(r => r.RunId == active).Stage);
        Assert.Equal([RunStage.Queued, RunStage.Queued], new[] { queuedA, queuedB }.Select(id => listed.Single(r => r.RunId == id).Stage));
        Assert.Equal(3, listed.Count);
        Assert.Equal(NodeStage.Dispatched, listed.Single(r => r.RunId == active).Nodes.Single(n => n.NodeId == "pre").Stage);
        Assert.All(listed.Single(r => r.RunId == queuedA).Nodes, n => Assert.Equal(NodeStage.Waiting, n.Stage));

        host.Tell(new CancelHostRuns { HostId = _hostId, Project = _project, SourceId = "cam-2", Reason = "camera removed" }, TestActor);
        var cancelled = Assert.Single(ExpectMsg<CancelRunsReply>().Runs);
        Assert.Equal((queuedB, CancelOutcome.Cancelled), (cancelled.RunId, cancelled.Outcome));
        Assert.Equal(RunStatus.Cancelled, (await AwaitResultAsync(queuedB)).Status);

        host.Tell(new CancelHostRuns { HostId = _hostId, Project = _project, Reason = "all" }, TestActor);
        Assert.Equal(new[] { active, queuedA }.Order(StringComparer.Ordinal), ExpectMsg<CancelRunsReply>().Runs.Select(r => r.RunId).Order(StringComparer.Ordinal));
        Assert.Equal(RunStatus.Cancelled, (await AwaitResultAsync(queuedA)).Status);
        Assert.Equal(RunStatus.Cancelled, (await AwaitResultAsync(active)).Status);
        Assert.Equal("pre", Assert.Single(_queue.ExpectMsg<CancelTasks>().TaskIds).Split('/')[^1]);
        _queue.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        host.Tell(new ListHostRuns { HostId = _hostId, Project = _project }, TestActor);
        Assert.Empty(ExpectMsg<HostRuns>().Runs);
    }

    [Fact]
    public async Task A_run_waiting_for_its_project_can_be_cancelled_and_stays_cancelled_through_a_crash()
    {
        var runId = TestServers.Unique("r");
        var first = StartHost();
        first.Tell(Start(runId), TestActor);
        ExpectMsg<RunAccepted>();
        ExpectTask("pre");
        Crash(first);

        var undeployed = _services with { Catalog = new WorkflowCatalog() };
        var second = StartHost(undeployed);
        second.Tell(new ListHostRuns { HostId = _hostId, Project = _project }, TestActor);
        Assert.Equal(RunStage.WaitingForProject, Assert.Single(ExpectMsg<HostRuns>().Runs).Stage);
        second.Tell(new CancelRun { RunId = runId, Project = _project, Reason = "project retired" }, TestActor);
        Assert.Equal(CancelOutcome.Cancelled, ExpectMsg<CancelRunReply>().Outcome);
        Crash(second);

        StartHost(undeployed);
        var result = await AwaitResultAsync(runId);
        Assert.Equal((RunStatus.Cancelled, "project retired"), (result.Status, result.Error));
    }

    [Fact]
    public async Task A_failed_runs_dead_letter_is_numbered_and_keeps_its_frame_and_a_redriven_run_that_fails_again_names_both_reasons()
    {
        var runId = TestServers.Unique("r");
        await _store.PutBlobAsync(RedisKeys.Frames(_project, runId), new byte[] { 7, 8, 9 });
        var host = StartHost();
        host.Tell(Start(runId), TestActor);
        ExpectMsg<RunAccepted>();
        var pre = ExpectTask("pre");
        host.Tell(new NodeTaskFailed { TaskId = pre.TaskId, RunId = runId, NodeId = "pre", Reason = "bad header", Attempts = 1 }, _queue);
        await AwaitResultAsync(runId);
        var dead = Assert.Single(await _store.ReadDeadLettersAsync(_project));
        Assert.True(dead.Id > 0);
        Assert.Equal(("cam", RedisKeys.DeadFrame(_project, runId)), (dead.SourceId, dead.FrameKey));
        Assert.Equal(new byte[] { 7, 8, 9 }, await _store.GetBlobAsync(dead.FrameKey));

        var redriven = Redrives.RunIdFor(runId, dead.Id);
        await _store.NoteRedrivenAsync(_project, redriven, dead);
        await _store.PutBlobAsync(RedisKeys.Frames(_project, redriven), new byte[] { 7, 8, 9 });
        host.Tell(Start(redriven), TestActor);
        ExpectMsg<RunAccepted>();
        var retried = ExpectTask("pre");
        host.Tell(new NodeTaskFailed { TaskId = retried.TaskId, RunId = redriven, NodeId = "pre", Reason = "still bad", Attempts = 1 }, _queue);

        var result = await AwaitResultAsync(redriven);
        Assert.Equal(runId, result.RedriveOf);
        await AwaitAssertAsync(async () => Assert.Equal(2, (await _store.ReadDeadLettersAsync(_project)).Count), TimeSpan.FromSeconds(10));
        var second = (await _store.ReadDeadLettersAsync(_project))[0];
        Assert.Equal((dead.Id + 1, runId), (second.Id, second.RedriveOf));
        Assert.Contains("still bad", second.Reason, StringComparison.Ordinal);
        Assert.Contains($"redriven from {runId}, which failed with: node 'pre' failed after 1 attempt(s): bad header", second.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void A_run_of_a_version_not_known_yet_waits_for_the_deployments_then_goes_on_on_its_own_version()
    {
        var runId = TestServers.Unique("r");
        var first = StartHost();
        first.Tell(Start(runId), TestActor);
        ExpectMsg<RunAccepted>();
        ExpectTask("pre");
        Crash(first);

        // Restarted where the project's current version is another one and the deployed versions are not known yet.
        _services.Catalog.TryGet(_project, out var started);
        var other = WorkflowLoader.Parse($"project: {_project}\nnodes:\n  - {{ id: only, processor: checksum, role: cpu, queue: q }}\n", "v2.yaml", NodeProcessorRegistry.WithBuiltIns().Names);
        var catalog = new WorkflowCatalog();
        catalog.Deploy(other);
        catalog.ExpectDeployments();
        var second = StartHost(_services with { Catalog = catalog });
        second.Tell(new ListHostRuns { HostId = _hostId, Project = _project }, TestActor);
        Assert.Equal(RunStage.WaitingForProject, Assert.Single(ExpectMsg<HostRuns>().Runs).Stage);
        _queue.ExpectNoMsg(TimeSpan.FromMilliseconds(300));

        catalog.Remember(started);
        catalog.DeploymentsArrived();
        second.Tell(CatalogChanged.Instance);

        Assert.Equal(("pre", runId), (ExpectTask("pre").NodeId, runId));
    }

    [Fact]
    public void A_start_for_an_unknown_project_is_rejected_with_the_deployed_ones_named()
    {
        var runId = TestServers.Unique("r");
        var host = StartHost();

        host.Tell(new StartRun { RunId = runId, Project = "nope", FrameKey = "k" }, TestActor);

        var reply = ExpectMsg<RunAccepted>();
        Assert.Equal(StartOutcome.Rejected, reply.Outcome);
        Assert.Equal($"unknown project 'nope' (deployed: {_project})", reply.Error);
        _queue.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
    }

    [Fact]
    public void Run_events_round_trip_through_the_protobuf_serializer()
    {
        var serialization = Sys.Serialization;
        var group = new RunsStarted { Common = new RunStarted { Project = "p", FrameKey = "h", WorkflowHash = "w" }, RunIds = { "a", "b" }, SourceIds = { "", "s" }, FrameOffsets = { 0, 4 }, FrameLengths = { 4, 2 } };
        var completed = new NodeCompleted { RunId = "r", Result = new NodeResult { NodeId = "n", Metrics = { ["score"] = 0.25 } }, Detections = { new Detection { Label = "crack", Score = 0.9f } } };
        ITspMessage[] events =
        [
            new RunStarted { RunId = "r", Project = "p", FrameKey = "k", WorkflowHash = "h" },
            completed,
            new NodeFailed { RunId = "r", NodeId = "n", Reason = "x", Attempts = 3 },
            new RunCompleted { RunId = "r", Status = RunStatus.Failed, CompletedAtUnixMs = 9 },
            new RunEventBatch { Events = { new RunEvent { RunStarted = new RunStarted { RunId = "r" } }, new RunEvent { NodeCompleted = completed }, new RunEvent { RunsStarted = group } } },
            new RunHostSnapshot
            {
                Runs = { new RunRecord { Started = new RunStarted { RunId = "r" }, Events = { new RunEvent { NodeCompleted = completed } } } },
                FinishedRunIds = { "q" },
                Queued = { group },
                FinishedRunKeys = { ulong.MaxValue, 7 },
                HighestOffsets = { ["t-0-"] = 12 },
            },
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

public sealed class WorkflowRunHostOnSqliteTests(ITestOutputHelper output)
    : WorkflowRunHostTests(JournalledSystem.Start(new TspOptions { SqlitePath = TestServers.TempSqlitePath() }), output);

public sealed class WorkflowRunHostOnPostgresTests(ITestOutputHelper output)
    : WorkflowRunHostTests(JournalledSystem.Start(new TspOptions { Postgres = TestServers.CreatePostgresDatabaseAsync().GetAwaiter().GetResult() }), output);
