using System.Collections.Concurrent;
using System.Diagnostics;
using Xunit.Abstractions;

using Tsp.Tests.Shared;

namespace Tsp.Integration.Tests;

/// <summary>TSP executables started by a test, with their output kept line by line; every process
/// is killed (by its tree) when the test ends.</summary>
public sealed class ChildProcesses(ITestOutputHelper output) : IDisposable
{
    private readonly List<ChildProcess> _started = [];

    public IReadOnlyList<ChildProcess> Started => _started;

    /// <param name="dll">An executable of the solution, copied beside the tests (e.g. Tsp.Seed.dll).</param>
    public ChildProcess Start(string dll, params string[] args) => Start(new Dictionary<string, string>(), dll, args);

    /// <param name="environment">Variables set for the child only (e.g. Tsp__Cluster__StableAfter).</param>
    public ChildProcess Start(IReadOnlyDictionary<string, string> environment, string dll, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet", [Path.Combine(AppContext.BaseDirectory, dll), .. args])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        UseAnyFreeHttpPort(start);
        foreach (var (name, value) in environment)
        {
            start.Environment[name] = value;
        }

        var process = Process.Start(start)!;
        var child = new ChildProcess(Path.GetFileNameWithoutExtension(dll), process, output);
        _started.Add(child);
        return child;
    }

    /// <summary>Runs the status verb against a member until its output satisfies <paramref name="until"/> (at most 90 s).</summary>
    /// <param name="environment">Variables for the status process (e.g. its TLS certificate).</param>
    public async Task<string> StatusAsync(int port, Func<string, bool> until, IReadOnlyDictionary<string, string>? environment = null)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var status = Start(environment ?? new Dictionary<string, string>(), "Tsp.Seed.dll", "status", "--seed", $"127.0.0.1:{port}");
            Assert.True(status.Process.WaitForExit(60_000), "status did not finish");
            status.Process.WaitForExit();
            var text = string.Join('\n', status.Lines);
            if (status.Process.ExitCode == 0 && until(text))
            {
                return text;
            }

            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(90), $"the status of 127.0.0.1:{port} did not reach what the test waits for:\n{text}");
        }
    }

    /// <summary>Two orchestrators on one fresh PostgreSQL journal (the first is the seed) and a gpu,cpu worker;
    /// returns once all three are Up and reachable and <paramref name="gpuQueue"/> has routees. Three members,
    /// so that keep-majority lets two survivors down the third.</summary>
    /// <param name="grpcPorts">The gRPC port of each orchestrator; -1 for none.</param>
    public Task<OrchestratorPair> StartOrchestratorPairAsync(string workflow, string kafka, string gpuQueue, (int First, int Second) grpcPorts) =>
        StartOrchestratorPairAsync([workflow], kafka, gpuQueue, grpcPorts);

    /// <param name="workflows">Workflow files both orchestrators deploy.</param>
    public async Task<OrchestratorPair> StartOrchestratorPairAsync(IReadOnlyList<string> workflows, string kafka, string gpuQueue, (int First, int Second) grpcPorts)
    {
        var journal = await Tsp.Tests.Shared.TestServers.CreatePostgresDatabaseAsync();
        var (firstPort, secondPort) = (TestPorts.Free(), TestPorts.Free());
        string[] Orchestrator(int port, int grpc, params string[] more) =>
            ["run", "--port", Port(port), "--grpc-port", Port(grpc), "--redis", Tsp.Tests.Shared.TestServers.Redis, "--kafka", kafka, "--postgres", journal, .. workflows.SelectMany(w => new[] { "--workflow", w }), .. more];
        var first = Start("Tsp.Seed.dll", Orchestrator(firstPort, grpcPorts.First));
        await first.WaitForLineAsync(l => l.StartsWith("cluster: ", StringComparison.Ordinal), TimeSpan.FromSeconds(90));
        var second = Start("Tsp.Seed.dll", Orchestrator(secondPort, grpcPorts.Second, "--roles", "orchestrator", "--seed", $"127.0.0.1:{firstPort}"));
        var worker = Start("Tsp.GpuNode.dll", "--seed", $"127.0.0.1:{firstPort}", "--port", Port(TestPorts.Free()), "--roles", "gpu,cpu", "--redis", Tsp.Tests.Shared.TestServers.Redis);
        await StatusAsync(firstPort, text =>
            System.Text.RegularExpressions.Regex.Count(text, "  Up  reachable  ") == 3 && text.Contains($"{gpuQueue} (gpu)  routees=", StringComparison.Ordinal) && !text.Contains($"{gpuQueue} (gpu)  routees=0", StringComparison.Ordinal));
        foreach (var (orchestrator, grpc) in new[] { (first, grpcPorts.First), (second, grpcPorts.Second) }.Where(o => o.Item2 >= 0))
        {
            await orchestrator.WaitForLineAsync(l => l.StartsWith("grpc: ", StringComparison.Ordinal), TimeSpan.FromSeconds(90));
        }

        return new OrchestratorPair(first, second, worker, firstPort, secondPort, journal);
    }

    /// <summary>Tsp.Seed's operations port is 8080 by default: processes of one test, and of tests one
    /// after the other, would take it from each other. A flag or an environment the test sets still wins.</summary>
    public static void UseAnyFreeHttpPort(ProcessStartInfo start) => start.Environment["Tsp__Http__Port"] = "0";

    public static string Port(int port) => port.ToString(System.Globalization.CultureInfo.InvariantCulture);

    public void Dispose()
    {
        foreach (var child in _started)
        {
            child.Dispose();
        }
    }
}

public sealed class ChildProcess : IDisposable
{
    private readonly ConcurrentQueue<string> _lines = new();
    private readonly ITestOutputHelper _output;
    private readonly string _name;

    internal ChildProcess(string name, Process process, ITestOutputHelper output)
    {
        _name = name;
        Process = process;
        _output = output;
        process.OutputDataReceived += (_, e) => Add(e.Data);
        process.ErrorDataReceived += (_, e) => Add(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public Process Process { get; }

    /// <summary>Sends a signal (STOP, CONT, TERM…) to the process.</summary>
    public void Signal(string signal) => Signal(Process, signal);

    /// <summary>Sends a signal (STOP, CONT, TERM…) to <paramref name="process"/>.</summary>
    public static void Signal(Process process, string signal)
    {
        using var kill = Process.Start("kill", [$"-{signal}", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        kill.WaitForExit();
    }

    public IReadOnlyCollection<string> Lines => _lines;

    /// <summary>The first line that matches, waiting for it; fails if the process exits or time runs out.</summary>
    public async Task<string> WaitForLineAsync(Func<string, bool> match, TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (_lines.FirstOrDefault(match) is { } line)
            {
                return line;
            }

            Assert.False(Process.HasExited, $"{_name} exited with {(Process.HasExited ? Process.ExitCode : 0)} before printing the expected line");
            Assert.True(deadline.Elapsed < timeout, $"{_name} did not print the expected line within {timeout.TotalSeconds} s");
            await Task.Delay(50);
        }
    }

    private void Add(string? line)
    {
        if (line is null)
        {
            return;
        }

        _lines.Enqueue(line);
        if (line.Contains("WARN", StringComparison.OrdinalIgnoreCase) || line.Contains("ERROR", StringComparison.OrdinalIgnoreCase) || line.Contains("routee", StringComparison.Ordinal)
            || line.Contains("kafka", StringComparison.Ordinal) || line.Contains("run host", StringComparison.Ordinal))
        {
            try
            {
                _output.WriteLine($"[{_name}] {line}");
            }
            catch (InvalidOperationException)
            {
                // The test has finished; its output is closed.
            }
        }
    }

    public void Dispose()
    {
        if (!Process.HasExited)
        {
            Process.Kill(entireProcessTree: true);
            Process.WaitForExit(10_000);
        }

        Process.Dispose();
    }
}

/// <param name="FirstPort">The first orchestrator's remoting port (the seed).</param>
/// <param name="Journal">The PostgreSQL connection string both orchestrators journal to.</param>
public sealed record OrchestratorPair(ChildProcess First, ChildProcess Second, ChildProcess Worker, int FirstPort, int SecondPort, string Journal);
