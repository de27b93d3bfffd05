namespace Tsp.Actors.Protocol;

/// <summary>Every TP message: serialized by <see cref="TspProtobufSerializer"/> wherever it crosses a
/// process or is persisted.</summary>
public interface ITspMessage : Google.Protobuf.IMessage
{
}

/// <summary>A message addressed to one workflow run; the shard extractor reads its run id.</summary>
public interface IRunMessage : ITspMessage
{
    string RunId { get; }
}

/// <summary>A persisted event of a workflow run (in its run host's journal, so it names its run).</summary>
public interface IRunEvent : ITspMessage
{
    string RunId { get; }
}

public sealed partial class Frame : ITspMessage;
public sealed partial class Box : ITspMessage;
public sealed partial class Detection : ITspMessage;
public sealed partial class NodeResult : ITspMessage;
public sealed partial class TpResult : ITspMessage;
public sealed partial class DeadLetter : ITspMessage;
public sealed partial class StartRun : IRunMessage;
public sealed partial class RunAccepted : ITspMessage;
public sealed partial class StartRuns : ITspMessage;
public sealed partial class RunsAccepted : ITspMessage;
public sealed partial class ResumeRun : IRunMessage;
public sealed partial class GetRunState : IRunMessage;
public sealed partial class RunStateView : ITspMessage;
public sealed partial class NodeInput : ITspMessage;
public sealed partial class NodeTask : ITspMessage;
public sealed partial class NodeTaskDone : IRunMessage;
public sealed partial class NodeTaskFailed : IRunMessage;
public sealed partial class WorkerReady : ITspMessage;
public sealed partial class WorkerDraining : ITspMessage;
public sealed partial class WorkerDrainAck : ITspMessage;
public sealed partial class WorkerReadyAck : ITspMessage;
public sealed partial class QueueWaiting : ITspMessage;
public sealed partial class RunStarted : IRunEvent;
public sealed partial class NodeCompleted : IRunEvent;
public sealed partial class NodeFailed : IRunEvent;
public sealed partial class RunCompleted : IRunEvent;
public sealed partial class RunRecord : ITspMessage;
public sealed partial class RunEvent : ITspMessage;
public sealed partial class RunEventBatch : ITspMessage;
public sealed partial class RunHostSnapshot : ITspMessage;
public sealed partial class SubscribeResults : ITspMessage;
public sealed partial class ResultSubscriptionStarted : ITspMessage;
public sealed partial class ResultSubscriptionEnded : ITspMessage;
public sealed partial class Tensor : ITspMessage;
public sealed partial class TensorSet : ITspMessage;
public sealed partial class TrainingSet : ITspMessage;
public sealed partial class DetectionList : ITspMessage;
public sealed partial class GetClusterStatus : ITspMessage;
public sealed partial class MemberStatus : ITspMessage;
public sealed partial class QueueStatus : ITspMessage;
public sealed partial class ProjectStatus : ITspMessage;
public sealed partial class ClusterStatus : ITspMessage;
public sealed partial class GetMemberStats : ITspMessage;
public sealed partial class MemberStats : ITspMessage;
public sealed partial class NodeStats : ITspMessage;
public sealed partial class ModelStats : ITspMessage;
public sealed partial class ServedModel : ITspMessage;
public sealed partial class CancelRun : IRunMessage;
public sealed partial class GetRunSummary : IRunMessage;
public sealed partial class CancelRunReply : ITspMessage;
public sealed partial class ListHostRuns : ITspMessage;
public sealed partial class HostRuns : ITspMessage;
public sealed partial class CancelHostRuns : ITspMessage;
public sealed partial class CancelRunsReply : ITspMessage;
public sealed partial class RunSummary : ITspMessage;
public sealed partial class NodeProgress : ITspMessage;
public sealed partial class CancelTasks : ITspMessage;
public sealed partial class CancelTask : ITspMessage;
public sealed partial class GetTaskPlacements : ITspMessage;
public sealed partial class TaskPlacements : ITspMessage;
public sealed partial class ChangeProjectControl : ITspMessage;
public sealed partial class GetProjectControlState : ITspMessage;
public sealed partial class ProjectControlState : ITspMessage;
public sealed partial class WorkflowVersion : ITspMessage;
public sealed partial class DeployedProject : ITspMessage;
public sealed partial class Deployments : ITspMessage;
public sealed partial class DeployVersion : ITspMessage;
public sealed partial class RemoveDeployedProject : ITspMessage;
public sealed partial class GetDeployments : ITspMessage;
public sealed partial class ModelRule : ITspMessage;
public sealed partial class ModelRules : ITspMessage;
public sealed partial class ChangeModelRule : ITspMessage;
public sealed partial class GetModelRules : ITspMessage;
public sealed partial class GetModelIndex : ITspMessage;
public sealed partial class MemberModelIndex : ITspMessage;
public sealed partial class ModelVersionStatus : ITspMessage;
