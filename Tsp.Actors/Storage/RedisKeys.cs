namespace Tsp.Actors.Storage;

/// <summary>The one place that spells TSP's Redis keys. Everything of a project starts with
/// <c>tsp:{project}:</c>, so an operator can scan or drop one project.</summary>
public static class RedisKeys
{
    public const string FrameNodeId = "frame";

    /// <summary>The frames of runs submitted together, back to back (<see cref="FrameLeases"/>).</summary>
    public static string Frames(string project, string id) => $"tsp:{project}:frames:{id}";

    public static string NodeOutput(string project, string runId, string nodeId) => $"tsp:{project}:{runId}:{nodeId}";

    /// <summary>Sorted set: score = position, member = serialized TpResult.</summary>
    public static string Results(string project) => $"tsp:{project}:results";

    /// <summary>The position a run's result got in the results log: makes a re-publish after a crash idempotent.</summary>
    public static string ResultPosition(string project, string runId) => $"tsp:{project}:{runId}:position";

    /// <summary>Counter that hands out result positions.</summary>
    public static string ResultsSequence(string project) => $"tsp:{project}:results:seq";

    /// <summary>A copy of a finished run's frame, kept for a while for the dashboard (one run per
    /// project and second at most).</summary>
    public static string Preview(string project, string runId) => $"tsp:{project}:{runId}:preview";

    /// <summary>A failed run's frame, kept with its dead letter so the run can be redriven.</summary>
    public static string DeadFrame(string project, string runId) => $"tsp:{project}:{runId}:dead-frame";

    /// <summary>Counter that numbers a project's dead letters (DeadLetter.id).</summary>
    public static string DeadLettersSequence(string project) => $"tsp:{project}:dead:seq";

    /// <summary>The dead letter a redriven run was started from (so a second failure names both reasons).</summary>
    public static string RedrivenFrom(string project, string runId) => $"tsp:{project}:{runId}:redriven-from";

    /// <summary>List of serialized DeadLetter records, newest first.</summary>
    public static string DeadLetters(string project) => $"tsp:{project}:dead";
}
