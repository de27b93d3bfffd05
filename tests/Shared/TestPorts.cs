using System.Net;
using System.Net.Sockets;

namespace Tsp.Tests.Shared;

/// <summary>
/// Ports for the servers and child processes a test starts. Port 0's answer comes from the kernel's
/// ephemeral range, the one every outbound connection (Redis, Kafka, remoting) also takes its local
/// port from: under load a port found free was now and then taken by such a connection before the
/// child bound it, and the child exited "address already in use". These come from below that range
/// (20000–32767), each handed out once per test process, and are checked free when handed out.
/// </summary>
public static class TestPorts
{
    private const int First = 20_000;
    private const int Last = 32_767;
    private static int _next = First + (Environment.ProcessId % (Last - First));

    public static int Free()
    {
        for (var tries = 0; tries < Last - First; tries++)
        {
            var port = First + ((Interlocked.Increment(ref _next) - First) % (Last - First));
            try
            {
                using var probe = new TcpListener(IPAddress.Loopback, port);
                probe.Start();
                return port;
            }
            catch (SocketException)
            {
                // Taken: try the next one.
            }
        }

        throw new InvalidOperationException($"no free port from {First} to {Last}");
    }
}
