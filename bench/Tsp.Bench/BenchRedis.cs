using Tsp.Actors.Storage;

namespace Tsp.Bench;

/// <summary>What a bench leaves in Redis: nothing of its projects. Each repeat makes a new project, and
/// its results log and run markers (kept a week in a deployment) would pile up over bench runs and slow
/// every scan of that server, the test suite's included.</summary>
internal static class BenchRedis
{
    private const int PageSize = 1000;

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
                // A page at a time (SCAN tolerates deletes between pages): the bench shares its process with
                // the orchestrator it measures, and a list of every key (~140,000 after a repeat) grew into
                // large-object arrays that, dead, kept their strings alive into the next measured repeat,
                // where a gen1 collection copied them (24 MB, 40 ms).
                var page = new List<string>(PageSize);
                await foreach (var key in server.KeysAsync(pattern: pattern, pageSize: PageSize))
                {
                    page.Add(key.ToString());
                    if (page.Count == PageSize)
                    {
                        await store.DeleteBlobsAsync(page);
                        page.Clear();
                    }
                }

                if (page.Count > 0)
                {
                    await store.DeleteBlobsAsync(page);
                }
            }
        }
    }
}
