using System.Net;
using System.Net.Sockets;
using System.Text;
using Garnet;
using Garnet.server;

namespace Tsp.ServiceDefaults.Embedded;

/// <summary>
/// Microsoft Garnet in this process, speaking the Redis protocol on loopback: standalone mode's
/// data plane when no Redis is configured. Memory is kept small; nothing is persisted to disk.
/// </summary>
public sealed class EmbeddedRedis : IDisposable
{
    /// <summary>How long a started server has to answer its first PING. Generous: on a loaded
    /// machine the first command also compiles Garnet's request path.</summary>
    private static readonly TimeSpan ReadyWithin = TimeSpan.FromSeconds(30);

    private const int StartAttempts = 3;

    private readonly GarnetServer _server;

    private EmbeddedRedis(GarnetServer server, IPEndPoint endPoint)
    {
        _server = server;
        EndPoint = endPoint;
    }

    public IPEndPoint EndPoint { get; }

    public string ConnectionString => $"{EndPoint.Address}:{EndPoint.Port}";

    /// <summary>Starts a server and returns once it has answered a PING, so the first client does not
    /// race its start.</summary>
    /// <param name="port">0 picks a free port, and picks again should the server not answer there:
    /// the port is free when probed, but another socket may take it before Garnet binds it.</param>
    public static EmbeddedRedis Start(int port = 0)
    {
        for (var attempt = 1; ; attempt++)
        {
            var endPoint = new IPEndPoint(IPAddress.Loopback, port == 0 ? FreePort() : port);
            GarnetServer? server = null;
            try
            {
                server = StartServer(endPoint);
                AwaitPong(endPoint);
                return new EmbeddedRedis(server, endPoint);
            }
            catch (Exception error)
            {
                server?.Dispose();
                if (port == 0 && attempt < StartAttempts)
                {
                    continue;
                }

                throw new InvalidOperationException($"The embedded Redis (Garnet) on {endPoint} did not start: {error.Message}", error);
            }
        }
    }

    public void Dispose() => _server.Dispose();

    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    private static GarnetServer StartServer(IPEndPoint endPoint)
    {
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
        try
        {
            server.Start();
            return server;
        }
        catch
        {
            server.Dispose();
            throw;
        }
    }

    private static void AwaitPong(IPEndPoint endPoint)
    {
        using var client = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp)
        {
            ReceiveTimeout = (int)ReadyWithin.TotalMilliseconds,
            SendTimeout = (int)ReadyWithin.TotalMilliseconds,
        };
        client.Connect(endPoint);
        client.Send("*1\r\n$4\r\nPING\r\n"u8);
        var reply = new byte[64];
        var read = 0;
        while (read < 7 && client.Receive(reply, read, reply.Length - read, SocketFlags.None) is var n and > 0)
        {
            read += n;
        }

        var answer = Encoding.ASCII.GetString(reply, 0, read);
        if (answer != "+PONG\r\n")
        {
            throw new IOException($"PING was answered with '{answer.TrimEnd()}'");
        }
    }
}
