using Tsp.Actors.Storage;

namespace Tsp.Actors.Tests.Storage;

/// <summary>Against an embedded server of its own, so a scan sees only this test's keys, whatever a
/// shared Redis holds.</summary>
public sealed class RedisKeysTests(EmbeddedRedisFixture garnet) : IClassFixture<EmbeddedRedisFixture>
{
    private static IEnumerable<string> EveryKeyOf(string project) =>
    [
        RedisKeys.Frames(project, "batch-1"),
        RedisKeys.NodeOutput(project, "run-1", "pre"),
        RedisKeys.Results(project),
        RedisKeys.ResultPosition(project, "run-1"),
        RedisKeys.ResultsSequence(project),
        RedisKeys.Preview(project, "run-1"),
        RedisKeys.DeadFrame(project, "run-1"),
        RedisKeys.DeadLettersSequence(project),
        RedisKeys.RedrivenFrom(project, "run-1"),
        RedisKeys.DeadLetters(project),
    ];

    [Fact]
    public async Task A_projects_patterns_find_every_key_of_the_project_and_none_of_a_project_named_like_it()
    {
        var project = $"keys-{Guid.NewGuid():N}"[..16];
        var neighbours = new[] { project + "0", project + "-x", project[..^1] };
        await using var store = await RedisStore.ConnectAsync(garnet.Server.ConnectionString);
        var all = new[] { project }.Concat(neighbours).SelectMany(EveryKeyOf).ToList();
        foreach (var key in all)
        {
            await store.PutBlobAsync(key, new byte[] { 1 });
        }

        try
        {
            var server = store.Connection.GetServer(store.Connection.GetEndPoints()[0]);
            var found = new List<string>();
            foreach (var pattern in RedisKeys.ProjectPatterns(project))
            {
                await foreach (var key in server.KeysAsync(pattern: pattern, pageSize: 1000))
                {
                    found.Add(key.ToString());
                }
            }

            Assert.Equal(EveryKeyOf(project).Order(StringComparer.Ordinal), found.Order(StringComparer.Ordinal));
        }
        finally
        {
            await store.DeleteBlobsAsync(all);
        }
    }
}
