using System.Diagnostics;
using System.Globalization;
using Tsp.Actors.Hosting;
using Tsp.Actors.Ingest;

namespace Tsp.Seed;

/// <summary><c>produce</c>: publishes every file of a folder as one frame to a project's topic.</summary>
internal static class ProduceVerb
{
    /// <param name="rate">Frames per second; 0: as fast as the broker takes them.</param>
    public static async Task<int> RunAsync(string bootstrap, string project, string dir, int rate)
    {
        if (!Directory.Exists(dir))
        {
            throw new SettingException($"--dir '{dir}' is not a folder");
        }

        var files = Directory.GetFiles(dir).Order(StringComparer.Ordinal).ToList();
        Console.WriteLine($"produce: {files.Count} files from {dir} to {KafkaTopics.Frames(project)} at {bootstrap}{(rate > 0 ? $", {rate}/s" : string.Empty)}");
        using var producer = new FrameProducer(bootstrap);
        var clock = Stopwatch.StartNew();
        var produced = 0;
        var skipped = 0;
        for (var i = 0; i < files.Count; i++)
        {
            if (rate > 0)
            {
                var due = TimeSpan.FromSeconds((double)i / rate) - clock.Elapsed;
                if (due > TimeSpan.Zero)
                {
                    await Task.Delay(due);
                }
            }

            var data = await File.ReadAllBytesAsync(files[i]);
            if (data.Length == 0)
            {
                skipped++;
                await Console.Error.WriteLineAsync($"\nskipped empty file {files[i]}");
                continue;
            }

            await producer.ProduceAsync(project, data, Path.GetFileName(files[i]), ContentType(files[i]), File.GetLastWriteTimeUtc(files[i]));
            produced++;
            Progress(produced + skipped, files.Count);
        }

        Console.WriteLine();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"produce: {produced} frames in {clock.Elapsed.TotalSeconds:0.0} s, {skipped} empty files skipped"));
        return 0;
    }

    private static string ContentType(string path) => Path.GetExtension(path).ToLowerInvariant() switch
    {
        ".png" => "image/png",
        ".jpg" or ".jpeg" => "image/jpeg",
        ".bmp" => "image/bmp",
        ".tif" or ".tiff" => "image/tiff",
        _ => "application/octet-stream",
    };

    private static void Progress(int done, int total)
    {
        const int width = 30;
        var filled = total == 0 ? width : done * width / total;
        Console.Write($"\r  [{new string('#', filled)}{new string('.', width - filled)}] {done}/{total}");
    }
}
