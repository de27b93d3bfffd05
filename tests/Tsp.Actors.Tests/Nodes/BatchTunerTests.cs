using Tsp.Actors.Nodes.Onnx;

namespace Tsp.Actors.Tests.Nodes;

/// <summary>The batch tuner driven by simulated devices: a batch's compute time is a function of its
/// rows, so the right choice is known.</summary>
public sealed class BatchTunerTests
{
    /// <summary>Like this CPU: a batch costs a little more per row than single rows.</summary>
    private static double Cpu(int rows) => rows * 1.0 * (1 + (0.05 * Math.Log2(rows)));

    /// <summary>Like a GPU: a launch costs most, rows little.</summary>
    private static double Gpu(int rows) => 4.0 + (0.1 * rows);

    /// <summary>Serves <paramref name="batches"/> batches with <paramref name="waiting"/> requests waiting
    /// behind each one; returns the limits used.</summary>
    private static List<int> Serve(BatchTuner tuner, Func<int, double> device, int batches, int waiting)
    {
        var limits = new List<int>();
        for (var i = 0; i < batches; i++)
        {
            var (limit, _) = tuner.Next(waiting);
            var rows = Math.Min(limit, waiting + 1);
            tuner.Record(rows, device(rows));
            limits.Add(limit);
        }

        return limits;
    }

    [Fact]
    public void On_a_device_where_batches_cost_more_per_row_it_chooses_single_rows_and_no_delay()
    {
        var tuner = new BatchTuner(8, TimeSpan.FromMilliseconds(5), TimeSpan.Zero, adaptive: true);

        Serve(tuner, Cpu, 200, waiting: 50);

        Assert.Equal(1, tuner.Choice.Limit);
        Assert.Equal(TimeSpan.Zero, tuner.Choice.Delay);
        Assert.Equal([1, 2, 4, 8], tuner.Choice.Costs.Select(c => c.Rows));
    }

    [Fact]
    public void On_a_device_where_rows_are_cheap_it_chooses_the_largest_batch_and_the_configured_delay()
    {
        var tuner = new BatchTuner(12, TimeSpan.FromMilliseconds(5), TimeSpan.Zero, adaptive: true);

        Serve(tuner, Gpu, 200, waiting: 50);

        // The candidates are the powers of two below the maximum, and the maximum.
        Assert.Equal([1, 2, 4, 8, 12], tuner.Choice.Costs.Select(c => c.Rows));
        Assert.Equal(12, tuner.Choice.Limit);
        Assert.Equal(TimeSpan.FromMilliseconds(5), tuner.Choice.Delay);
    }

    [Fact]
    public void A_latency_budget_rules_out_batches_that_would_take_longer()
    {
        // A batch of 8 takes 4.8 ms plus the 1 ms delay; of 4, 4.4 + 1: only 4 fits 5.5 ms.
        var tuner = new BatchTuner(8, TimeSpan.FromMilliseconds(1), TimeSpan.FromMilliseconds(5.5), adaptive: true);

        Serve(tuner, Gpu, 200, waiting: 50);

        Assert.Equal(4, tuner.Choice.Limit);
    }

    [Fact]
    public void Once_settled_it_spends_few_batches_trying_other_sizes_and_follows_a_change_of_device()
    {
        var tuner = new BatchTuner(8, TimeSpan.FromMilliseconds(5), TimeSpan.Zero, adaptive: true);
        Serve(tuner, Gpu, 100, waiting: 50);
        Assert.Equal(8, tuner.Choice.Limit);

        var settled = Serve(tuner, Gpu, 6400, waiting: 50);
        var trials = settled.Count(l => l != 8);
        Assert.InRange(trials, 1, 6400 / BatchTuner.ExploreEvery);

        // The same model moved to a device where batching costs: the periodic trials find out.
        Serve(tuner, Cpu, 6400, waiting: 50);
        Assert.Equal(1, tuner.Choice.Limit);
    }

    [Fact]
    public void Under_light_load_it_never_holds_a_request_back_to_try_a_larger_batch()
    {
        var tuner = new BatchTuner(8, TimeSpan.FromMilliseconds(5), TimeSpan.Zero, adaptive: true);

        // One request at a time: only single rows can be measured, and then waiting for company is dropped.
        Serve(tuner, Gpu, 20, waiting: 0);

        Assert.Equal(1, tuner.Choice.Limit);
        Assert.Equal(TimeSpan.Zero, tuner.Next(0).Delay);
    }

    [Fact]
    public void Fixed_batching_always_gathers_up_to_the_maximum_for_the_configured_delay()
    {
        var tuner = new BatchTuner(8, TimeSpan.FromMilliseconds(5), TimeSpan.Zero, adaptive: false);

        Assert.All(Serve(tuner, Cpu, 50, waiting: 50), l => Assert.Equal(8, l));
        Assert.Equal((8, TimeSpan.FromMilliseconds(5)), tuner.Next(0));
        Assert.False(tuner.Choice.Adaptive);
    }
}
