using Akka.Actor;
using Akka.Event;
using Tsp.Actors.Dispatch;
using Tsp.Actors.Nodes;
using Tsp.Actors.Protocol;
using Tsp.Actors.Storage;
using Tsp.Actors.Telemetry;
using Tsp.Actors.Workflows;
using Tsp.Actors.Workflows.Admission;
using Tsp.Tests.Shared;
using Xunit;

namespace Tsp.Actors.Tests.Workflows;

/// <summary>Where a run host holds its runs: each move between the tables keeps the frame's lease,
/// the admission turn and the orchestrator's counts in step. Real Redis behind the frame leases.</summary>
public sealed class RunTablesTests : IAsyncLifetime
{
    private readonly string _project = TestServers.Unique("tables");
    private RedisStore _store = null!;
    private RunServices _services = null!;
    private FrameLeases _frames = null!;
    private RunTables _tables = null!;

    public async Task InitializeAsync()
    {
        _store = await RedisStore.ConnectAsync(TestServers.Redis);
        var catalog = new WorkflowCatalog();
        catalog.Deploy(WorkflowLoader.Parse($$"""
            project: {{_project}}
            nodes:
              - { id: pre, processor: checksum, role: cpu, queue: q }
            """, "t.yaml", NodeProcessorRegistry.WithBuiltIns().Names));
        _services = new RunServices(catalog, new NodeQueues(), _store, ActorRefs.Nobody);
        _frames = new FrameLeases(_store, (_, _) => { });
        _tables = new RunTables(_services, new RunHostTuning { MaxActiveRuns = 1 }, _frames, NoLogger.Instance);
    }

    public async Task DisposeAsync()
    {
        _services.Active.Dispose();
        await _store.DisposeAsync();
    }

    private static StartRun Start(string runId, string project) => new()
    {
        RunId = runId,
        Project = project,
        FrameKey = RedisKeys.Frames(project, runId),
        FrameLength = 1,
    };

    private void Queue(StartRun start)
    {
        _frames.Hold(start.FrameKey);
        _tables.Admission.Enqueue(start, "hash", out var opened);
        opened?.Written();
        _tables.CountQueued(1);
    }

    [Fact]
    public void A_snapshot_restores_the_finished_runs_and_the_highest_kafka_offsets_in_either_format()
    {
        var prefix = KafkaRunId.Prefix(_project, 3);
        var snapshot = new RunHostSnapshot
        {
            // A snapshot written before hashes: the finished ids themselves, whose offsets count too.
            FinishedRunIds = { "old-run", KafkaRunId.Of(prefix, 7) },
            HighestOffsets = { [prefix] = 42 },
        };
        var remembered = TspTracing.RunHash("new-run");
        snapshot.FinishedRunKeys.Add((ulong)(remembered >> 64));
        snapshot.FinishedRunKeys.Add((ulong)remembered);

        new RunRecovery(_tables).Restore(snapshot);

        Assert.True(_tables.Admission.Finished.Contains("old-run"));
        Assert.True(_tables.Admission.Finished.Contains("new-run"));
        Assert.True(_tables.Admission.Finished.Contains(KafkaRunId.Of(prefix, 7)));
        Assert.False(_tables.Admission.Finished.Contains("never-run"));
        Assert.Equal(42, _tables.Admission.HighestOffset(prefix));
        Assert.Equal(-1, _tables.Admission.HighestOffset(KafkaRunId.Prefix(_project, 4)));
    }

    [Fact]
    public void A_published_run_gives_up_its_turn_at_once_and_its_frame_place_and_state_once_forgotten()
    {
        var start = Start("r1", _project);
        _frames.Hold(start.FrameKey);
        Assert.True(_services.Catalog.TryGet(_project, out var workflow));
        var run = _tables.Add(RunState.Start(workflow, StartedGroups.NewStarted(start, "hash")));
        Assert.False(_tables.HasRoom);

        run.Apply(run.State.Cancel(1, "ended"));
        Assert.NotEmpty(run.Events);
        _tables.MarkPublished(run);

        Assert.True(_tables.HasRoom);
        Assert.Equal((0, 1, 1L), (_tables.Active, _tables.PublishedUnmarked, _services.Active.Count));

        _tables.Forget(run);

        Assert.Empty(_tables.Live);
        Assert.Equal((0, 0L, 0), (_tables.PublishedUnmarked, _services.Active.Count, _frames.UsersOf(start.FrameKey)));
        Assert.True(_tables.Admission.Finished.Contains("r1"));
        // Let go of: a forgotten run in an older generation would keep them through young collections.
        Assert.Empty(run.Events);
        Assert.Equal("r1", run.RunId);
        Assert.Throws<InvalidOperationException>(() => run.State);
    }

    [Fact]
    public void A_cancel_takes_a_queued_run_of_a_project_not_deployed_here_through_waiting_to_its_end()
    {
        Queue(Start("r2", "gone"));

        var run = _tables.TakeToEnd("r2");

        Assert.NotNull(run);
        Assert.Empty(run.State.Workflow.Nodes);
        Assert.Same(run, _tables.Live["r2"]);
        Assert.Empty(_tables.Waiting);
        Assert.Equal((0, 0L, 1L), (_tables.Admission.Count, _services.Active.Queued, _services.Active.Count));
        Assert.Null(_tables.TakeToEnd("unknown"));
    }

    [Fact]
    public void A_mark_found_by_recovery_forgets_the_run_wherever_it_was_put()
    {
        var queued = Start("r3", _project);
        Queue(queued);
        var waiting = Start("r4", "gone");
        _frames.Hold(waiting.FrameKey);
        _tables.Wait(new RunRecord { Started = StartedGroups.NewStarted(waiting, "hash") });

        _tables.Forget("r3");
        _tables.Forget("r4");

        Assert.Equal((0, 0), (_tables.Admission.Count, _tables.Waiting.Count));
        Assert.Equal((0L, 0L), (_services.Active.Count, _services.Active.Queued));
        Assert.Equal((0, 0), (_frames.UsersOf(queued.FrameKey), _frames.UsersOf(waiting.FrameKey)));
        Assert.True(_tables.Admission.Finished.Contains("r3"));
        Assert.True(_tables.Admission.Finished.Contains("r4"));
    }
}
