using Tsp.Actors.Storage;
using Tsp.Tests.Shared;

namespace Tsp.Actors.Tests.Storage;

public sealed class FrameLeasesTests
{
    [Fact]
    public async Task A_frame_string_is_deleted_when_the_last_run_that_holds_it_releases_it()
    {
        await using var store = await RedisStore.ConnectAsync(TestServers.Redis);
        var failures = new List<string>();
        var leases = new FrameLeases(store, (key, reason) => failures.Add($"{key}: {reason}"));
        var shared = RedisKeys.Frames(TestServers.Unique("leases"), "a");
        var alone = RedisKeys.Frames(TestServers.Unique("leases"), "b");
        await FrameLeases.WriteAsync(store, shared, new byte[] { 1, 2, 3 });
        await FrameLeases.WriteAsync(store, alone, new byte[] { 4 });

        leases.Hold(shared, 2);
        leases.Hold(shared);
        leases.Hold(alone);
        Assert.Equal((3, 1, 2), (leases.UsersOf(shared), leases.UsersOf(alone), leases.Count));

        Assert.False(leases.Release(shared));
        Assert.False(leases.Release(shared));
        Assert.True(leases.Release(alone));
        Assert.True(await store.BlobExistsAsync(shared), "a frame string still held was deleted");
        Assert.True(leases.Release(shared));
        Assert.False(leases.Release(shared), "a released string was released twice");

        await AwaitAsync(async () => !await store.BlobExistsAsync(shared) && !await store.BlobExistsAsync(alone));
        Assert.Empty(failures);
        Assert.Equal(0, leases.Count);
    }

    private static async Task AwaitAsync(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "the frame strings were not deleted within 30 s");
            await Task.Delay(20);
        }
    }
}
