using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Tsp.Actors.Hosting;

using Tsp.Tests.Shared;

namespace Tsp.Integration.Tests;

/// <summary>A redis-server of one test's own, on a free loopback port with its data in a temporary
/// folder, that the test can restart, kill or freeze (SIGSTOP: connections stay open and hang, as
/// behind a network partition) while TSP processes use it.</summary>
public sealed class RedisServerProcess : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("tsp-redis-").FullName;
    private readonly bool _appendOnly;
    private Process? _process;

    private RedisServerProcess(bool appendOnly)
    {
        _appendOnly = appendOnly;
        Port = TestPorts.Free();
    }

    public int Port { get; }

    public string Endpoint => $"127.0.0.1:{Port}";

    /// <param name="appendOnly">AOF on (fsync every second), as deployments run it; off: a restart loses everything.</param>
    public static async Task<RedisServerProcess> StartAsync(bool appendOnly)
    {
        var server = new RedisServerProcess(appendOnly);
        await server.StartAsync();
        return server;
    }

    /// <summary>Starts the server (again) on the same port and folder; returns once it answers PING
    /// (after loading its AOF).</summary>
    public async Task StartAsync()
    {
        _process = Process.Start(new ProcessStartInfo("redis-server",
        [
            "--port", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--dir", _folder,
            "--save", "", "--appendonly", _appendOnly ? "yes" : "no", "--appendfsync", "everysec", "--daemonize", "no",
        ])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        var deadline = Stopwatch.StartNew();
        while (!await AnswersPingAsync())
        {
            if (_process.HasExited || deadline.Elapsed > TimeSpan.FromSeconds(30))
            {
                throw new InvalidOperationException($"redis-server on {Endpoint} did not start (exit {(_process.HasExited ? _process.ExitCode : -1)})");
            }

            await Task.Delay(50);
        }
    }

    /// <summary>SIGTERM: Redis flushes its AOF and exits.</summary>
    public async Task StopAsync()
    {
        Signal("TERM");
        await _process!.WaitForExitAsync();
    }

    /// <summary>SIGKILL: whatever was not yet fsynced is gone.</summary>
    public async Task KillAsync()
    {
        _process!.Kill();
        await _process.WaitForExitAsync();
    }

    /// <summary>SIGSTOP: the port stays open, every command hangs until <see cref="Resume"/>.</summary>
    public void Freeze() => Signal("STOP");

    public void Resume() => Signal("CONT");

    public void Dispose()
    {
        if (_process is { HasExited: false })
        {
            Signal("CONT");
            _process.Kill();
            _process.WaitForExit();
        }

        _process?.Dispose();
        Directory.Delete(_folder, recursive: true);
    }

    private void Signal(string signal) => ChildProcess.Signal(_process!, signal);

    private async Task<bool> AnswersPingAsync()
    {
        try
        {
            using var client = new TcpClient();
            await client.ConnectAsync("127.0.0.1", Port);
            var stream = client.GetStream();
            await stream.WriteAsync(Encoding.ASCII.GetBytes("PING\r\n"));
            var buffer = new byte[64];
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            var read = await stream.ReadAsync(buffer, timeout.Token);
            // "-LOADING ..." while the AOF is read back.
            return Encoding.ASCII.GetString(buffer, 0, read).StartsWith("+PONG", StringComparison.Ordinal);
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException)
        {
            return false;
        }
    }
}
