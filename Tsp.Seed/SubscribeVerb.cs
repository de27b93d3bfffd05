using System.Globalization;
using Grpc.Core;
using Grpc.Net.Client;
using Tsp.Actors.Protocol;
using Tsp.ServiceDefaults;
using Tsp.Seed.Grpc;

namespace Tsp.Seed;

/// <summary><c>subscribe</c>: prints a project's TP results from the gRPC gateway as they arrive, one
/// line each, and resumes by itself (from the next position) when it is cut off or reconnects.</summary>
internal static class SubscribeVerb
{
    public static async Task<int> RunAsync(Uri url, string projects, string from, string? token)
    {

        using var stop = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            stop.Cancel();
        };
        using var channel = GrpcChannel.ForAddress(url);
        var client = new TspService.TspServiceClient(channel);
        var headers = token is not null ? new Metadata { { "authorization", $"Bearer {token}" } } : null;
        var next = new Dictionary<string, long>(StringComparer.Ordinal);
        var request = new SubscribeRequest();
        request.Projects.AddRange(projects.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        var retryDelay = TimeSpan.FromSeconds(1);
        while (!stop.IsCancellationRequested)
        {
            request.From = next.Count == 0 ? from : string.Join(',', next.Select(p => $"{p.Key}={p.Value.ToString(CultureInfo.InvariantCulture)}"));
            try
            {
                using var call = client.Subscribe(request, headers, cancellationToken: stop.Token);
                await foreach (var result in call.ResponseStream.ReadAllAsync(stop.Token))
                {
                    retryDelay = TimeSpan.FromSeconds(1);
                    next[result.Project] = result.Position + 1;
                    Console.WriteLine(Describe(result));
                }

                return 0;
            }
            catch (RpcException e) when (e.StatusCode is StatusCode.ResourceExhausted or StatusCode.DataLoss && e.Trailers.GetValue(TspGrpcService.ResumeTrailer) is { } resume)
            {
                // Cut off for falling behind, or the results log was lost and starts again: the
                // server says where to go on.
                await Console.Error.WriteLineAsync($"{(e.StatusCode == StatusCode.DataLoss ? "log reset" : "cut off")} ({e.Status.Detail}); resuming from {resume}");
                foreach (var part in resume.Split(','))
                {
                    var pair = part.Split('=');
                    next[pair[0]] = long.Parse(pair[1], CultureInfo.InvariantCulture);
                }
            }
            catch (RpcException e) when (e.StatusCode is StatusCode.Unavailable or StatusCode.Internal && !stop.IsCancellationRequested)
            {
                await Console.Error.WriteLineAsync($"{e.Status.Detail}; reconnecting in {retryDelay.TotalSeconds:0} s");
                await Task.Delay(retryDelay, stop.Token).ContinueWith(_ => { }, TaskScheduler.Default);
                retryDelay = TimeSpan.FromSeconds(Math.Min(30, retryDelay.TotalSeconds * 2));
            }
            catch (RpcException e) when (e.StatusCode != StatusCode.Cancelled)
            {
                await Console.Error.WriteLineAsync($"error: {e.StatusCode}: {e.Status.Detail}");
                return ExitCodes.RemoteError;
            }
            catch (Exception e) when (e is OperationCanceledException or RpcException)
            {
                return 0;
            }
        }

        return 0;
    }

    public static string Describe(TpResult result)
    {
        var latency = result.CompletedAtUnixMs - result.AcceptedAtUnixMs;
        var line = $"{result.Project}@{result.Position} {result.RunId} {result.Status switch { RunStatus.Succeeded => "succeeded", RunStatus.Cancelled => "cancelled", _ => "failed" }} detections={result.Detections.Count} latency_ms={latency} workflow={result.WorkflowHash}";
        return result.Error is { Length: > 0 } error ? $"{line} error=\"{error}\"" : line;
    }
}
