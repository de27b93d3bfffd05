using System.Diagnostics;
using System.Globalization;

namespace Tsp.Bench;

/// <summary>Tsp.GpuNode worker processes joined to a bench orchestrator; all are killed on dispose.</summary>
internal sealed class WorkerProcesses(string seed, string redis, string roles) : IDisposable
{
    private readonly List<Process> _running = [];

    public IReadOnlyList<Process> Running => _running;

    public Process Start()
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "Tsp.GpuNode.dll");
        var process = Process.Start(new ProcessStartInfo("dotnet", [dll, "--seed", seed, "--port", "0", "--roles", roles, "--redis", redis])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = AppContext.BaseDirectory,
        })!;
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

    public void Dispose()
    {
        foreach (var process in _running.ToList())
        {
            Kill(process);
        }
    }
}
