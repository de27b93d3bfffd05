using System.Diagnostics;
using System.Runtime.CompilerServices;
using Akka.Actor;
using Akka.DependencyInjection;
using Akka.Event;
using Microsoft.Extensions.DependencyInjection;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Actors.Telemetry;

namespace Tsp.Actors.Nodes;

/// <summary>
/// A node routee: deployed by its queue's cluster router pool onto a member of the queue's role,
/// it announces its share of its member's slots to the queue (again whenever the share changes) and
/// runs the tasks the queue sends, at most that many at once. Inputs come from Redis by key, the output goes back to Redis
/// (a short node's small one only with its reply, when its task allows: <see cref="NodeTask.DeferOutputUnderUs"/>), the reply to the queue.
/// Processors and the store are resolved on the member it runs on, so its Props carry only names.
/// </summary>
public sealed class NodeActor : ReceiveActor
{
    /// <summary>Outputs up to this size (scores, checksums, a few boxes) ride with the reply, and reach
    /// the node's children inside their tasks: a child then reads nothing back.
    /// Larger ones (images, tensors) are only read by key, so a task stays a small message.</summary>
    public const int CarriedOutputLimit = 4096;

    private readonly string _queueName;
    private readonly int _slots;
    private readonly IActorRef _queue;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly string _worker;
    private readonly List<IActorRef> _drainWaiters = [];

    // The tasks in hand by id, each with the source an operator's cancel fires (CancelTask). A task
    // ends on whichever thread its last await resumes on, so what it touches there is thread-safe.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, CancellationTokenSource> _cancels = new(StringComparer.Ordinal);
    private readonly IActorRef _self;
    private NodeProcessorRegistry _processors = null!;
    private RedisStore _store = null!;
    private NodeRoutees? _registry;
    private int _inHand;
    private int _finishedWhileDraining;
    private volatile bool _draining;
    private bool _drainAcked;

    public NodeActor(string queueName, int slots, IActorRef queue)
    {
        _queueName = queueName;
        _slots = slots;
        _queue = queue;
        _self = Self;
        _worker = $"{((ExtendedActorSystem)Context.System).Provider.DefaultAddress.HostPort()}/{Self.Path.Name}";
        // Every share is told to the queue, whose acknowledgement lets the member lend a slot given up.
        Receive<SlotShare>(share => _queue.Tell(new WorkerReady { Queue = _queueName, Slots = share.Slots, Worker = _worker, NotServed = share.Capacity == 0 }));
        Receive<WorkerReadyAck>(ack => _registry?.Acknowledged(Self, _queueName, ack.Slots));
        Receive<QueueWaiting>(waiting => _registry?.SetWaiting(Self, _queueName, waiting.Waiting));
        Receive<NodeTask>(task =>
        {
            Interlocked.Increment(ref _inHand);
            _registry?.CountTask(Self, _queueName, 1);
            var cancel = new CancellationTokenSource();
            _ = RunAndReplyAsync(task, Sender, _cancels.TryAdd(task.TaskId, cancel) ? cancel : null);
        });
        Receive<CancelTask>(cancel =>
        {
            if (_cancels.TryGetValue(cancel.TaskId, out var source))
            {
                source.Cancel();
            }
        });
        Receive<TaskEndedWhileDraining>(_ =>
        {
            _finishedWhileDraining++;
            ReportIfDrained();
        });
        Receive<DrainNode>(_ =>
        {
            _drainWaiters.Add(Sender);
            if (!_draining)
            {
                _draining = true;
                _queue.Tell(new WorkerDraining { Worker = _worker });
            }
        });
        Receive<WorkerDrainAck>(_ =>
        {
            _drainAcked = true;
            ReportIfDrained();
        });
    }

    private void ReportIfDrained()
    {
        if (!_drainAcked || Volatile.Read(ref _inHand) > 0)
        {
            return;
        }

        foreach (var waiter in _drainWaiters)
        {
            waiter.Tell(new NodeDrained(_worker, _finishedWhileDraining));
        }

        _drainWaiters.Clear();
    }

    public static Props Props(string queueName, int slots, IActorRef queue) =>
        Akka.Actor.Props.Create(() => new NodeActor(queueName, slots, queue));

    protected override void PreStart()
    {
        var services = DependencyResolver.For(Context.System).Resolver;
        try
        {
            _processors = services.GetService<NodeProcessorRegistry>();
            _store = services.GetService<RedisStore>();
            _registry = services.GetService<NodeRoutees>();
        }
        catch (ObjectDisposedException)
        {
            // Redeployed by its pool while the host shuts down: nothing left to serve.
            Context.Stop(Self);
            return;
        }

        // Its share of this member's slots for the queue comes back as a SlotShare, which it announces.
        _registry.Add(Self, _queueName, _queue, _slots);
    }

    protected override void PostStop() => _registry?.Remove(Self, _queueName);

    /// <summary>Runs a task and answers its queue from wherever the task ends, not through the actor's
    /// mailbox: a message less per task. Only a drain needs the actor to hear of it.</summary>
    private async Task RunAndReplyAsync(NodeTask task, IActorRef replyTo, CancellationTokenSource? cancel)
    {
        IRunMessage reply;
        try
        {
            reply = await RunAsync(task, cancel?.Token ?? CancellationToken.None);
        }
        catch (Exception e)
        {
            reply = Failed(task, $"{e.GetType().Name}: {e.Message}", retryable: true);
        }

        if (cancel is not null)
        {
            // Not disposed: a cancel may be firing it on the actor's thread; it holds no timer or handle.
            _cancels.TryRemove(new KeyValuePair<string, CancellationTokenSource>(task.TaskId, cancel));
        }

        // The member's ledger frees the slot before the queue hears of it and sends the next task.
        _registry?.CountTask(_self, _queueName, -1);
        Interlocked.Decrement(ref _inHand);
        replyTo.Tell(reply, _self);
        if (_draining)
        {
            _self.Tell(TaskEndedWhileDraining.Instance);
        }
    }

    // Pooled builders: a task in flight across a young collection has its state box promoted, and a
    // box that kept its reply after the task ended would keep the reply (and what it references)
    // alive through young collections until an older one; a pooled box forgets its result when reused.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<IRunMessage> RunAsync(NodeTask task, CancellationToken cancelled)
    {
        var started = Stopwatch.GetTimestamp();
        using var span = TspTracing.StartChild($"tsp.node {task.NodeId}", task.TraceParent, task.RunId, task.Project, ActivityKind.Consumer);
        if (span is not null)
        {
            // Current for the redis and model spans under it; an async method does not leak it to the actor.
            Activity.Current = span;
            span.SetTag("tsp.node", task.NodeId);
            span.SetTag("tsp.processor", task.Processor);
            span.SetTag("tsp.queue", _queueName);
            span.SetTag("tsp.attempt", task.Attempt);
            span.SetTag("tsp.worker", _worker);
        }

        var reply = await ExecuteAsync(task, started, cancelled);
        if (reply is NodeTaskFailed failed)
        {
            span?.SetStatus(ActivityStatusCode.Error, failed.Reason);
        }

        TspMetrics.NodeDuration.Record(
            Stopwatch.GetElapsedTime(started).TotalSeconds,
            new KeyValuePair<string, object?>("project", task.Project),
            new KeyValuePair<string, object?>("node", task.NodeId),
            new KeyValuePair<string, object?>("queue", _queueName),
            new KeyValuePair<string, object?>("status", reply is NodeTaskDone ? "ok" : "failed"));
        return reply;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<IRunMessage> ExecuteAsync(NodeTask task, long started, CancellationToken cancelled)
    {
        if (!_processors.TryGet(task.Processor, out var processor))
        {
            return Failed(task, $"processor '{task.Processor}' is not available on {_worker}", retryable: true);
        }

        NodeInputReads? reads = null;
        Task? outlives = null;
        try
        {
            using (TspTracing.Source.StartActivity("tsp.redis read inputs", ActivityKind.Client))
            {
                reads = await _store.ReadInputsAsync(task.Inputs);
            }

            var inputs = new NodeBlob[task.Inputs.Count];
            for (var i = 0; i < inputs.Length; i++)
            {
                if (reads.Blobs[i] is not { } data)
                {
                    var input = task.Inputs[i];
                    var where = input.Length > 0 ? $"{input.Key} bytes {input.Offset}..{input.Offset + input.Length - 1}" : input.Key;
                    return Failed(task, $"input '{task.Inputs[i].NodeId}' ({where}) is missing from Redis: expired or never written", retryable: false);
                }

                inputs[i] = new NodeBlob(task.Inputs[i].NodeId, task.Inputs[i].Key, data);
            }

            // Fires on the task's timeout, or when an operator cancels its run.
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancelled);
            timeout.CancelAfter(TimeSpan.FromMilliseconds(Math.Max(1, task.TimeoutMs)));
            var invocation = new NodeInvocation(task.Project, task.RunId, task.NodeId, task.Attempt, task.Parameters, inputs);
            NodeOutput output;
            var processing = processor.ProcessAsync(invocation, timeout.Token);
            try
            {
                // WaitAsync: a processor that ignores its token (a hung native call, a lost await) still
                // frees the slot and answers the queue when the timeout comes.
                output = await processing.WaitAsync(timeout.Token);
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested)
            {
                // The processor may still be reading its inputs: they go back to the pool when it ends.
                outlives = processing;
                if (cancelled.IsCancellationRequested)
                {
                    ObserveLater(processing);
                    return Failed(task, "cancelled: its run was cancelled", retryable: false);
                }

                if (!processing.IsCompleted)
                {
                    return Abandoned(task, processing);
                }

                return Failed(task, $"timed out after {task.TimeoutMs} ms", retryable: true);
            }

            var deferred = output.Data.Length <= CarriedOutputLimit && Stopwatch.GetElapsedTime(started).TotalMicroseconds < task.DeferOutputUnderUs;
            if (!deferred)
            {
                using (TspTracing.Source.StartActivity("tsp.redis write output", ActivityKind.Client))
                {
                    await _store.PutBlobAsync(task.OutputKey, output.Data);
                }
            }

            var done = new NodeTaskDone
            {
                TaskId = task.TaskId,
                RunId = task.RunId,
                NodeId = task.NodeId,
                OutputKey = task.OutputKey,
                DurationUs = (long)Stopwatch.GetElapsedTime(started).TotalMicroseconds,
                Worker = _worker,
                FinishedAtUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
                ModelName = output.ModelName,
                ModelVersion = output.ModelVersion,
                Attempts = task.Attempt,
                OutputDeferred = deferred,
            };
            done.Metrics.Add(output.Metrics);
            done.Labels.Add(output.Labels);
            done.Detections.Add(output.Detections);
            if (output.Data.Length <= CarriedOutputLimit)
            {
                done.Output = Google.Protobuf.ByteString.CopyFrom(output.Data.Span);
            }

            return done;
        }
        catch (NodeInputException e)
        {
            return Failed(task, e.Message, retryable: false);
        }
        catch (Exception e) when (RedisStore.IsUnavailable(e))
        {
            var failed = Failed(task, $"Redis unavailable on {_worker}: {e.Message}", retryable: true);
            failed.StoreUnavailable = true;
            return failed;
        }
        catch (Exception e)
        {
            _log.Warning(e, "node {0} of run {1} (project {2}, trace {3}) failed on attempt {4}", task.NodeId, task.RunId, task.Project, TspTracing.RunTraceId(task.RunId), task.Attempt);
            return Failed(task, $"{e.GetType().Name}: {e.Message}", retryable: true);
        }
        finally
        {
            if (reads is not null)
            {
                if (outlives is { IsCompleted: false })
                {
                    _ = outlives.ContinueWith(static (_, state) => ((NodeInputReads)state!).Dispose(), reads, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
                }
                else
                {
                    reads.Dispose();
                }
            }
        }
    }

    /// <summary>The processor did not stop when its timeout cancelled it: the call is left to finish
    /// on its own (its result is dropped) and the slot is given back, so one hang costs a thread, not
    /// the routee's capacity or a worker's drain.</summary>
    private NodeTaskFailed Abandoned(NodeTask task, Task<NodeOutput> processing)
    {
        _log.Warning("node {0} of run {1} (project {2}, trace {3}) ignored its cancellation after {4} ms; abandoned it on {5}", task.NodeId, task.RunId, task.Project, TspTracing.RunTraceId(task.RunId), task.TimeoutMs, $"{_worker} (processor {task.Processor})");
        ObserveLater(processing);
        return Failed(task, $"timed out after {task.TimeoutMs} ms; processor '{task.Processor}' ignored the cancellation and was abandoned", retryable: true);
    }

    /// <summary>A call left to finish on its own: its failure, if it fails, is observed, never thrown.</summary>
    private static void ObserveLater(Task processing) =>
        processing.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);

    private sealed class TaskEndedWhileDraining
    {
        public static readonly TaskEndedWhileDraining Instance = new();
    }

    private NodeTaskFailed Failed(NodeTask task, string reason, bool retryable) => new()
    {
        TaskId = task.TaskId,
        RunId = task.RunId,
        NodeId = task.NodeId,
        Reason = reason,
        Retryable = retryable,
        Worker = _worker,
        Attempts = task.Attempt,
    };
}
