using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.Hashing;
using System.Text;

namespace Tsp.Actors.Telemetry;

/// <summary>
/// One trace per run across every process that touches it. A run's trace id is derived from its run
/// id (<see cref="RunTraceId"/>), so ingest, the run host, the workers, a run recovered elsewhere and
/// a redelivered Kafka record all land in the same trace without carrying anything; the node task
/// carries its run span's context (<c>NodeTask.trace_parent</c>, W3C) so node spans nest under it.
/// Every span costs nothing while no listener (an exporter) is attached.
/// </summary>
public static class TspTracing
{
    public const string SourceName = "Tsp";

    public static readonly ActivitySource Source = new(SourceName);

    /// <summary>Whether anything listens: only then are run ids hashed and spans made.</summary>
    public static bool Enabled => Source.HasListeners();

    /// <summary>XxHash128 of a run id's UTF-8, the same on every process: the run's trace id
    /// (<see cref="RunTraceId"/>), and how a run host remembers a finished run.</summary>
    public static UInt128 RunHash(string runId)
    {
        // Run ids are at most 200 characters (at most 603 UTF-8 bytes), so they hash from the stack;
        // a longer string, which no valid id is, borrows a pooled buffer.
        var length = Encoding.UTF8.GetMaxByteCount(runId.Length);
        byte[]? rented = null;
        var buffer = runId.Length <= 256 ? stackalloc byte[length] : (rented = ArrayPool<byte>.Shared.Rent(length));
        try
        {
            return XxHash128.HashToUInt128(buffer[..Encoding.UTF8.GetBytes(runId, buffer)]);
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    /// <summary>The trace id of a run: <see cref="RunHash"/> of its id.</summary>
    public static ActivityTraceId RunTraceId(string runId)
    {
        Span<byte> hash = stackalloc byte[16];
        BinaryPrimitives.WriteUInt128BigEndian(hash, RunHash(runId));
        return ActivityTraceId.CreateFromBytes(hash);
    }

    /// <summary>A span of the run's trace with no parent span (ingest, a run host's run span).</summary>
    /// <param name="start">When it began, for a span recorded after the fact; null: now.</param>
    /// <remarks>Leaves <see cref="Activity.Current"/> as it was: an actor's thread runs other actors next.</remarks>
    public static Activity? StartRunSpan(string name, string runId, string project, DateTimeOffset? start = null)
    {
        if (!Enabled)
        {
            return null;
        }

        var context = new ActivityContext(RunTraceId(runId), default, ActivityTraceFlags.Recorded);
        return Detached(() => Source.StartActivity(name, ActivityKind.Internal, context, Tags(runId, project), startTime: start ?? default));
    }

    /// <summary>A child of the span whose W3C context is <paramref name="traceParent"/>; without one, a
    /// span of the run's trace with no parent.</summary>
    public static Activity? StartChild(string name, string? traceParent, string runId, string project, ActivityKind kind = ActivityKind.Internal)
    {
        if (!Enabled)
        {
            return null;
        }

        var context = !string.IsNullOrEmpty(traceParent) && ActivityContext.TryParse(traceParent, null, out var parsed)
            ? parsed
            : new ActivityContext(RunTraceId(runId), default, ActivityTraceFlags.Recorded);
        return Detached(() => Source.StartActivity(name, kind, context, Tags(runId, project)));
    }

    /// <summary>The W3C traceparent of a span, for a message that crosses to another process.</summary>
    public static string TraceParent(Activity? span) => span?.Id ?? string.Empty;

    /// <summary>Ends a span made by <see cref="StartRunSpan"/> or <see cref="StartChild"/> on another
    /// thread than the one that started it, without touching that thread's current span.</summary>
    public static void End(Activity? span, string? error = null)
    {
        if (span is null)
        {
            return;
        }

        if (error is not null)
        {
            span.SetStatus(ActivityStatusCode.Error, error);
        }

        var current = Activity.Current;
        span.Stop();
        Activity.Current = current;
    }

    /// <summary>Starts <paramref name="work"/> with <paramref name="span"/> as its current span, so the
    /// spans it makes nest under it, and leaves the calling thread's current span as it was.</summary>
    public static Task Within(Activity? span, Func<Task> work)
    {
        if (span is null)
        {
            return work();
        }

        var current = Activity.Current;
        Activity.Current = span;
        try
        {
            return work();
        }
        finally
        {
            Activity.Current = current;
        }
    }

    /// <summary><paramref name="work"/>, ending <paramref name="span"/> when it ends (with its error);
    /// the task itself when there is no span.</summary>
    public static Task EndAfter(Task work, Activity? span) => span is null ? work : EndAfterAsync(work, span);

    private static async Task EndAfterAsync(Task work, Activity span)
    {
        try
        {
            await work;
            End(span);
        }
        catch (Exception e)
        {
            End(span, e.Message);
            throw;
        }
    }

    private static Activity? Detached(Func<Activity?> start)
    {
        var current = Activity.Current;
        var span = start();
        Activity.Current = current;
        return span;
    }

    private static KeyValuePair<string, object?>[] Tags(string runId, string project) =>
        [new("tsp.run_id", runId), new("tsp.project", project)];
}
