using System.Globalization;

namespace Tsp.Bench;

internal sealed record BenchOptions(int Messages, int Size, string Redis, bool Record, int Repeats, int Batch, bool Cuda, int InFlight, string Journal, bool AcceptOnly, int Instances, bool Telemetry = false, bool Traces = false)
{
    public static BenchOptions Parse(string[] args)
    {
        string? Value(string flag) => args.SkipWhile(a => a != flag).Skip(1).FirstOrDefault();
        int Int(string flag, int fallback) => Value(flag) is { } v ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;
        return new BenchOptions(Int("--messages", 5000), Int("--size", 1024), Value("--redis") ?? "127.0.0.1:6379", !args.Contains("--no-record"), Int("--repeats", 3), Int("--batch", 4), args.Contains("--cuda"), Int("--in-flight", 64), Value("--journal") ?? "sqlite", args.Contains("--accept-only"), Int("--instances", 1), args.Contains("--telemetry"), args.Contains("--traces"));
    }
}

internal static class Results
{
    /// <summary>Appends a row to bench/RESULTS.md (found upwards from the working directory).</summary>
    public static void Record(BenchOptions options, string command, string figures, string note)
    {
        if (!options.Record)
        {
            return;
        }

        var dir = new DirectoryInfo(Directory.GetCurrentDirectory());
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "bench", "RESULTS.md")))
        {
            dir = dir.Parent;
        }

        if (dir is null)
        {
            Console.Error.WriteLine("bench/RESULTS.md not found above the working directory; not recorded");
            return;
        }

        var machine = string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"{Environment.MachineName} ({Environment.ProcessorCount} cores, {GC.GetGCMemoryInfo().TotalAvailableMemoryBytes >> 30} GiB, sha256 {Sha256MegabytesPerSecond():0} MB/s)");
        var row = $"| {DateTime.UtcNow:yyyy-MM-dd} | {machine} | `{command}` | {figures} | {note} |";
        File.AppendAllText(Path.Combine(dir.FullName, "bench", "RESULTS.md"), row + Environment.NewLine);
    }

    /// <summary>One core's speed right now: SHA-256 over 64 KiB blocks for half a second. A shared VM
    /// runs the same code ±30 % from one hour to another; this figure beside each row is a first hint
    /// of the phase a figure came from.</summary>
    private static double Sha256MegabytesPerSecond()
    {
        var block = new byte[64 * 1024];
        Span<byte> hash = stackalloc byte[32];
        var clock = System.Diagnostics.Stopwatch.StartNew();
        long bytes = 0;
        while (clock.Elapsed < TimeSpan.FromMilliseconds(500))
        {
            System.Security.Cryptography.SHA256.HashData(block, hash);
            block[0] = hash[0];
            bytes += block.Length;
        }

        return bytes / clock.Elapsed.TotalSeconds / 1e6;
    }
}
