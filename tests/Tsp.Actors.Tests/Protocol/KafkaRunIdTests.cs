using Tsp.Actors.Protocol;
using Tsp.Actors.Workflows;

namespace Tsp.Actors.Tests.Protocol;

public sealed class KafkaRunIdTests
{
    [Theory]
    [InlineData("tsp.p.frames-3-17", "tsp.p.frames-3-", 17L)]
    [InlineData("a-0", "a-", 0L)]
    [InlineData("my-proj-x-9-123456789012345", "my-proj-x-9-", 123456789012345L)]
    public void A_run_id_of_the_series_form_splits_into_its_prefix_and_offset_and_back(string runId, string prefix, long offset)
    {
        Assert.True(KafkaRunId.TryParse(runId, out var parsedPrefix, out var parsedOffset));
        Assert.Equal((prefix, offset), (parsedPrefix.ToString(), parsedOffset));
        Assert.Equal(runId, KafkaRunId.Of(prefix, offset));
    }

    [Theory]
    [InlineData("abc")]
    [InlineData("abc-")]
    [InlineData("abc-07")]
    [InlineData("abc-+7")]
    [InlineData("abc-7x")]
    [InlineData("abc-1234567890123456789")]
    [InlineData("0f8e2b6c9d")]
    public void Other_run_ids_are_not_of_the_series_form(string runId) =>
        Assert.False(KafkaRunId.TryParse(runId, out _, out _));

    [Fact]
    public void A_series_run_hashes_to_the_host_its_run_id_string_does()
    {
        var random = new Random(7);
        Span<byte> buffer = stackalloc byte[256];
        foreach (var topic in new[] { "tsp.p.frames", "tsp.my-project.frames" })
        {
            for (var i = 0; i < 500; i++)
            {
                var (partition, offset) = (random.Next(0, 64), random.NextInt64(0, long.MaxValue / 1000));
                var prefix = KafkaRunId.Prefix(topic, partition);
                var length = KafkaRunId.WriteUtf8(buffer, System.Text.Encoding.UTF8.GetBytes(prefix, buffer), offset);
                Assert.Equal(RunMessageExtractor.HostOf(KafkaRunId.Of(topic, partition, offset), 8), RunMessageExtractor.HostOfUtf8(buffer[..length], 8));
            }
        }
    }

    [Theory]
    [InlineData("tsp.my-project.frames-3-17", true, 3, 17L)]
    [InlineData("tsp.my-project.frames-0-0", true, 0, 0L)]
    [InlineData("tsp.other.frames-3-17", false, 0, 0L)]
    [InlineData("tsp.my-project.frames-03-17", false, 0, 0L)]
    [InlineData("tsp.my-project.frames-3", false, 0, 0L)]
    [InlineData("x-tsp.my-project.frames-3-17", false, 0, 0L)]
    [InlineData("0f8e2b6c9d", false, 0, 0L)]
    public void A_result_names_the_record_of_its_run_only_for_the_projects_topic(string runId, bool parses, int partition, long offset)
    {
        Assert.Equal(parses, KafkaRunId.TryParse(runId, "tsp.my-project.frames", out var p, out var o));
        if (parses)
        {
            Assert.Equal((partition, offset), (p, o));
            Assert.Equal(runId, KafkaRunId.Of("tsp.my-project.frames", p, o));
        }
    }
}
