using Tsp.Actors.Ingest;
using Xunit;

namespace Tsp.Actors.Tests.Ingest;

public sealed class InFlightRunsTests
{
    [Fact]
    public void A_run_holds_one_slot_however_often_it_is_acquired_and_frees_it_once()
    {
        using var slots = new InFlightRuns<string>(2);

        Assert.True(slots.TryAcquire("a"));
        Assert.True(slots.TryAcquire("a"));
        Assert.True(slots.TryAcquire("b"));
        Assert.False(slots.TryAcquire("c"));
        Assert.Equal((2, 2), (slots.Count, slots.Peak));

        slots.Release("a");
        slots.Release("a");
        slots.Release("unknown");

        Assert.Equal(1, slots.Count);
        Assert.True(slots.TryAcquire("c"));
        Assert.False(slots.TryAcquire("d"));
        Assert.Equal((2, 2), (slots.Count, slots.Peak));
    }

    [Fact]
    public void A_batch_takes_slots_in_order_until_none_is_free_and_runs_holding_one_pass()
    {
        using var slots = new InFlightRuns<(int, long)>(3);
        Assert.Equal(2, slots.TryAcquireAll([(0, 1), (0, 2)]));

        // (0, 2) holds its slot already; (0, 3) takes the last; (1, 1) finds none, and nothing after it is taken.
        Assert.Equal(2, slots.TryAcquireAll([(0, 2), (0, 3), (1, 1), (0, 1)]));
        Assert.Equal((3, 3), (slots.Count, slots.Peak));
        Assert.Equal(1, slots.TryAcquireAll([(0, 1), (1, 1)]));

        slots.Release((0, 2));
        Assert.Equal(2, slots.TryAcquireAll([(1, 1), (0, 3), (1, 2)]));
        Assert.Equal(0, slots.TryAcquireAll([]));
    }

    [Fact]
    public async Task Waiting_for_a_slot_ends_with_an_error_when_ingest_stops()
    {
        using var stopping = new CancellationTokenSource();
        using var slots = new InFlightRuns<string>(1);
        Assert.True(slots.TryAcquire("a"));

        var waiting = slots.AcquireAsync("b", stopping.Token);
        await stopping.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(1, slots.Count);
    }

    [Fact]
    public async Task Waiting_for_a_slot_ends_when_a_run_is_released()
    {
        using var slots = new InFlightRuns<string>(1);
        Assert.True(slots.TryAcquire("a"));

        var waiting = slots.AcquireAsync("b", CancellationToken.None);
        Assert.False(waiting.IsCompleted);
        slots.Release("a");

        await waiting.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(1, slots.Count);
        Assert.False(slots.TryAcquire("c"));
    }

    [Fact]
    public async Task Acquiring_and_releasing_from_many_threads_keeps_the_count_and_the_bound()
    {
        const int Max = 8;
        using var slots = new InFlightRuns<string>(Max);
        var workers = Enumerable.Range(0, 4).Select(worker => Task.Run(async () =>
        {
            for (var i = 0; i < 2000; i++)
            {
                var runId = $"{worker}-{i}";
                await slots.AcquireAsync(runId, CancellationToken.None);
                Assert.InRange(slots.Count, 1, Max);
                slots.Release(runId);
            }
        }));

        await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(60));

        Assert.Equal(0, slots.Count);
        Assert.InRange(slots.Peak, 1, Max);
        Assert.All(Enumerable.Range(0, Max), i => Assert.True(slots.TryAcquire($"x{i}")));
        Assert.False(slots.TryAcquire("one-too-many"));
    }
}
