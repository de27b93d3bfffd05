using Tsp.Actors.Storage;

namespace Tsp.Bench;

/// <summary>What a bench leaves in Redis: nothing of its projects. Each repeat makes a new project, and
/// its results log and run markers (kept a week in a deployment) would pile up over bench runs and slow
/// every scan of that server, the test suite's included.</summary>
internal static class BenchRedis
{
    public static async Task DeleteProjectAsync(string? redis, string project)
    {
        if (string.IsNullOrEmpty(redis))
        {
            return;
        }

        await using var store = await RedisStore.ConnectAsync(redis);
        foreach (var server in store.Connection.GetEndPoints().Select(e => store.Connection.GetServer(e)).Where(s => !s.IsReplica))
        {
            foreach (var pattern in RedisKeys.ProjectPatterns(project))
            {
                var keys = new List<string>();
                await foreach (var key in server.KeysAsync(pattern: pattern, pageSize: 1000))
                {
                    keys.Add(key.ToString());
                }

                foreach (var chunk in keys.Chunk(1000))
                {
                    await store.DeleteBlobsAsync(chunk);
                }
            }
        }
    }
}
