using System.Net;
using System.Net.Sockets;
using StackExchange.Redis;
using Tsp.ServiceDefaults.Embedded;

namespace Tsp.Actors.Tests.Storage;

/// <summary>Standalone mode's Garnet: ready when <see cref="EmbeddedRedis.Start"/> returns, and a clear
/// error when it cannot be.</summary>
public sealed class EmbeddedRedisTests
{
    [Fact]
    public async Task A_started_server_answers_its_first_client_at_once()
    {
        using var server = EmbeddedRedis.Start();
        var config = ConfigurationOptions.Parse(server.ConnectionString);
        // One attempt: a server still starting would fail it, which Start is there to prevent.
        config.ConnectRetry = 1;
        await using var client = await ConnectionMultiplexer.ConnectAsync(config);

        Assert.Equal("PONG", (await client.GetDatabase().ExecuteAsync("PING")).ToString());
    }

    [Fact]
    public void A_port_another_socket_listens_on_is_named_in_the_error()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;

        var error = Assert.Throws<InvalidOperationException>(() => EmbeddedRedis.Start(port));

        Assert.Contains($"127.0.0.1:{port}", error.Message);
    }
}
