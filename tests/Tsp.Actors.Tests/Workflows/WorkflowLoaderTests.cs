using Tsp.Actors.Dispatch;
using Tsp.Actors.Nodes;
using Tsp.Actors.Workflows;

namespace Tsp.Actors.Tests.Workflows;

public sealed class WorkflowLoaderTests
{
    private static readonly IReadOnlySet<string> Processors = NodeProcessorRegistry.WithBuiltIns().Names;

    private static WorkflowDefinition Parse(string yaml) => WorkflowLoader.Parse(yaml, "test.yaml", Processors);

    private static IReadOnlyList<WorkflowError> Errors(string yaml) =>
        Assert.Throws<WorkflowValidationException>(() => Parse(yaml)).Errors;

    private static WorkflowError SingleError(string yaml, string containing)
    {
        var errors = Errors(yaml);
        return Assert.Single(errors, e => e.Message.Contains(containing, StringComparison.Ordinal));
    }

    private const string Valid = """
        project: inspect
        defaults:
          timeout: 2s
          max_attempts: 5
        nodes:
          - id: pre
            processor: passthrough
            role: cpu
            queue: cpu-short
          - id: a
            processor: checksum
            role: cpu
            queue: cpu-short
            after: [pre]
          - id: b
            processor: sleep
            role: gpu
            queue: gpu-model
            params: { ms: 3 }
            timeout: 250ms
            max_attempts: 1
            after: pre
          - id: join
            processor: checksum
            role: cpu
            queue: cpu-short
            after: [a, b]
            when: "a.score > 0.25 or b.slept_ms >= 3"
        """;

    [Fact]
    public void Loads_nodes_edges_parameters_and_defaults()
    {
        var workflow = Parse(Valid);

        Assert.Equal("inspect", workflow.Project);
        Assert.Equal(["pre", "a", "b", "join"], workflow.Nodes.Select(n => n.Id));
        Assert.Equal([0], workflow.Sources);
        Assert.Equal([3], workflow.Sinks);
        Assert.Equal(["a", "b"], workflow.Nodes[3].After);
        Assert.Equal([1, 2], workflow.Children[0]);
        Assert.Equal(TimeSpan.FromSeconds(2), workflow.Nodes[1].Timeout);
        Assert.Equal(5, workflow.Nodes[1].MaxAttempts);
        Assert.Equal(TimeSpan.FromMilliseconds(250), workflow.Nodes[2].Timeout);
        Assert.Equal(1, workflow.Nodes[2].MaxAttempts);
        Assert.Equal("3", workflow.Nodes[2].Parameters["ms"]);
        Assert.Equal("a.score > 0.25 or b.slept_ms >= 3", workflow.Nodes[3].When!.Text);
        Assert.Equal(["cpu-short", "gpu-model"], workflow.Queues);
        Assert.Equal(16, workflow.Hash.Length);
        Assert.Equal(10, workflow.Nodes[1].Line);
    }

    [Fact]
    public void A_nodes_output_may_stay_with_the_run_host_only_where_every_child_carries_all_its_parents_outputs()
    {
        var parents = Enumerable.Range(0, NodeTasks.MaxCarriedParents + 1).Select(i => $"p{i}").ToList();
        var lines = new List<string> { "project: wide", "nodes:", "  - { id: src, processor: passthrough, role: cpu, queue: q }" };
        lines.AddRange(parents.Select(p => $"  - {{ id: {p}, processor: checksum, role: cpu, queue: q, after: [src] }}"));
        lines.Add($"  - {{ id: narrow, processor: checksum, role: cpu, queue: q, after: [{string.Join(", ", parents.Take(NodeTasks.MaxCarriedParents))}] }}");
        lines.Add($"  - {{ id: wide, processor: checksum, role: cpu, queue: q, after: [{string.Join(", ", parents)}] }}");

        var workflow = Parse(string.Join('\n', lines));

        // Every p feeds wide, which has one parent more than a task carries; src and the sinks may defer.
        Assert.Equal([true, .. Enumerable.Repeat(false, parents.Count), true, true], workflow.MayDeferOutput);
        var narrowOnly = Parse(string.Join('\n', lines.Take(lines.Count - 1)));
        Assert.All(narrowOnly.MayDeferOutput, Assert.True);
    }

    [Fact]
    public void Every_task_carries_its_nodes_longest_chain_of_parents_whatever_order_the_nodes_are_listed_in()
    {
        var workflow = Parse("""
            project: p
            nodes:
              - { id: post, processor: checksum, role: cpu, queue: q, after: [join] }
              - { id: join, processor: checksum, role: cpu, queue: q, after: [a, shortcut] }
              - { id: shortcut, processor: checksum, role: cpu, queue: q, after: [pre] }
              - { id: a, processor: checksum, role: cpu, queue: q, after: [b] }
              - { id: b, processor: checksum, role: cpu, queue: q, after: [pre] }
              - { id: pre, processor: passthrough, role: cpu, queue: q }
            """);

        var depths = workflow.Tasks.Select(t => Tsp.Actors.Dispatch.NodeTasks.Build(t, "p", "r", TimeSpan.FromMinutes(1)).Depth);

        Assert.Equal([4, 3, 1, 2, 1, 0], depths);
    }

    [Fact]
    public void The_sample_demo_workflow_is_valid()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "..", "samples", "demo", "workflow.yaml");

        var workflow = WorkflowLoader.LoadFile(path, Processors);

        Assert.Equal("demo", workflow.Project);
        Assert.Contains(workflow.Nodes, n => n.When is not null);
        Assert.Contains(workflow.Parents, p => p.Length > 1);
        Assert.Contains(workflow.Children, c => c.Length > 1);
    }

    [Fact]
    public void Scheduling_sets_the_projects_share_priority_and_rate_limit_and_every_task_carries_its_share()
    {
        var workflow = Parse("""
            project: p
            scheduling: { weight: 3, priority: -2, max_share: 0.5, rate_limit: 12.5 }
            nodes:
              - { id: a, processor: checksum, role: cpu, queue: q }
            """);

        Assert.Equal(new ProjectScheduling(Tsp.Actors.Dispatch.LaneShare.Of(3, -2, 0.5), 12.5), workflow.Scheduling);
        var task = Tsp.Actors.Dispatch.NodeTasks.Build(workflow.Tasks[0], "p", "r", TimeSpan.FromMinutes(1));
        Assert.Equal((3, -2, 0.5f), (task.Weight, task.Priority, task.MaxShare));
        Assert.Equal(ProjectScheduling.Default, Parse("project: p\nnodes:\n  - { id: a, processor: checksum, role: cpu, queue: q }\n").Scheduling);
    }

    [Fact]
    public void Bad_scheduling_values_are_named_with_their_line()
    {
        var errors = Errors("""
            project: p
            scheduling:
              weight: 0
              priority: high
              max_share: 1.5
              rate_limit: -1
              burst: 4
            nodes:
              - { id: a, processor: checksum, role: cpu, queue: q }
            """);

        Assert.Contains(errors, e => e.Line == 3 && e.Message.Contains("weight '0' must be a whole number from 1 to 1000", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Line == 4 && e.Message.Contains("priority 'high'", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Line == 5 && e.Message.Contains("max_share '1.5' must be a share of the queue's slots above 0 and at most 1", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Line == 6 && e.Message.Contains("rate_limit '-1' must be a number of frames per second above 0", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Message.Contains("burst", StringComparison.Ordinal));
        Assert.Contains(Errors("project: p\nscheduling: 3\nnodes:\n  - { id: a, processor: checksum, role: cpu, queue: q }\n"), e => e.Line == 2 && e.Message.Contains("'scheduling' must be a mapping", StringComparison.Ordinal));
    }

    [Fact]
    public void Unknown_processor_names_the_node_line_and_known_processors()
    {
        var error = SingleError(Valid.Replace("processor: sleep", "processor: yolo"), "unknown processor");

        Assert.Equal("test.yaml", error.Source);
        Assert.Equal(16, error.Line);
        Assert.Contains("node 'b': unknown processor 'yolo' (known: checksum, flaky, passthrough, sleep, spin)", error.Message, StringComparison.Ordinal);
        Assert.StartsWith("test.yaml:16: ", error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_parent_is_named()
    {
        var error = SingleError(Valid.Replace("after: [a, b]", "after: [a, c]"), "unknown parent");

        Assert.Equal("node 'join': unknown parent 'c' in 'after'", error.Message);
        Assert.Equal(23, error.Line);
    }

    [Fact]
    public void Duplicate_id_points_to_the_first_definition()
    {
        var error = SingleError(Valid.Replace("- id: b", "- id: a"), "duplicate");

        Assert.Equal("duplicate node id 'a' (first defined at line 10)", error.Message);
        Assert.Equal(15, error.Line);
    }

    [Fact]
    public void Cycle_names_the_nodes_in_it()
    {
        var yaml = """
            project: p
            nodes:
              - id: start
                processor: passthrough
                role: cpu
                queue: q
              - id: x
                processor: passthrough
                role: cpu
                queue: q
                after: [start, z]
              - id: y
                processor: passthrough
                role: cpu
                queue: q
                after: [x]
              - id: z
                processor: passthrough
                role: cpu
                queue: q
                after: [y]
            """;

        var error = SingleError(yaml, "cycle");

        Assert.Equal("cycle: x -> y -> z -> x", error.Message);
        Assert.Equal(7, error.Line);
    }

    [Fact]
    public void A_graph_where_every_node_has_a_parent_has_no_source_and_no_sink()
    {
        var yaml = """
            project: p
            nodes:
              - { id: a, processor: passthrough, role: cpu, queue: q, after: [b] }
              - { id: b, processor: passthrough, role: cpu, queue: q, after: [a] }
            """;

        var errors = Errors(yaml);

        Assert.Contains(errors, e => e.Message == "no source node: every node has a parent");
        Assert.Contains(errors, e => e.Message == "no sink node: every node is some node's parent");
        Assert.Contains(errors, e => e.Message == "cycle: a -> b -> a");
    }

    [Fact]
    public void A_node_that_lists_frame_in_after_reads_the_runs_frame_besides_its_parents_and_frame_is_no_node_id()
    {
        var workflow = Parse(Valid.Replace("after: [a, b]", "after: [frame, a, b]"));

        Assert.Equal(["a", "b"], workflow.Nodes[3].After);
        Assert.Equal([true, false, false, true], workflow.ReadsFrame);
        Assert.Equal([0], workflow.Sources);

        Assert.Equal("node 'frame': the id 'frame' is reserved: in 'after' it names the run's frame", SingleError(Valid.Replace("id: pre", "id: frame").Replace("after: [pre]", "after: [frame]").Replace("after: pre", "after: frame"), "reserved").Message);
        Assert.Equal("node 'join' lists 'frame' twice in 'after'", SingleError(Valid.Replace("after: [a, b]", "after: [frame, a, frame, b]"), "twice").Message);
    }

    [Fact]
    public void A_node_after_itself_is_rejected()
    {
        var error = SingleError(Valid.Replace("after: [a, b]", "after: [a, b, join]"), "itself");

        Assert.Equal("node 'join' lists itself in 'after'", error.Message);
    }

    [Fact]
    public void Bad_when_syntax_names_node_expression_and_column()
    {
        var error = SingleError(Valid.Replace("a.score > 0.25 or", "a.score >> 0.25 or"), "bad 'when'");

        Assert.Contains("node 'join': bad 'when' expression \"a.score >> 0.25 or b.slept_ms >= 3\": column 10", error.Message, StringComparison.Ordinal);
        Assert.Equal(28, error.Line);
    }

    [Fact]
    public void When_on_a_node_that_is_not_a_parent_is_rejected()
    {
        var error = SingleError(Valid.Replace("b.slept_ms", "pre.slept_ms"), "bad 'when'");

        Assert.Contains("'pre' is not one of its parents (a, b)", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Missing_role_and_unknown_role()
    {
        Assert.Equal("node 'a': missing 'role' (gpu or cpu)", SingleError(Valid.Replace("    role: cpu\n    queue: cpu-short\n    after: [pre]", "    queue: cpu-short\n    after: [pre]"), "role").Message);
        Assert.Equal("node 'b': unknown role 'tpu' (gpu or cpu)", SingleError(Valid.Replace("role: gpu", "role: tpu"), "role").Message);
    }

    [Fact]
    public void Missing_queue_is_named()
    {
        var error = SingleError(Valid.Replace("    queue: gpu-model\n", string.Empty), "queue");

        Assert.Equal("node 'b': missing 'queue' (the named queue it runs in, e.g. cpu-short)", error.Message);
    }

    [Fact]
    public void A_queue_used_with_two_roles_is_rejected()
    {
        var error = SingleError(Valid.Replace("queue: gpu-model", "queue: cpu-short"), "roles");

        Assert.Equal("queue 'cpu-short' is used with roles cpu and gpu; a queue runs on one role", error.Message);
    }

    [Fact]
    public void Missing_project_and_no_nodes()
    {
        Assert.Contains(Errors("nodes: []"), e => e.Message.StartsWith("missing 'project'", StringComparison.Ordinal));
        Assert.Contains(Errors("project: p\nnodes: []"), e => e.Message.StartsWith("missing 'nodes'", StringComparison.Ordinal));
    }

    [Fact]
    public void Unknown_keys_bad_timeouts_and_attempts_are_reported_together()
    {
        var yaml = Valid.Replace("timeout: 250ms", "timeout: soon").Replace("max_attempts: 1", "max_attempts: 0").Replace("    params:", "    parms: 1\n    params:");

        var errors = Errors(yaml).Select(e => e.Message).ToList();

        Assert.Contains("node 'b': timeout 'soon' is not a positive duration like 500ms, 30s or 2m", errors);
        Assert.Contains("node 'b': max_attempts '0' must be a whole number from 1 to 100", errors);
        Assert.Contains(errors, e => e.StartsWith("node 'b': unknown key 'parms'", StringComparison.Ordinal));
        Assert.Equal(3, errors.Count);
    }

    [Fact]
    public void Invalid_yaml_names_the_line()
    {
        var errors = Errors("project: p\nnodes:\n  - id: [unclosed\n");

        var error = Assert.Single(errors);
        Assert.StartsWith("not valid YAML", error.Message, StringComparison.Ordinal);
        Assert.True(error.Line >= 3);
    }

    [Fact]
    public void The_exception_message_lists_every_error_with_file_and_line()
    {
        var e = Assert.Throws<WorkflowValidationException>(() => Parse(Valid.Replace("processor: sleep", "processor: yolo").Replace("after: [a, b]", "after: [a, c]")));

        Assert.Contains("test.yaml:16: node 'b': unknown processor 'yolo'", e.Message, StringComparison.Ordinal);
        Assert.Contains("test.yaml:23: node 'join': unknown parent 'c'", e.Message, StringComparison.Ordinal);
    }
}
