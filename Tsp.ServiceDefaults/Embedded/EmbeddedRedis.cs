using System.Net;
using System.Net.Sockets;
using Garnet;
using Garnet.server;

namespace Tsp.ServiceDefaults.Embedded;

/// <summary>
/// Microsoft Garnet in this process, speaking the Redis protocol on loopback: standalone mode's
/// data plane when no Redis is configured. Memory is kept small; nothing is persisted to disk.
/// </summary>
public sealed class EmbeddedRedis : IDisposable
{
    private readonly GarnetServer _server;

    private EmbeddedRedis(GarnetServer server, IPEndPoint endPoint)
    {
        _server = server;
        EndPoint = endPoint;
    }

    public IPEndPoint EndPoint { get; }

    public string ConnectionString => $"{EndPoint.Address}:{EndPoint.Port}";

    /// <param name="port">0 picks a free port.</param>
    public static EmbeddedRedis Start(int port = 0)
    {
        if (port == 0)
        {
            using var probe = new TcpListener(IPAddress.Loopback, 0);
            probe.Start();
            port = ((IPEndPoint)probe.LocalEndpoint).Port;
            probe.Stop();
        }

        var endPoint = new IPEndPoint(IPAddress.Loopback, port);
        var server = new GarnetServer(new GarnetServerOptions
        {
            EndPoints = [endPoint],
            QuietMode = true,
            LogMemorySize = "256m",
            IndexMemorySize = "16m",
            // The results log appends with a script (see RedisStore).
            EnableLua = true,
            LuaOptions = new LuaOptions(logger: null),
        });
        server.Start();
        return new EmbeddedRedis(server, endPoint);
    }

    public void Dispose() => _server.Dispose();
}
