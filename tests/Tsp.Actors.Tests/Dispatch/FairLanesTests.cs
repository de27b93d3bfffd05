using Tsp.Actors.Dispatch;

namespace Tsp.Actors.Tests.Dispatch;

/// <summary>The order in which a queue's waiting tasks go to workers, across projects.</summary>
public sealed class FairLanesTests
{
    private long _now = 1_000_000;

    private FairLanes<string> Lanes() => new(() => _now);

    private static List<string> Drain(FairLanes<string> lanes, int count, int slots = 100)
    {
        var taken = new List<string>();
        for (var i = 0; i < count && lanes.Next(slots) is { } next; i++)
        {
            lanes.Take(next.Project, next.Node);
            taken.Add(next.Node.Value);
        }

        return taken;
    }

    [Fact]
    public void One_project_is_first_in_first_out_and_a_task_put_back_goes_first()
    {
        var lanes = Lanes();
        lanes.AddLast("a", LaneShare.Default, "a1");
        lanes.AddLast("a", LaneShare.Default, "a2");
        lanes.AddFirst("a", LaneShare.Default, "a0");

        Assert.Equal(["a0", "a1", "a2"], Drain(lanes, 10));
        Assert.Equal(0, lanes.Count);
    }

    [Fact]
    public void Within_a_project_deeper_tasks_go_first_and_each_depth_in_arrival_order()
    {
        var lanes = Lanes();
        lanes.AddLast("a", LaneShare.Default, "run1-pre", depth: 0);
        lanes.AddLast("a", LaneShare.Default, "run2-pre", depth: 0);
        lanes.AddLast("a", LaneShare.Default, "run0-post", depth: 2);
        lanes.AddLast("a", LaneShare.Default, "run0-model", depth: 1);
        lanes.AddLast("a", LaneShare.Default, "run9-post", depth: 2);
        lanes.AddFirst("a", LaneShare.Default, "run1-model-retry", depth: 1);

        Assert.Equal(["run0-post", "run9-post", "run1-model-retry", "run0-model", "run1-pre", "run2-pre"], Drain(lanes, 10));
        Assert.Equal(0, lanes.Count);
    }

    [Fact]
    public void A_removed_task_of_any_depth_leaves_its_lane()
    {
        var lanes = Lanes();
        var shallow = lanes.AddLast("a", LaneShare.Default, "pre", depth: 0);
        var deep = lanes.AddLast("a", LaneShare.Default, "post", depth: 3);
        lanes.AddLast("a", LaneShare.Default, "model", depth: 1);

        lanes.Remove("a", deep);
        lanes.Remove("a", shallow);

        Assert.Equal(1, lanes.Waiting("a"));
        Assert.Equal(["model"], Drain(lanes, 10));
    }

    [Fact]
    public void Depth_orders_tasks_within_a_project_only_never_across_projects()
    {
        var lanes = Lanes();
        for (var i = 0; i < 4; i++)
        {
            lanes.AddLast("shallow", LaneShare.Default, $"shallow{i}", depth: 0);
            lanes.AddLast("deep", LaneShare.Default, $"deep{i}", depth: 5);
        }

        var taken = Drain(lanes, 8);

        // Equal weights: the lanes alternate whatever their tasks' depths.
        Assert.All(taken.Chunk(2), pair => Assert.Equal(2, pair.Select(t => t[..4]).Distinct().Count()));
    }

    [Fact]
    public void Saturating_projects_share_in_proportion_to_their_weights_however_deep_their_backlogs()
    {
        var lanes = Lanes();
        for (var i = 0; i < 1000; i++)
        {
            lanes.AddLast("flood", LaneShare.Of(1, 0, 1), $"flood{i}");
        }

        for (var i = 0; i < 300; i++)
        {
            lanes.AddLast("heavy", LaneShare.Of(3, 0, 1), $"heavy{i}");
        }

        var first400 = Drain(lanes, 400);

        Assert.Equal(300, first400.Count(t => t.StartsWith("heavy", StringComparison.Ordinal)));
        Assert.Equal(100, first400.Count(t => t.StartsWith("flood", StringComparison.Ordinal)));
        // Interleaved, not in blocks: any 8 in a row hold both.
        Assert.All(first400.Chunk(8), chunk => Assert.Equal(2, chunk.Select(t => t[..5]).Distinct().Count()));
    }

    [Fact]
    public void A_project_that_arrives_behind_a_backlog_waits_for_one_turn_not_for_the_backlog()
    {
        var lanes = Lanes();
        for (var i = 0; i < 500; i++)
        {
            lanes.AddLast("backlog", LaneShare.Default, $"b{i}");
        }

        Drain(lanes, 10);
        lanes.AddLast("live", LaneShare.Default, "live");

        Assert.Contains("live", Drain(lanes, 2));
    }

    [Fact]
    public void A_higher_priority_goes_first_and_a_low_one_that_waited_long_enough_still_gets_its_turn()
    {
        var lanes = Lanes();
        lanes.AddLast("low", LaneShare.Of(1, 0, 1), "low");
        for (var i = 0; i < 50; i++)
        {
            lanes.AddLast("high", LaneShare.Of(1, 1, 1), $"high{i}");
        }

        Assert.All(Drain(lanes, 10), t => Assert.StartsWith("high", t, StringComparison.Ordinal));

        // A low task that has waited one aging step ties with high tasks that just arrived, and shares with them.
        var aging = Lanes();
        aging.AddLast("low", LaneShare.Of(1, 0, 1), "low");
        _now += (long)FairLanes<string>.AgingStep.TotalMilliseconds;
        for (var i = 0; i < 50; i++)
        {
            aging.AddLast("high", LaneShare.Of(1, 1, 1), $"high{i}");
        }

        Assert.Contains("low", Drain(aging, 2));
    }

    [Fact]
    public void A_project_at_its_maximum_share_waits_while_others_run_and_one_task_always_may()
    {
        var lanes = Lanes();
        var capped = LaneShare.Of(1, 0, 0.25);
        for (var i = 0; i < 10; i++)
        {
            lanes.AddLast("capped", capped, $"c{i}");
            lanes.AddLast("other", LaneShare.Default, $"o{i}");
        }

        var taken = Drain(lanes, 10, slots: 8);

        Assert.Equal(2, taken.Count(t => t.StartsWith('c')));
        Assert.Equal(8, taken.Count(t => t.StartsWith('o')));
        Assert.Equal(2, lanes.InFlight("capped"));
        lanes.Left("capped");
        Assert.Contains("c2", Drain(lanes, 2, slots: 8));

        // Alone and at its share: nothing to dispatch, even with free slots.
        var alone = Lanes();
        alone.AddLast("capped", capped, "x0");
        alone.AddLast("capped", capped, "x1");
        Assert.Equal(["x0"], Drain(alone, 5, slots: 2));
        Assert.Null(alone.Next(2));
    }

    [Fact]
    public void A_removed_task_leaves_its_lane_and_an_empty_lane_keeps_no_credit()
    {
        var lanes = Lanes();
        var node = lanes.AddLast("a", LaneShare.Of(5, 0, 1), "a0");
        lanes.AddLast("b", LaneShare.Default, "b0");
        lanes.Remove("a", node);

        Assert.Equal(["b0"], Drain(lanes, 5));
        Assert.Equal(0, lanes.Count);
    }

    /// <summary>Random mixes of projects (weights 1–50, priorities 0–4, some capped at a share) all
    /// flooding a queue whose tasks take 1 s: each project is served at least once per aging step for
    /// each priority level above it, plus one, however the mix is drawn — no project starves.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(6)]
    public void Every_project_of_any_mix_progresses_while_all_of_them_flood_the_queue(int seed)
    {
        var random = new Random(seed);
        var lanes = Lanes();
        var slots = random.Next(1, 9);
        var projects = Enumerable.Range(0, random.Next(2, 7)).Select(p => (
            Name: $"p{p}",
            Share: LaneShare.Of(random.Next(1, 51), random.Next(0, 5), random.Next(3) == 0 ? random.NextDouble() : 1.0))).ToList();
        var topPriority = projects.Max(p => p.Share.Priority);
        var lastServed = projects.ToDictionary(p => p.Name, _ => _now);
        var longestWait = projects.ToDictionary(p => p.Name, _ => 0L);
        var running = new Queue<(string Project, long EndsAt)>();
        var taskMs = 1_000L;
        var end = _now + (long)TimeSpan.FromMinutes(10).TotalMilliseconds;
        while (_now < end)
        {
            // Every project keeps a backlog, as a flood does.
            foreach (var (name, share) in projects)
            {
                while (lanes.Waiting(name) < 50)
                {
                    lanes.AddLast(name, share, name);
                }
            }

            while (running.Count < slots && lanes.Next(slots) is { } next)
            {
                lanes.Take(next.Project, next.Node);
                running.Enqueue((next.Project, _now + taskMs));
                longestWait[next.Project] = Math.Max(longestWait[next.Project], _now - lastServed[next.Project]);
                lastServed[next.Project] = _now;
            }

            var (project, endsAt) = running.Dequeue();
            _now = Math.Max(_now, endsAt);
            lanes.Left(project);
        }

        var aging = (long)FairLanes<string>.AgingStep.TotalMilliseconds;
        foreach (var (name, share) in projects)
        {
            longestWait[name] = Math.Max(longestWait[name], _now - lastServed[name]);
            var bound = ((topPriority - share.Priority + 1) * aging) + (2 * taskMs);
            Assert.True(longestWait[name] <= bound, $"{name} ({share}) waited {longestWait[name]} ms for a slot (bound {bound} ms) among {string.Join(", ", projects)} on {slots} slots");
        }
    }
}
