using Akka.Actor;
using Akka.TestKit;
using Akka.TestKit.Xunit2;
using Tsp.Actors.Dispatch;
using Tsp.Actors.Protocol;
using Tsp.Tests.Shared;
using Xunit.Abstractions;

namespace Tsp.Actors.Tests.Dispatch;

/// <summary>The queue's dispatch rules, with test probes standing in for routees.</summary>
public sealed class NodeQueueTests(ITestOutputHelper output) : TestKit(TestTiming.Config, output: output)
{
    private static readonly QueueOptions Fast = new()
    {
        Role = "cpu",
        RetryBaseDelay = TimeSpan.FromMilliseconds(20),
        MaxRetryDelay = TimeSpan.FromMilliseconds(100),
        TimeoutGrace = TimeSpan.FromMilliseconds(200),
    };

    private IActorRef Queue(QueueOptions? options = null) =>
        Sys.ActorOf(NodeQueue.Props("q", options ?? Fast, deployRoutees: false));

    private TestProbe Worker(IActorRef queue, int slots, string name)
    {
        var worker = CreateTestProbe(name);
        // The slot-lending messages are a member's business (SlotLedgerTests, and the test of them below).
        worker.IgnoreMessages(m => m is WorkerReadyAck or QueueWaiting);
        queue.Tell(new WorkerReady { Queue = "q", Slots = slots, Worker = name }, worker);
        return worker;
    }

    private static NodeTask Task(string id, int maxAttempts = 3, long timeoutMs = 10_000, string project = "p", float maxShare = 0) => new()
    {
        TaskId = id,
        RunId = "run-" + id,
        NodeId = "n",
        Project = project,
        MaxAttempts = maxAttempts,
        TimeoutMs = timeoutMs,
        MaxShare = maxShare,
    };

    private static NodeTaskDone DoneFor(NodeTask task) => new() { TaskId = task.TaskId, RunId = task.RunId, NodeId = task.NodeId };

    private QueueStats Stats(IActorRef queue)
    {
        queue.Tell(GetQueueStats.Instance, TestActor);
        return ExpectMsg<QueueStats>();
    }

    [Fact]
    public void A_routee_never_holds_more_tasks_than_its_slots()
    {
        var queue = Queue();
        var worker = Worker(queue, slots: 2, "w1");
        for (var i = 0; i < 5; i++)
        {
            queue.Tell(Task($"t{i}"), TestActor);
        }

        var first = worker.ExpectMsg<NodeTask>();
        var second = worker.ExpectMsg<NodeTask>();
        worker.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        Assert.Equal(new QueueStats("q", "cpu", Pending: 3, InFlight: 2, Workers: 1, Slots: 2, FreeSlots: 0, Dispatched: 2, Retried: 0, Failed: 0), Stats(queue));

        queue.Tell(DoneFor(first), worker);
        ExpectMsg<NodeTaskDone>(d => d.TaskId == first.TaskId && d.Attempts == 1);
        var third = worker.ExpectMsg<NodeTask>();
        Assert.Equal("t2", third.TaskId);
        worker.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
        Assert.NotEqual(second.TaskId, third.TaskId);
    }

    [Fact]
    public void The_queue_acknowledges_each_share_tells_its_routees_when_tasks_wait_and_counts_no_unserved_routee()
    {
        var queue = Queue();
        var unserved = CreateTestProbe("unserved");
        queue.Tell(new WorkerReady { Queue = "q", Slots = 0, Worker = "unserved", NotServed = true }, unserved);
        unserved.ExpectMsg<WorkerReadyAck>(a => a.Slots == 0);
        var worker = CreateTestProbe("w1");
        queue.Tell(new WorkerReady { Queue = "q", Slots = 1, Worker = "w1" }, worker);
        worker.ExpectMsg<WorkerReadyAck>(a => a.Slots == 1);
        Assert.Equal(1, Stats(queue).Workers);

        queue.Tell(Task("t0"), TestActor);
        var first = worker.ExpectMsg<NodeTask>();
        queue.Tell(Task("t1"), TestActor);
        worker.ExpectMsg<QueueWaiting>(w => w.Waiting);

        // The member lends the routee a second slot: the queue acknowledges it, after the task it sent.
        queue.Tell(new WorkerReady { Queue = "q", Slots = 2, Worker = "w1" }, worker);
        worker.ExpectMsg<WorkerReadyAck>(a => a.Slots == 2);
        Assert.Equal("t1", worker.ExpectMsg<NodeTask>().TaskId);
        queue.Tell(DoneFor(first), worker);
        ExpectMsg<NodeTaskDone>();
        worker.ExpectMsg<QueueWaiting>(w => !w.Waiting, TimeSpan.FromSeconds(10));
        unserved.ExpectNoMsg(TimeSpan.FromMilliseconds(100));
    }

    [Fact]
    public void A_cancelled_runs_queued_task_is_dropped_and_its_running_task_cancelled_on_the_routee_which_keeps_the_slot_until_it_answers()
    {
        var queue = Queue();
        var worker = Worker(queue, slots: 1, "w1");
        queue.Tell(Task("running"), TestActor);
        queue.Tell(Task("queued"), TestActor);
        queue.Tell(Task("other"), TestActor);
        var running = worker.ExpectMsg<NodeTask>();
        Assert.Equal("running", running.TaskId);

        queue.Tell(new CancelTasks { TaskIds = { "running", "queued" } }, TestActor);

        Assert.Equal("running", worker.ExpectMsg<CancelTask>().TaskId);
        // The routee still runs it (its token fired): no new task until it answers.
        worker.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        Assert.Equal(1, Stats(queue).Pending);
        queue.Tell(new NodeTaskFailed { TaskId = "running", RunId = running.RunId, NodeId = "n", Reason = "cancelled: its run was cancelled", Attempts = 1 }, worker);
        Assert.Equal("other", worker.ExpectMsg<NodeTask>().TaskId);
        // No answer goes to the run for the cancelled tasks, and the cancelled one is not retried.
        ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        var stats = Stats(queue);
        Assert.Equal((0, 1, 2L, 0L, 0L), (stats.Pending, stats.InFlight, stats.Cancelled, stats.Retried, stats.Failed));
    }

    [Fact]
    public void A_project_behind_anothers_backlog_gets_the_next_turn_not_the_end_of_the_line()
    {
        var queue = Queue();
        var worker = Worker(queue, slots: 1, "w1");
        for (var i = 0; i < 20; i++)
        {
            queue.Tell(Task($"a{i}", project: "backlog"), TestActor);
        }

        queue.Tell(Task("live", project: "live"), TestActor);
        var order = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            var task = worker.ExpectMsg<NodeTask>();
            order.Add(task.TaskId);
            queue.Tell(DoneFor(task), worker);
            ExpectMsg<NodeTaskDone>();
        }

        Assert.Contains("live", order);
    }

    [Fact]
    public void A_run_under_ways_next_node_goes_ahead_of_newer_runs_first_nodes()
    {
        var queue = Queue();
        var worker = Worker(queue, slots: 1, "w1");
        queue.Tell(Task("run1-pre"), TestActor);
        var busy = worker.ExpectMsg<NodeTask>();
        for (var i = 2; i <= 4; i++)
        {
            queue.Tell(Task($"run{i}-pre"), TestActor);
        }

        // run0's first node ran earlier; its second arrives behind three newer runs' first nodes.
        var next = Task("run0-model");
        next.Depth = 1;
        queue.Tell(next, TestActor);
        queue.Tell(DoneFor(busy), worker);
        ExpectMsg<NodeTaskDone>();
        var order = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            var task = worker.ExpectMsg<NodeTask>();
            order.Add(task.TaskId);
            queue.Tell(DoneFor(task), worker);
            ExpectMsg<NodeTaskDone>();
        }

        Assert.Equal(["run0-model", "run2-pre", "run3-pre", "run4-pre"], order);
    }

    [Fact]
    public void A_project_never_holds_more_than_its_maximum_share_of_the_slots()
    {
        var queue = Queue();
        var worker = Worker(queue, slots: 4, "w1");
        for (var i = 0; i < 6; i++)
        {
            queue.Tell(Task($"c{i}", project: "capped", maxShare: 0.5f), TestActor);
        }

        var first = worker.ExpectMsg<NodeTask>();
        worker.ExpectMsg<NodeTask>();
        worker.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        Assert.Equal((4, 2), (Stats(queue).Pending, Stats(queue).InFlight));

        queue.Tell(DoneFor(first), worker);
        ExpectMsg<NodeTaskDone>();
        Assert.Equal("c2", worker.ExpectMsg<NodeTask>().TaskId);
        worker.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
    }

    [Fact]
    public void Work_goes_to_the_routee_with_the_most_free_slots()
    {
        var queue = Queue();
        var busy = Worker(queue, slots: 1, "busy");
        queue.Tell(Task("a"), TestActor);
        busy.ExpectMsg<NodeTask>();
        var idle = Worker(queue, slots: 3, "idle");

        queue.Tell(Task("b"), TestActor);
        queue.Tell(Task("c"), TestActor);

        Assert.Equal("b", idle.ExpectMsg<NodeTask>().TaskId);
        Assert.Equal("c", idle.ExpectMsg<NodeTask>().TaskId);
        busy.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
    }

    [Fact]
    public void Tasks_wait_until_a_routee_arrives()
    {
        var queue = Queue();
        queue.Tell(Task("a"), TestActor);
        Assert.Equal(1, Stats(queue).Pending);

        var worker = Worker(queue, slots: 1, "late");

        Assert.Equal("a", worker.ExpectMsg<NodeTask>().TaskId);
    }

    [Fact]
    public void A_retryable_failure_is_retried_with_the_next_attempt_number()
    {
        var queue = Queue();
        var worker = Worker(queue, slots: 1, "w");
        queue.Tell(Task("a"), TestActor);

        var attempt1 = worker.ExpectMsg<NodeTask>();
        queue.Tell(new NodeTaskFailed { TaskId = "a", Reason = "flaky", Retryable = true }, worker);
        var attempt2 = worker.ExpectMsg<NodeTask>(TimeSpan.FromSeconds(5));
        queue.Tell(DoneFor(attempt2), worker);

        Assert.Equal(1, attempt1.Attempt);
        Assert.Equal(2, attempt2.Attempt);
        ExpectMsg<NodeTaskDone>(d => d.Attempts == 2);
        Assert.Equal(1, Stats(queue).Retried);
    }

    [Fact]
    public void After_max_attempts_the_run_gets_the_failure_with_the_last_reason()
    {
        var queue = Queue();
        var worker = Worker(queue, slots: 1, "w");
        queue.Tell(Task("a", maxAttempts: 3), TestActor);

        for (var attempt = 1; attempt <= 3; attempt++)
        {
            var task = worker.ExpectMsg<NodeTask>(TimeSpan.FromSeconds(5));
            Assert.Equal(attempt, task.Attempt);
            queue.Tell(new NodeTaskFailed { TaskId = "a", Reason = $"error {attempt}", Retryable = true }, worker);
        }

        var failed = ExpectMsg<NodeTaskFailed>(TimeSpan.FromSeconds(5));
        Assert.Equal("error 3", failed.Reason);
        Assert.Equal(3, failed.Attempts);
        Assert.False(failed.Retryable);
        worker.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
    }

    [Fact]
    public void A_non_retryable_failure_fails_at_once()
    {
        var queue = Queue();
        var worker = Worker(queue, slots: 1, "w");
        queue.Tell(Task("a", maxAttempts: 5), TestActor);
        worker.ExpectMsg<NodeTask>();

        queue.Tell(new NodeTaskFailed { TaskId = "a", Reason = "corrupt image", Retryable = false }, worker);

        var failed = ExpectMsg<NodeTaskFailed>();
        Assert.Equal("corrupt image", failed.Reason);
        Assert.Equal(1, failed.Attempts);
        worker.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
    }

    [Fact]
    public void A_task_without_reply_is_taken_back_after_its_timeout_and_retried_elsewhere()
    {
        var queue = Queue();
        var silent = Worker(queue, slots: 1, "silent");
        queue.Tell(Task("a", timeoutMs: 100), TestActor);
        silent.ExpectMsg<NodeTask>();
        var healthy = Worker(queue, slots: 1, "healthy");

        var retry = healthy.ExpectMsg<NodeTask>(TimeSpan.FromSeconds(5));
        Assert.Equal(2, retry.Attempt);
        queue.Tell(DoneFor(retry), healthy);
        ExpectMsg<NodeTaskDone>();

        // The silent routee's late answer is ignored, and its credit was already returned.
        queue.Tell(DoneFor(retry), silent);
        ExpectNoMsg(TimeSpan.FromMilliseconds(200));
        Assert.Equal(2, Stats(queue).FreeSlots);
    }

    [Fact]
    public void A_timed_out_task_fails_with_a_reason_once_attempts_are_spent()
    {
        var queue = Queue();
        var silent = Worker(queue, slots: 1, "silent");
        queue.Tell(Task("a", maxAttempts: 1, timeoutMs: 50), TestActor);
        silent.ExpectMsg<NodeTask>();

        var failed = ExpectMsg<NodeTaskFailed>(TimeSpan.FromSeconds(5));

        Assert.Contains("no reply within 50 ms", failed.Reason, StringComparison.Ordinal);
        Assert.Contains("silent", failed.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void The_tasks_of_a_routee_that_dies_go_to_another_without_costing_an_attempt()
    {
        var queue = Queue();
        var doomed = Worker(queue, slots: 2, "doomed");
        queue.Tell(Task("a"), TestActor);
        queue.Tell(Task("b"), TestActor);
        doomed.ExpectMsg<NodeTask>();
        doomed.ExpectMsg<NodeTask>();
        var survivor = Worker(queue, slots: 2, "survivor");

        Sys.Stop(doomed.Ref);

        var moved = new[] { survivor.ExpectMsg<NodeTask>(TimeSpan.FromSeconds(5)), survivor.ExpectMsg<NodeTask>(TimeSpan.FromSeconds(5)) };
        Assert.Equal(["a", "b"], moved.Select(t => t.TaskId).Order());
        Assert.All(moved, t => Assert.Equal(1, t.Attempt));
        AwaitAssert(() => Assert.Equal(1, Stats(queue).Workers));
    }

    [Fact]
    public void A_task_sent_again_while_queued_is_kept_once_and_answered_to_the_latest_sender()
    {
        var queue = Queue();
        var firstRun = CreateTestProbe();
        var recoveredRun = CreateTestProbe();
        queue.Tell(Task("a"), firstRun);
        queue.Tell(Task("a"), recoveredRun);
        var worker = Worker(queue, slots: 4, "w");

        var task = worker.ExpectMsg<NodeTask>();
        worker.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
        queue.Tell(DoneFor(task), worker);

        recoveredRun.ExpectMsg<NodeTaskDone>();
        firstRun.ExpectNoMsg(TimeSpan.FromMilliseconds(100));
    }
}
