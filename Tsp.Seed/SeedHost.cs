using Akka.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Tsp.Actors.Hosting;
using Tsp.Seed.Grpc;
using Tsp.ServiceDefaults;
using Tsp.ServiceDefaults.Operations;
using Tsp.ServiceDefaults.Samples;

namespace Tsp.Seed;

/// <summary>Builds a TSP host from configuration (appsettings.json, environment, flags).</summary>
public static class SeedHost
{
    /// <summary>The orchestrator's gRPC gateway settings (section <c>Tsp:Grpc</c>).</summary>
    public static GrpcOptions ReadGrpcOptions(IConfiguration configuration) => TspProcess.Bind<GrpcOptions>(configuration, GrpcOptions.Section);

    /// <summary>Whether this process serves gRPC: orchestrators do, unless the port is -1.</summary>
    public static bool ServesGrpc(TspOptions options, GrpcOptions grpc) =>
        grpc.Port >= 0 && (options.Roles.Count == 0 || options.Roles.Contains(TspRoles.Orchestrator));

    /// <summary>The operations port of Tsp.Seed unless <c>Tsp:Http:Port</c> (--http-port) says otherwise.</summary>
    public const int DefaultHttpPort = 8080;

    /// <summary>A Tsp.Seed host: an orchestrator serves the gRPC gateway (unless its port is -1) and
    /// the dashboard on the operations port.</summary>
    public static IHost Build(TspOptions options, GrpcOptions grpc, int httpPort, bool quiet)
    {
        var orchestrator = options.Has(TspRoles.Orchestrator);
        return TspProcess.Build(
            options,
            httpPort,
            quiet,
            ServesGrpc(options, grpc) ? builder => GrpcGateway.Add(builder, options, grpc) : null,
            app =>
            {
                if (ServesGrpc(options, grpc))
                {
                    GrpcGateway.Map(app);
                }

                if (orchestrator)
                {
                    Dashboard.DashboardEndpoints.Map(app);
                }
            });
    }

    /// <summary>The gRPC gateway's URL once started; null when this process serves none.</summary>
    public static string? GrpcUrl(IHost host) => GrpcGateway.Url(host.Services, host.Services.GetRequiredService<TspOptions>());

    /// <summary>The operations port's URL (metrics, health, dashboard) once started; null without one.</summary>
    public static string? HttpUrl(IHost host) => OperationsHttp.Url(host.Services);

    /// <summary>Installs the pretrained models that deployed workflows name and the repository lacks
    /// (the sample's text detector and recogniser, fetched once with npm pack).</summary>
    public static async Task PrepareSampleModelsAsync(IHost host)
    {
        var catalog = host.Services.GetRequiredService<Tsp.Actors.Workflows.WorkflowCatalog>();
        var named = catalog.All.SelectMany(w => w.Nodes).Select(n => n.Parameters.GetValueOrDefault("model")).ToHashSet(StringComparer.Ordinal);
        var repository = host.Services.GetRequiredService<Tsp.Actors.Nodes.Onnx.OnnxModels>().Repository;
        if (named.Contains(PretrainedModels.TextDetector))
        {
            await PretrainedModels.EnsureTextDetectorAsync(repository);
        }

        if (named.Contains(PretrainedModels.TextRecognizer))
        {
            await PretrainedModels.EnsureTextRecognizerAsync(repository);
        }
    }

    /// <summary>A workflow path as given, else relative to the executable (samples are copied there).</summary>
    public static string ResolveSample(string path) =>
        File.Exists(path) ? path : Path.Combine(AppContext.BaseDirectory, path);
}
