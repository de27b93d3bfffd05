using System.Globalization;
using System.Text;
using Tsp.Actors.Nodes;
using Tsp.Actors.Protocol;
using Tsp.Actors.Workflows;

namespace Tsp.Actors.Tests.Workflows;

public sealed class RunStateTests
{
    private static readonly IReadOnlySet<string> Processors = NodeProcessorRegistry.WithBuiltIns().Names;

    private const string FanOutFanIn = """
        project: p
        nodes:
          - { id: pre, processor: passthrough, role: cpu, queue: q }
          - { id: a, processor: checksum, role: cpu, queue: q, after: [pre] }
          - { id: b, processor: checksum, role: cpu, queue: q, after: [pre] }
          - { id: join, processor: checksum, role: cpu, queue: q, after: [a, b] }
          - { id: post, processor: passthrough, role: cpu, queue: q, after: [join] }
        """;

    private const string Conditional = """
        project: p
        nodes:
          - { id: detect, processor: checksum, role: cpu, queue: q }
          - { id: classify, processor: checksum, role: gpu, queue: g, after: [detect], when: "detect.score > 0.5" }
          - { id: describe, processor: checksum, role: cpu, queue: q, after: [classify] }
          - { id: report, processor: checksum, role: cpu, queue: q, after: [detect, describe] }
        """;

    private static RunState Start(string yaml) =>
        RunState.Start(WorkflowLoader.Parse(yaml, "t.yaml", Processors), new RunStarted { RunId = "r1", Project = "p", FrameKey = "k" });

    private static NodeTaskDone Done(string node, double score = 0) => new()
    {
        TaskId = "r1/" + node,
        RunId = "r1",
        NodeId = node,
        OutputKey = "out:" + node,
        Metrics = { ["score"] = score },
    };

    private static RunState Complete(RunState state, string node, double score = 0)
    {
        var events = state.Decide(Done(node, score), attempts: 1);
        return events.Aggregate(state, (s, e) => s.Apply(e));
    }

    private static string[] Ready(RunState state) => state.Ready.Select(i => state.Workflow.Nodes[i].Id).ToArray();

    [Fact]
    public void Fan_out_then_fan_in_in_dependency_order()
    {
        var state = Start(FanOutFanIn);
        Assert.Equal(["pre"], Ready(state));

        state = Complete(state, "pre");
        Assert.Equal(["a", "b"], Ready(state));

        state = Complete(state, "b");
        Assert.Equal(["a"], Ready(state));

        state = Complete(state, "a");
        Assert.Equal(["join"], Ready(state));

        state = Complete(state, "join");
        state = Complete(state, "post");
        Assert.Empty(Ready(state));
        Assert.True(state.IsFinished);
        Assert.Null(state.Failure);
    }

    [Fact]
    public void A_true_condition_runs_the_branch()
    {
        var state = Complete(Start(Conditional), "detect", score: 0.9);

        Assert.Equal(["classify"], Ready(state));
    }

    [Fact]
    public void A_false_condition_skips_the_node_and_descendants_that_no_other_parent_feeds()
    {
        var state = Complete(Start(Conditional), "detect", score: 0.1);

        Assert.Equal(NodeStatus.Skipped, state.StatusOf(state.Workflow.IndexOf("classify")));
        Assert.Equal(NodeStatus.Skipped, state.StatusOf(state.Workflow.IndexOf("describe")));
        Assert.Equal(["report"], Ready(state));

        state = Complete(state, "report");
        Assert.True(state.IsFinished);
        var result = state.Apply(state.Complete(1)).ToResult();
        Assert.Equal(RunStatus.Succeeded, result.Status);
        Assert.Equal([NodeStatus.Completed, NodeStatus.Skipped, NodeStatus.Skipped, NodeStatus.Completed], result.Nodes.Select(n => n.Status));
    }

    [Fact]
    public void A_node_whose_parents_were_all_skipped_is_skipped_even_without_a_condition()
    {
        var yaml = """
            project: p
            nodes:
              - { id: s, processor: checksum, role: cpu, queue: q }
              - { id: a, processor: checksum, role: cpu, queue: q, after: [s], when: "s.score > 2" }
              - { id: b, processor: checksum, role: cpu, queue: q, after: [s], when: "s.score > 2" }
              - { id: j, processor: checksum, role: cpu, queue: q, after: [a, b] }
            """;

        var state = Complete(Start(yaml), "s", score: 1);

        Assert.All(["a", "b", "j"], id => Assert.Equal(NodeStatus.Skipped, state.StatusOf(state.Workflow.IndexOf(id))));
        Assert.True(state.IsFinished);
    }

    [Fact]
    public void A_failed_node_fails_the_run_and_nothing_more_is_ready()
    {
        var state = Complete(Start(FanOutFanIn), "pre");
        var failed = state.Decide(new NodeTaskFailed { NodeId = "a", Reason = "boom" }, attempts: 3);
        state = failed.Aggregate(state, (s, e) => s.Apply(e));

        Assert.True(state.IsFinished);
        Assert.Empty(Ready(state));
        Assert.Empty(state.Decide(Done("b"), 1));
        var result = state.Apply(state.Complete(5)).ToResult();
        Assert.Equal(RunStatus.Failed, result.Status);
        Assert.Equal("node 'a' failed after 3 attempt(s): boom", result.Error);
        Assert.Equal(NodeStatus.Failed, result.Nodes[1].Status);
        Assert.Equal("boom", result.Nodes[1].Error);
    }

    [Fact]
    public void Duplicate_and_unknown_results_produce_no_events()
    {
        var state = Complete(Start(FanOutFanIn), "pre");

        Assert.Empty(state.Decide(Done("pre"), 2));
        Assert.Empty(state.Decide(Done("nope"), 1));
        Assert.Single(state.Decide(Done("a"), 1));
    }

    [Fact]
    public void Replaying_the_events_rebuilds_the_same_state()
    {
        var workflow = WorkflowLoader.Parse(Conditional, "t.yaml", Processors);
        var started = new RunStarted { RunId = "r1", Project = "p", FrameKey = "k" };
        var live = RunState.Start(workflow, started);
        var events = new List<IRunEvent>();
        foreach (var (node, score) in new[] { ("detect", 0.7), ("classify", 0.2) })
        {
            var decided = live.Decide(Done(node, score), 1);
            events.AddRange(decided);
            live = decided.Aggregate(live, (s, e) => s.Apply(e));
        }

        // A recovery: the events parsed back from their bytes, applied to a fresh state.
        var recovered = events
            .Select(e => (IRunEvent)NodeCompleted.Parser.ParseFrom(Google.Protobuf.MessageExtensions.ToByteArray(e)))
            .Aggregate(RunState.Start(workflow, started), (s, e) => s.Apply(e));

        Assert.Equal(Ready(live), Ready(recovered));
        Assert.Equal(["describe"], Ready(recovered));
        Assert.Equal(live.ToResult(), recovered.ToResult());
    }

    /// <summary>Property: on any DAG, with any completion order and any condition outcomes, the run
    /// finishes with every node completed or skipped, a node runs only after all its parents are done,
    /// a node is skipped exactly when its parents were all skipped or its condition was false, and a
    /// replay of the events reaches the same result.</summary>
    [Fact]
    public void Random_dags_always_finish_consistently()
    {
        for (var seed = 0; seed < 500; seed++)
        {
            var random = new Random(seed);
            var (yaml, thresholds) = RandomDag(random);
            var workflow = WorkflowLoader.Parse(yaml, $"seed-{seed}.yaml", Processors);
            var started = new RunStarted { RunId = "r", Project = "p" };
            var state = RunState.Start(workflow, started);
            var events = new List<IRunEvent>();
            var scores = new Dictionary<string, double>();
            var steps = 0;
            while (!state.IsFinished)
            {
                var ready = state.Ready.ToList();
                Assert.True(ready.Count > 0, $"seed {seed}: stuck with nothing ready\n{yaml}");
                var node = ready[random.Next(ready.Count)];
                foreach (var parent in workflow.Parents[node])
                {
                    Assert.Contains(state.StatusOf(parent), new[] { NodeStatus.Completed, NodeStatus.Skipped });
                }

                var id = workflow.Nodes[node].Id;
                scores[id] = random.NextDouble();
                var decided = state.Decide(Done(id, scores[id]), 1);
                events.AddRange(decided);
                state = decided.Aggregate(state, (s, e) => s.Apply(e));
                Assert.True(++steps <= workflow.Nodes.Count, $"seed {seed}: a node ran twice");
            }

            for (var i = 0; i < workflow.Nodes.Count; i++)
            {
                var status = state.StatusOf(i);
                var parents = workflow.Parents[i];
                var allParentsSkipped = parents.Length > 0 && parents.All(p => state.StatusOf(p) == NodeStatus.Skipped);
                var conditionFalse = thresholds.TryGetValue(workflow.Nodes[i].Id, out var t) &&
                    !(scores.TryGetValue(t.Parent, out var s) && state.StatusOf(workflow.IndexOf(t.Parent)) == NodeStatus.Completed && s > t.Threshold);
                var expected = allParentsSkipped || conditionFalse ? NodeStatus.Skipped : NodeStatus.Completed;
                Assert.True(expected == status, $"seed {seed}: node {workflow.Nodes[i].Id} is {status}, expected {expected}\n{yaml}");
            }

            var replayed = events.Aggregate(RunState.Start(workflow, started), (s, e) => s.Apply(e));
            Assert.Equal(state.ToResult(), replayed.ToResult());
        }
    }

    private static (string Yaml, Dictionary<string, (string Parent, double Threshold)> Thresholds) RandomDag(Random random)
    {
        var count = random.Next(1, 12);
        var yaml = new StringBuilder("project: p\nnodes:\n");
        var thresholds = new Dictionary<string, (string, double)>();
        var hasChild = new bool[count];
        for (var i = 0; i < count; i++)
        {
            var parents = Enumerable.Range(0, i).Where(_ => random.NextDouble() < 0.35).ToList();
            yaml.Append(CultureInfo.InvariantCulture, $"  - id: n{i}\n    processor: checksum\n    role: cpu\n    queue: q\n");
            if (parents.Count > 0)
            {
                parents.ForEach(p => hasChild[p] = true);
                yaml.Append(CultureInfo.InvariantCulture, $"    after: [{string.Join(", ", parents.Select(p => $"n{p}"))}]\n");
                if (random.NextDouble() < 0.4)
                {
                    var parent = $"n{parents[random.Next(parents.Count)]}";
                    var threshold = Math.Round(random.NextDouble(), 2);
                    thresholds[$"n{i}"] = (parent, threshold);
                    yaml.Append(CultureInfo.InvariantCulture, $"    when: \"{parent}.score > {threshold}\"\n");
                }
            }
        }

        return (yaml.ToString(), thresholds);
    }
}
