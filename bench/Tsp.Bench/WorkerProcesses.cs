using System.Diagnostics;
using System.Globalization;

namespace Tsp.Bench;

/// <summary>Tsp.GpuNode worker processes joined to a bench orchestrator; all leave on dispose.</summary>
/// <param name="environment">Settings for every worker as environment variables (Tsp__Cluster__StableAfter, …).</param>
internal sealed class WorkerProcesses(string seed, string redis, string roles, IReadOnlyDictionary<string, string>? environment = null) : IAsyncDisposable
{
    private readonly List<Process> _running = [];

    public IReadOnlyList<Process> Running => _running;

    public Process Start()
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "Tsp.GpuNode.dll");
        var start = new ProcessStartInfo("dotnet", [dll, "--seed", seed, "--port", "0", "--roles", roles, "--redis", redis])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[name] = value;
        }

        var process = Process.Start(start)!;
        // Drained so a chatty worker never blocks on a full pipe; errors are shown.
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is { Length: > 0 })
            {
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  [worker {process.Id}] {e.Data}"));
            }
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _running.Add(process);
        return process;
    }

    /// <summary>kill -9: the member leaves no goodbye; the cluster must notice.</summary>
    public void Kill(Process process)
    {
        process.Kill(entireProcessTree: true);
        process.WaitForExit();
        _running.Remove(process);
        process.Dispose();
    }

    /// <summary>SIGTERM: the worker drains what it holds and leaves the cluster, then exits.</summary>
    public async Task StopAsync(Process process)
    {
        using (var term = Process.Start("kill", ["-TERM", process.Id.ToString(CultureInfo.InvariantCulture)]))
        {
            await term.WaitForExitAsync();
        }

        using var patience = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try
        {
            await process.WaitForExitAsync(patience.Token);
            _running.Remove(process);
            process.Dispose();
        }
        catch (OperationCanceledException)
        {
            Kill(process);
        }
    }

    /// <summary>Workers still running leave gracefully, so the orchestrator is not left calling dead members.</summary>
    public async ValueTask DisposeAsync()
    {
        await Task.WhenAll(_running.ToList().Select(StopAsync));
    }
}
