namespace Tsp.Actors.Storage;

/// <summary>The one place that spells TSP's Redis keys. Everything of a project starts with
/// <c>tsp:{project}:</c>, so an operator can scan or drop one project.</summary>
public static class RedisKeys
{
    public const string FrameNodeId = "frame";

    public static string Frame(string project, string runId) => $"tsp:{project}:{runId}:in";

    /// <summary>Hash of the frames of runs submitted together (a Kafka batch): field = run id.</summary>
    public static string FrameBatch(string project, string batchId) => $"tsp:{project}:frames:{batchId}";

    public static string NodeOutput(string project, string runId, string nodeId) => $"tsp:{project}:{runId}:{nodeId}";

    /// <summary>Sorted set: score = position, member = serialized TpResult.</summary>
    public static string Results(string project) => $"tsp:{project}:results";

    /// <summary>The position a run's result got in the results log: makes a re-publish after a crash idempotent.</summary>
    public static string ResultPosition(string project, string runId) => $"tsp:{project}:{runId}:position";

    /// <summary>Counter that hands out result positions.</summary>
    public static string ResultsSequence(string project) => $"tsp:{project}:results:seq";

    /// <summary>List of serialized DeadLetter records, newest first.</summary>
    public static string DeadLetters(string project) => $"tsp:{project}:dead";
}
