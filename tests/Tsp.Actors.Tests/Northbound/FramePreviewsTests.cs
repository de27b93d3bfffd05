using Tsp.Actors.Northbound;
using Xunit;

namespace Tsp.Actors.Tests.Northbound;

public sealed class FramePreviewsTests
{
    [Fact]
    public void One_preview_per_project_and_interval_however_many_hosts_ask_at_once()
    {
        var previews = new FramePreviews(TimeSpan.FromHours(1));
        var due = new int[2];

        // The run hosts of one orchestrator share it and ask from their own threads.
        Parallel.For(0, 4000, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
        {
            if (previews.IsDue(i % 2 == 0 ? "rail" : "turbine"))
            {
                Interlocked.Increment(ref due[i % 2]);
            }
        });

        Assert.Equal([1, 1], due);
    }

    [Fact]
    public void A_project_is_due_again_once_its_interval_has_passed()
    {
        var previews = new FramePreviews(TimeSpan.Zero);

        Assert.True(previews.IsDue("rail"));
        Assert.True(previews.IsDue("rail"));
    }
}
