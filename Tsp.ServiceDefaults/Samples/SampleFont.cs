using SkiaSharp;

namespace Tsp.ServiceDefaults.Samples;

/// <summary>
/// The typeface the sample images stamp serials in: DejaVu Sans Mono Bold from the npm package
/// <c>dejavu-fonts-ttf@2.37.3</c> (free license), so every machine renders the same images whatever
/// fonts it has installed. Fetched and cached once like the sample's models (<see cref="NpmPackage"/>).
/// </summary>
public static class SampleFont
{
    private static readonly NpmPackage Package = new(
        "dejavu-fonts-ttf", "2.37.3",
        "sha512-f1hd7jJbeQa1VWcw+K2KrTXS50zTMaHpVC4XIKJpNcDeYR5ajMtj/iLlQDYNvLOKamUB3ARVVCf79lNwNVztSQ==");

    private const string Entry = "package/ttf/DejaVuSansMono-Bold.ttf";

    private static readonly Lazy<SKTypeface> Loaded = new(Load, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <exception cref="InvalidOperationException">The font package cannot be fetched; the message says why.</exception>
    public static SKTypeface Serial => Loaded.Value;

    private static SKTypeface Load()
    {
        var path = Path.Combine(NpmPackage.CacheFolder, Package.ToString().Replace('/', '-'), Path.GetFileName(Entry));
        if (!File.Exists(path))
        {
            // Once per process, before any image is made: no synchronization context to deadlock on.
            var partial = $"{path}.{Environment.ProcessId}.tmp";
            Task.Run(() => Package.ExtractAsync(new Dictionary<string, string> { [Entry] = partial })).GetAwaiter().GetResult();
            File.Move(partial, path, overwrite: true);
        }

        return SKTypeface.FromFile(path) ?? throw new InvalidOperationException($"{path} is not a font SkiaSharp can read; delete it to fetch it again");
    }
}
