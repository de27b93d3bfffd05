namespace Tsp.Actors.Dispatch;

/// <summary>How one named queue's routees are deployed and how many tasks each may hold.</summary>
public sealed record QueueOptions
{
    /// <summary>Cluster role the routees are pinned to: gpu or cpu.</summary>
    public string Role { get; init; } = "cpu";

    /// <summary>Routees on each member of the role.</summary>
    public int RouteesPerMember { get; init; } = 2;

    /// <summary>Tasks one routee holds at once (its credits).</summary>
    public int SlotsPerRoutee { get; init; } = 4;

    /// <summary>First retry delay; doubles per attempt, with jitter, up to <see cref="MaxRetryDelay"/>.</summary>
    public TimeSpan RetryBaseDelay { get; init; } = TimeSpan.FromMilliseconds(100);

    public TimeSpan MaxRetryDelay { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long past a task's timeout the queue waits for the routee's own timeout reply
    /// before it takes the task back (a lost message or a stuck routee).</summary>
    public TimeSpan TimeoutGrace { get; init; } = TimeSpan.FromSeconds(2);

    public static QueueOptions DefaultFor(string role) => role == "gpu"
        ? new QueueOptions { Role = role, RouteesPerMember = 1, SlotsPerRoutee = 8 }
        : new QueueOptions { Role = role, RouteesPerMember = Math.Max(2, Environment.ProcessorCount), SlotsPerRoutee = 4 };
}

/// <summary>Asks a queue for its numbers; answered with <see cref="QueueStats"/>.</summary>
public sealed record GetQueueStats
{
    public static readonly GetQueueStats Instance = new();
}

public sealed record QueueStats(string Queue, string Role, int Pending, int InFlight, int Workers, int Slots, int FreeSlots, long Dispatched, long Retried, long Failed, long Requeued = 0, int Draining = 0, long Cancelled = 0);
