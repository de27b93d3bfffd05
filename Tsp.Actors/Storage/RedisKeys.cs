namespace Tsp.Actors.Storage;

/// <summary>
/// The one place that spells TSP's Redis keys. Every key of a project starts with <c>tsp:{project}:</c>
/// or <c>tsp:project:</c>, so an operator can scan or drop one project (both patterns).
/// </summary>
/// <remarks>
/// Hash tags (the part in braces) choose a key's slot on a Redis Cluster, so that each multi-key step
/// stays in one slot while a project's runs spread over the masters: a project's results log (the log,
/// its counter, its dead letters and each run's position marker, written by one script) shares the
/// project's tag; a run's blobs (node outputs read together, its preview, dead frame and redrive note)
/// share the run's tag; a frames string (the frames of runs submitted together) has its own. On a
/// single Redis or Garnet the braces are only characters.
/// </remarks>
public static class RedisKeys
{
    public const string FrameNodeId = "frame";

    /// <summary>The frames of runs submitted together, back to back (<see cref="FrameLeases"/>).</summary>
    public static string Frames(string project, string id) => $"tsp:{project}:frames:{{{id}}}";

    public static string NodeOutput(string project, string runId, string nodeId) => $"tsp:{project}:{{{runId}}}:{nodeId}";

    /// <summary>Sorted set: score = position, member = serialized TpResult.</summary>
    public static string Results(string project) => $"tsp:{{{project}}}:results";

    /// <summary>The position a run's result got in the results log: makes a re-publish after a crash idempotent.</summary>
    public static string ResultPosition(string project, string runId) => $"tsp:{{{project}}}:position:{runId}";

    /// <summary>Counter that hands out result positions.</summary>
    public static string ResultsSequence(string project) => $"tsp:{{{project}}}:results:seq";

    /// <summary>A copy of a finished run's frame, kept for a while for the dashboard (one run per
    /// project and second at most).</summary>
    public static string Preview(string project, string runId) => $"tsp:{project}:{{{runId}}}:preview";

    /// <summary>A failed run's frame, kept with its dead letter so the run can be redriven.</summary>
    public static string DeadFrame(string project, string runId) => $"tsp:{project}:{{{runId}}}:dead-frame";

    /// <summary>Counter that numbers a project's dead letters (DeadLetter.id).</summary>
    public static string DeadLettersSequence(string project) => $"tsp:{{{project}}}:dead:seq";

    /// <summary>The dead letter a redriven run was started from (so a second failure names both reasons).</summary>
    public static string RedrivenFrom(string project, string runId) => $"tsp:{project}:{{{runId}}}:redriven-from";

    /// <summary>List of serialized DeadLetter records, newest first.</summary>
    public static string DeadLetters(string project) => $"tsp:{{{project}}}:dead";

    /// <summary>The two <c>SCAN</c> patterns that together match every key of <paramref name="project"/>
    /// and no other project's (project names hold no glob characters).</summary>
    public static IReadOnlyList<string> ProjectPatterns(string project) => [$"tsp:{project}:*", $"tsp:{{{project}}}:*"];
}
