using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Routing;
using Akka.Event;
using Akka.Routing;
using Tsp.Actors.Nodes;
using Tsp.Actors.Protocol;
using Tsp.Actors.Telemetry;

namespace Tsp.Actors.Dispatch;

/// <summary>
/// One named queue (e.g. cpu-short, gpu-model). Runs send it <see cref="NodeTask"/>s; it hands each
/// to a routee only while that routee has a free slot (credit-based, no blind prefetch: a slow routee
/// is never flooded), retries failures with exponential backoff and jitter, takes tasks back from a
/// routee that times out or dies, and answers the run with the final success or failure.
/// </summary>
/// <remarks>
/// A routee whose member becomes unreachable (no heartbeat within the failure detector's pause, 3 s by
/// default) gets no new task, and the tasks it holds run again elsewhere at once, without waiting for
/// the split brain resolver to down the member. It keeps their credits until it answers or dies: if it
/// was only paused, whichever answer comes first finishes the task and the other is dropped (node
/// outputs are keyed by run and node, so a task may safely run twice).
/// </remarks>
/// <remarks>
/// Routees are deployed by a <see cref="ClusterRouterPool"/> pinned to the queue's role, so every
/// member of that role (including ones that join later) gets them; each announces itself with
/// <see cref="WorkerReady"/>. The router is used for deployment only: dispatch goes to the routee
/// with the most free slots.
/// </remarks>
public sealed class NodeQueue : ReceiveActor, IWithTimers
{
    private readonly string _name;
    private readonly QueueOptions _options;
    private readonly bool _deployRoutees;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly FairLanes<Entry> _pending = new();
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly Dictionary<IActorRef, Worker> _workers = [];
    private long _dispatched;
    private long _retried;
    private long _failed;
    private long _requeued;
    private long _cancelled;
    private long _storeWaits;
    private bool _waiting;
    private long _lastWaited;
    private System.Diagnostics.Stopwatch? _storeWaitLogged;
    private volatile QueueStats? _published;
    private IDisposable[] _gauges = [];

    public NodeQueue(string name, QueueOptions options, bool deployRoutees)
    {
        _name = name;
        _options = options;
        _deployRoutees = deployRoutees;

        Receive<NodeTask>(Enqueue);
        Receive<WorkerReady>(AddWorker);
        Receive<WorkerDraining>(OnDraining);
        Receive<NodeTaskDone>(done => Finish(done.TaskId, done));
        Receive<NodeTaskFailed>(OnFailed);
        Receive<SweepDeadlines>(_ => OnSweepDeadlines());
        Receive<CancelTasks>(OnCancel);
        Receive<GetTaskPlacements>(get =>
        {
            var placements = new TaskPlacements();
            foreach (var taskId in get.TaskIds)
            {
                if (_entries.TryGetValue(taskId, out var entry) && entry.Worker is { } worker)
                {
                    placements.Workers[taskId] = worker.Name;
                }
            }

            Sender.Tell(placements);
        });
        Receive<RetryDue>(OnRetryDue);
        Receive<Terminated>(t => RemoveWorker(t.ActorRef, "terminated"));
        Receive<ClusterEvent.UnreachableMember>(m => OnUnreachable(m.Member.Address));
        Receive<ClusterEvent.ReachableMember>(m => OnReachable(m.Member.Address));
        Receive<GetQueueStats>(_ => Sender.Tell(Stats()));
        Receive<PublishGauges>(_ => _published = Stats());
        Receive<WaitingCalm>(_ => OnWaitingCalm());
    }

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(string name, QueueOptions options, bool deployRoutees = true) =>
        Akka.Actor.Props.Create(() => new NodeQueue(name, options, deployRoutees));

    protected override void PreStart()
    {
        if (((ExtendedActorSystem)Context.System).Provider is ClusterActorRefProvider)
        {
            Cluster.Get(Context.System).Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents, typeof(ClusterEvent.UnreachableMember), typeof(ClusterEvent.ReachableMember));
        }

        PublishGaugesEverySecond();
        if (_deployRoutees)
        {
            var pool = new ClusterRouterPool(
                new RoundRobinPool(0),
                new ClusterRouterPoolSettings(totalInstances: 10_000, maxInstancesPerNode: _options.RouteesPerMember, allowLocalRoutees: true, useRole: _options.Role));
            var dispatcher = _options.Role == "gpu" ? TspDispatchers.GpuNodes : TspDispatchers.CpuNodes;
            Context.ActorOf(pool.Props(NodeActor.Props(_name, _options.SlotsPerRoutee, Self).WithDispatcher(dispatcher)), "routees");
        }
    }

    /// <summary>The queue's gauges read a snapshot taken once a second on the actor's thread: an
    /// exporter's thread must not read the actor's state, and a scrape is never more frequent.</summary>
    private void PublishGaugesEverySecond()
    {
        _published = Stats();
        Timers.StartPeriodicTimer(PublishGauges.Instance, PublishGauges.Instance, TimeSpan.FromSeconds(1));
        _gauges =
        [
            Gauge(TspMetrics.QueueDepth, s => s.Pending),
            Gauge(TspMetrics.QueueInFlight, s => s.InFlight),
            Gauge(TspMetrics.QueueFreeCredits, s => s.FreeSlots),
            Gauge(TspMetrics.QueueRoutees, s => s.Workers),
        ];
    }

    private IDisposable Gauge(GaugeFamily family, Func<QueueStats, long> value) =>
        family.Observe(() => _published is { } stats
            ? [new(value(stats), new KeyValuePair<string, object?>("queue", stats.Queue), new KeyValuePair<string, object?>("role", stats.Role))]
            : []);

    private void Enqueue(NodeTask task)
    {
        if (_entries.TryGetValue(task.TaskId, out var existing))
        {
            // A run that recovered re-sends what it had in flight; keep the one copy, answer the new sender.
            existing.ReplyTo = Sender;
            return;
        }

        var entry = new Entry(task, Sender);
        _entries.Add(task.TaskId, entry);
        entry.Node = _pending.AddLast(entry.Task.Project, entry.Share, entry, entry.Task.Depth);
        Dispatch();
    }

    /// <summary>A routee announces its slots, and again whenever its share of its member's slots changes
    /// (another orchestrator's routees arrived there or left): a share may be 0.</summary>
    private void AddWorker(WorkerReady ready)
    {
        // Tasks sent before the ack reach the routee before it: its member may then lend what it gave up.
        Sender.Tell(new WorkerReadyAck { Slots = ready.Slots });
        if (_workers.TryGetValue(Sender, out var known))
        {
            known.Slots = Math.Max(0, ready.Slots);
            Dispatch();
            return;
        }

        _workers.Add(Sender, new Worker(Sender, Math.Max(0, ready.Slots), ready.Worker, served: !ready.NotServed));
        Context.Watch(Sender);
        if (ready.NotServed)
        {
            _log.Debug("queue {0}: routee {1} is on a member that does not serve the queue", _name, ready.Worker);
            return;
        }

        _log.Info("queue {0}: routee {1} ready with {2} slots ({3} routees)", _name, ready.Worker, ready.Slots, _workers.Values.Count(w => w.Served));
        if (_waiting)
        {
            Sender.Tell(new QueueWaiting { Waiting = true });
        }

        Dispatch();
    }

    /// <summary>Tells the routees at once when tasks wait for a slot, so that their members lend the
    /// queue more; that none wait only once none has for <see cref="WaitingCalm"/>, so that a queue that
    /// drains and fills with every task does not make its members move slots to and fro.</summary>
    private void SignalWaiting(bool waiting)
    {
        if (waiting)
        {
            // A saturated queue passes here on every task: a timestamp, no timer churn.
            _lastWaited = Environment.TickCount64;
            if (!_waiting)
            {
                _waiting = true;
                TellServedWorkers(new QueueWaiting { Waiting = true });
            }
        }
        else if (_waiting && !Timers.IsTimerActive(WaitingCalmKey))
        {
            Timers.StartSingleTimer(WaitingCalmKey, WaitingCalm.Instance, WaitingCalm.After);
        }
    }

    private void OnWaitingCalm()
    {
        if (!_waiting)
        {
            return;
        }

        // Tasks that still find no slot (long ones, nothing dispatched since) keep the queue waiting.
        var calmFor = TimeSpan.FromMilliseconds(Environment.TickCount64 - _lastWaited);
        var stuck = _pending.Count > 0 && _workers.Values.All(w => w.Free <= 0);
        if (calmFor < WaitingCalm.After || stuck)
        {
            Timers.StartSingleTimer(WaitingCalmKey, WaitingCalm.Instance, stuck ? WaitingCalm.After : WaitingCalm.After - calmFor);
            return;
        }

        _waiting = false;
        TellServedWorkers(new QueueWaiting { Waiting = false });
    }

    private void TellServedWorkers(object message)
    {
        foreach (var worker in _workers.Values.Where(w => w.Served))
        {
            worker.Ref.Tell(message, Self);
        }
    }

    /// <summary>A routee whose member shuts down: no more tasks for it. It keeps and finishes the
    /// ones it holds (their replies come as usual); the ack tells it none are still on the way.</summary>
    private void OnDraining(WorkerDraining draining)
    {
        if (_workers.TryGetValue(Sender, out var worker))
        {
            worker.Draining = true;
            _log.Info("queue {0}: routee {1} drains ({2} task(s) in hand)", _name, worker.Name, worker.Tasks.Count);
        }

        Sender.Tell(new WorkerDrainAck());
    }

    protected override void PostStop()
    {
        foreach (var gauge in _gauges)
        {
            gauge.Dispose();
        }

        if (((ExtendedActorSystem)Context.System).Provider is ClusterActorRefProvider)
        {
            Cluster.Get(Context.System).Unsubscribe(Self);
        }
    }

    /// <summary>The routees on <paramref name="address"/> take nothing new, and the tasks they run go back
    /// to the front of the queue without costing an attempt; each routee keeps those tasks' credits
    /// (it may still be running them) until it answers or terminates.</summary>
    private void OnUnreachable(Address address)
    {
        var taken = 0;
        foreach (var worker in _workers.Values.Where(w => w.Ref.Path.Address.Equals(address)))
        {
            worker.Unreachable = true;
            foreach (var taskId in worker.Tasks)
            {
                if (_entries.TryGetValue(taskId, out var entry) && entry.Worker == worker)
                {
                    ReleaseWorker(entry);
                    entry.Attempt--;
                    entry.Node = _pending.AddFirst(entry.Task.Project, entry.Share, entry, entry.Task.Depth);
                    _requeued++;
                    CountRetry(entry, "worker_unreachable");
                    taken++;
                }
            }
        }

        if (taken > 0)
        {
            _log.Warning("queue {0}: member {1} is unreachable; running its {2} task(s) elsewhere", _name, address, taken);
        }

        Dispatch();
    }

    private void OnReachable(Address address)
    {
        foreach (var worker in _workers.Values.Where(w => w.Ref.Path.Address.Equals(address)))
        {
            worker.Unreachable = false;
        }

        Dispatch();
    }

    private void Dispatch()
    {
        if (_pending.Count == 0)
        {
            SignalWaiting(false);
            return;
        }

        var slots = 0;
        foreach (var worker in _workers.Values)
        {
            slots += worker.Slots;
        }

        while (_pending.Next(slots) is { } next)
        {
            var entry = next.Node.Value;
            var best = PickWorker(entry.PreviousWorker);
            if (best is null)
            {
                SignalWaiting(true);
                return;
            }

            _pending.Take(next.Project, next.Node);
            entry.Node = null;
            entry.Attempt++;
            entry.Worker = best;
            entry.PreviousWorker = best.Ref;
            best.Tasks.Add(entry.Task.TaskId);
            // The first attempt takes the task itself (its sender keeps no reference); a later one a copy,
            // since an earlier attempt may still be reading the one it got.
            var task = entry.Attempt == 1 ? entry.Task : entry.Task.Clone();
            task.Attempt = entry.Attempt;
            best.Ref.Tell(task, Self);
            _dispatched++;
            entry.DeadlineAt = Environment.TickCount64 + Math.Max(1, task.TimeoutMs) + (long)_options.TimeoutGrace.TotalMilliseconds;
            if (!Timers.IsTimerActive(SweepDeadlines.Key))
            {
                Timers.StartPeriodicTimer(SweepDeadlines.Key, SweepDeadlines.Instance, SweepDeadlines.Every(_options.TimeoutGrace));
            }
        }

        // Whatever still waits is held back by its project's share, not by a lack of slots.
        SignalWaiting(false);
    }

    /// <summary>The routee with the most free slots; on a tie, not the one that had this task before,
    /// so a retry after a failure or timeout goes elsewhere when it can.</summary>
    private Worker? PickWorker(IActorRef? avoid)
    {
        Worker? best = null;
        foreach (var worker in _workers.Values)
        {
            if (worker.Free <= 0)
            {
                continue;
            }

            if (best is null || worker.Free > best.Free || (worker.Free == best.Free && best.Ref.Equals(avoid)))
            {
                best = worker;
            }
        }

        return best;
    }

    private void OnFailed(NodeTaskFailed failed)
    {
        if (!TryTakeBack(failed.TaskId, Sender, out var entry))
        {
            // A late answer (a cancelled task's, say) may have given a slot back.
            Dispatch();
            return;
        }

        if (failed.StoreUnavailable)
        {
            WaitForStore(entry, failed.Reason);
            return;
        }

        RetryOrFail(entry, failed.Reason, failed.Retryable);
    }

    /// <summary>Redis was down for the attempt: the attempt does not count, and the task runs again after a
    /// short backoff (capped at 1.6 s, so work resumes soon after Redis does) for as long as the outage
    /// lasts. Logged when it begins and every 10 s while tasks keep waiting, not once per task.</summary>
    private void WaitForStore(Entry entry, string reason)
    {
        entry.Attempt--;
        entry.StoreWaits++;
        _retried++;
        _storeWaits++;
        if (_storeWaitLogged is not { } logged || logged.Elapsed > TimeSpan.FromSeconds(10))
        {
            _log.Warning("queue {0}: {1} task(s) waited for Redis so far; latest: {2}", _name, _storeWaits, reason);
            _storeWaitLogged = System.Diagnostics.Stopwatch.StartNew();
        }

        Timers.StartSingleTimer(RetryKey(entry), new RetryDue(entry.Task.TaskId), Backoff(Math.Min(entry.StoreWaits, 5)));
        Dispatch();
    }

    private void Finish(string taskId, NodeTaskDone done)
    {
        if (!TryTakeBack(taskId, Sender, out var entry) && !TryTakeOverFromUnreachable(taskId, Sender, out entry))
        {
            Dispatch();
            return;
        }

        _entries.Remove(taskId);
        // A late answer from a routee that was unreachable names its own attempt; the queue may have counted fewer.
        done.Attempts = Math.Max(entry.Attempt, done.Attempts);
        entry.ReplyTo.Tell(done, Self);
        Dispatch();
    }

    /// <summary>The tasks' run was cancelled: a queued task is dropped, a running one is cancelled on its
    /// routee, which keeps the credit until it answers (its answer is then dropped as late). No answer
    /// goes to the run.</summary>
    private void OnCancel(CancelTasks cancel)
    {
        foreach (var taskId in cancel.TaskIds)
        {
            if (!_entries.Remove(taskId, out var entry))
            {
                continue;
            }

            Timers.Cancel(RetryKey(entry));
            if (entry.Node is { } queued)
            {
                _pending.Remove(entry.Task.Project, queued);
                entry.Node = null;
            }

            if (entry.Worker is { } worker)
            {
                // The routee keeps the credit until it answers; the project's share is free now.
                worker.Ref.Tell(new CancelTask { TaskId = taskId }, Self);
                ReleaseWorker(entry);
            }

            _cancelled++;
        }
    }

    /// <summary>Takes back every task whose routee has not answered within its timeout and the grace.
    /// One periodic sweep while tasks run, not a timer per task: at thousands of tasks a second the
    /// scheduler's registrations (cancelled ones stay in its wheel until their slot comes round)
    /// outlived the young generation and were most of what each collection promoted.</summary>
    private void OnSweepDeadlines()
    {
        var now = Environment.TickCount64;
        List<Entry>? late = null;
        var running = false;
        foreach (var entry in _entries.Values)
        {
            if (entry.Worker is null)
            {
                continue;
            }

            running = true;
            if (now >= entry.DeadlineAt)
            {
                (late ??= []).Add(entry);
            }
        }

        if (!running)
        {
            Timers.Cancel(SweepDeadlines.Key);
        }

        foreach (var entry in late ?? [])
        {
            var worker = entry.Worker!;
            _log.Warning("queue {0}: task {1} got no reply from {2} within its timeout; taking it back", _name, entry.Task.TaskId, worker.Name);
            worker.Tasks.Remove(entry.Task.TaskId);
            ReleaseWorker(entry);
            RetryOrFail(entry, $"no reply within {entry.Task.TimeoutMs} ms (+{_options.TimeoutGrace.TotalMilliseconds:0} ms grace) from {worker.Name}", retryable: true);
        }
    }

    private void OnRetryDue(RetryDue due)
    {
        if (_entries.TryGetValue(due.TaskId, out var entry) && entry.Worker is null && entry.Node is null)
        {
            entry.Node = _pending.AddFirst(entry.Task.Project, entry.Share, entry, entry.Task.Depth);
            Dispatch();
        }
    }

    /// <summary>The first answer wins: a routee that was unreachable, whose task was sent elsewhere, answers
    /// before the other does. The task is finished with its answer; the other routee keeps the credit
    /// until its own answer comes and is dropped.</summary>
    private bool TryTakeOverFromUnreachable(string taskId, IActorRef from, out Entry entry)
    {
        if (!_entries.TryGetValue(taskId, out entry!) || entry.Worker?.Ref.Equals(from) == true || !_workers.TryGetValue(from, out var late) || !late.Tasks.Remove(taskId))
        {
            return false;
        }

        if (entry.Node is { } queued)
        {
            _pending.Remove(entry.Task.Project, queued);
            entry.Node = null;
        }

        Timers.Cancel(RetryKey(entry));
        ReleaseWorker(entry);
        return true;
    }

    /// <summary>Removes the task from its routee (returning the credit) if <paramref name="from"/> holds it.</summary>
    private bool TryTakeBack(string taskId, IActorRef from, out Entry entry)
    {
        if (!_entries.TryGetValue(taskId, out entry!) || entry.Worker is null || !entry.Worker.Ref.Equals(from))
        {
            // A late reply for an attempt that was already taken back: its credit was returned then.
            if (_workers.TryGetValue(from, out var stale))
            {
                stale.Tasks.Remove(taskId);
            }

            return false;
        }

        entry.Worker.Tasks.Remove(taskId);
        ReleaseWorker(entry);
        return true;
    }

    private void RetryOrFail(Entry entry, string reason, bool retryable)
    {
        var maxAttempts = Math.Max(1, entry.Task.MaxAttempts);
        if (retryable && entry.Attempt < maxAttempts)
        {
            _retried++;
            CountRetry(entry, "failed");
            var delay = Backoff(entry.Attempt);
            _log.Info("queue {0}: task {1} attempt {2}/{3} failed ({4}); retrying in {5:0} ms", _name, entry.Task.TaskId, entry.Attempt, maxAttempts, reason, delay.TotalMilliseconds);
            Timers.StartSingleTimer(RetryKey(entry), new RetryDue(entry.Task.TaskId), delay);
        }
        else
        {
            _failed++;
            _entries.Remove(entry.Task.TaskId);
            entry.ReplyTo.Tell(
                new NodeTaskFailed
                {
                    TaskId = entry.Task.TaskId,
                    RunId = entry.Task.RunId,
                    NodeId = entry.Task.NodeId,
                    Reason = reason,
                    Retryable = false,
                    Attempts = entry.Attempt,
                },
                Self);
        }

        Dispatch();
    }

    private TimeSpan Backoff(int attempt)
    {
        var exponential = _options.RetryBaseDelay.TotalMilliseconds * Math.Pow(2, attempt - 1);
        var capped = Math.Min(exponential, _options.MaxRetryDelay.TotalMilliseconds);
        // "Equal jitter": half fixed, half random, so retries of many tasks spread out but never collapse to 0.
        return TimeSpan.FromMilliseconds((capped / 2) + (Random.Shared.NextDouble() * capped / 2));
    }

    private void RemoveWorker(IActorRef worker, string why)
    {
        if (!_workers.Remove(worker, out var removed))
        {
            return;
        }

        // Tasks already sent elsewhere (its member was unreachable) stay where they are.
        var held = removed.Tasks.Select(id => _entries.GetValueOrDefault(id)).Where(e => e?.Worker == removed).ToList();
        if (held.Count > 0 || CoordinatedShutdown.Get(Context.System).ShutdownReason is null)
        {
            _log.Warning("queue {0}: routee {1} {2}; re-queueing its {3} task(s)", _name, removed.Name, why, held.Count);
        }

        foreach (var entry in held.OfType<Entry>())
        {
            ReleaseWorker(entry);
            // Not the task's fault: the attempt it was on does not count.
            entry.Attempt--;
            _requeued++;
            CountRetry(entry, "worker_lost");
            entry.Node = _pending.AddFirst(entry.Task.Project, entry.Share, entry, entry.Task.Depth);
        }

        Dispatch();
    }

    private void CountRetry(Entry entry, string reason) =>
        TspMetrics.NodeRetries.Add(
            1,
            new KeyValuePair<string, object?>("project", entry.Task.Project),
            new KeyValuePair<string, object?>("node", entry.Task.NodeId),
            new KeyValuePair<string, object?>("queue", _name),
            new KeyValuePair<string, object?>("reason", reason));

    private QueueStats Stats()
    {
        var slots = _workers.Values.Sum(w => w.Slots);
        var free = _workers.Values.Sum(w => w.Free);
        return new QueueStats(_name, _options.Role, _pending.Count, _entries.Count - _pending.Count, _workers.Values.Count(w => w.Served), slots, free, _dispatched, _retried, _failed, _requeued, _workers.Values.Count(w => w.Draining), _cancelled);
    }

    private static string RetryKey(Entry entry) => entry.Task.TaskId;

    /// <summary>The task is no longer at its worker (it answered, was taken back or cancelled): its
    /// project's share of the queue counts one task less.</summary>
    private void ReleaseWorker(Entry entry)
    {
        if (entry.Worker is not null)
        {
            entry.Worker = null;
            _pending.Left(entry.Task.Project);
        }
    }

    private sealed class Entry(NodeTask task, IActorRef replyTo)
    {
        public NodeTask Task { get; } = task;

        public LaneShare Share { get; } = LaneShare.Of(task.Weight, task.Priority, task.MaxShare);

        public IActorRef ReplyTo { get; set; } = replyTo;

        public int Attempt { get; set; }

        public int StoreWaits { get; set; }

        /// <summary>When the routee running it is given up on (<see cref="Environment.TickCount64"/>).</summary>
        public long DeadlineAt { get; set; }

        public Worker? Worker { get; set; }

        public IActorRef? PreviousWorker { get; set; }

        public LinkedListNode<Entry>? Node { get; set; }
    }

    private sealed class Worker(IActorRef actor, int slots, string name, bool served)
    {
        public IActorRef Ref { get; } = actor;

        /// <summary>False for a routee on a member that does not serve the queue: it never gets a slot.</summary>
        public bool Served { get; } = served;

        public int Slots { get; set; } = slots;

        public string Name { get; } = name;

        public HashSet<string> Tasks { get; } = new(StringComparer.Ordinal);

        public bool Draining { get; set; }

        public bool Unreachable { get; set; }

        public int Free => Draining || Unreachable ? 0 : Math.Max(0, Slots - Tasks.Count);
    }

    private sealed record SweepDeadlines
    {
        public const string Key = "sweep-deadlines";
        public static readonly SweepDeadlines Instance = new();

        /// <summary>A quarter of the grace (at most 1 s): the grace absorbs how late the sweep finds a task.</summary>
        public static TimeSpan Every(TimeSpan grace) => TimeSpan.FromMilliseconds(Math.Clamp(grace.TotalMilliseconds / 4, 10, 1000));
    }

    private sealed record RetryDue(string TaskId);

    private const string WaitingCalmKey = "waiting-calm";

    private sealed record WaitingCalm
    {
        public static readonly TimeSpan After = TimeSpan.FromSeconds(1);
        public static readonly WaitingCalm Instance = new();
    }

    private sealed record PublishGauges
    {
        public static readonly PublishGauges Instance = new();
    }
}
