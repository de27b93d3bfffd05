using System.Collections.Concurrent;
using System.Diagnostics;
using Xunit.Abstractions;

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
    public void Signal(string signal)
    {
        using var kill = System.Diagnostics.Process.Start("kill", [$"-{signal}", Process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
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
