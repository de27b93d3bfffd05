using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Tsp.Actors.Hosting;
using Tsp.ServiceDefaults.Operations;

namespace Tsp.Seed.Grpc;

/// <summary>Kestrel + gRPC on an orchestrator: the TSP service, health, reflection, tokens, TLS.</summary>
internal static class GrpcGateway
{
    /// <summary>Room for the rest of a Submit request around a frame of the maximum size.</summary>
    private const int EnvelopeBytes = 64 * 1024;

    public static void Add(WebApplicationBuilder builder, TspOptions options, GrpcOptions grpcOptions)
    {
        foreach (var (token, index) in grpcOptions.Tokens.Select((t, i) => (t, i)))
        {
            if (!string.Equals(token.Access, ApiToken.ReadAccess, StringComparison.OrdinalIgnoreCase) && !token.MayControl)
            {
                throw new SettingException($"Tsp:Grpc:Tokens:{index}:Access is '{token.Access}': expected '{ApiToken.ReadAccess}' or '{ApiToken.ControlAccess}'");
            }
        }

        builder.Services.AddSingleton(grpcOptions);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            var endpoints = kestrel.ApplicationServices.GetRequiredService<BoundEndpoints>();
            kestrel.Listen(BoundEndpoints.ListenAddress(options), grpcOptions.Port, listen =>
            {
                listen.Protocols = HttpProtocols.Http2;
                if (LoadCertificate(grpcOptions) is { } certificate)
                {
                    listen.UseHttps(certificate);
                }

                endpoints.Grpc = listen;
            });
        });
        builder.Services.AddSingleton<ApiTokenInterceptor>();
        builder.Services.AddGrpc(grpc =>
        {
            grpc.MaxReceiveMessageSize = options.MaxFrameBytes + EnvelopeBytes;
            grpc.EnableDetailedErrors = false;
        })
            .AddServiceOptions<TspGrpcService>(service => service.Interceptors.Add<ApiTokenInterceptor>())
            .AddServiceOptions<TspControlService>(service => service.Interceptors.Add<ApiTokenInterceptor>());
        builder.Services.AddGrpcReflection();
        // The gRPC health service answers what /health/ready does, for the whole server ("") and the TSP service.
        builder.Services.AddGrpcHealthChecks(health =>
        {
            health.Services.Map(string.Empty, check => check.Tags.Contains("ready"));
            health.Services.Map(Tsp.Actors.Protocol.TspService.Descriptor.FullName, check => check.Tags.Contains("ready"));
        });
    }

    public static void Map(WebApplication app)
    {
        app.MapGrpcService<TspGrpcService>();
        app.MapGrpcService<TspControlService>();
        app.MapGrpcHealthChecksService();
        app.MapGrpcReflectionService();
    }

    /// <summary>The gateway's URL once started (the real port when 0 was asked for); null without one.</summary>
    public static string? Url(IServiceProvider services, TspOptions options) =>
        services.GetService<BoundEndpoints>()?.Grpc is { } endpoint
            ? BoundEndpoints.Url(endpoint, options, LoadCertificate(services.GetRequiredService<GrpcOptions>()) is null ? "http" : "https")
            : null;

    private static X509Certificate2? LoadCertificate(GrpcOptions grpc)
    {
        if (string.IsNullOrWhiteSpace(grpc.CertificatePath))
        {
            return null;
        }

        if (!File.Exists(grpc.CertificatePath))
        {
            throw new InvalidOperationException($"cannot read the gRPC certificate '{grpc.CertificatePath}' (Tsp:Grpc:CertificatePath): no such file");
        }

        return string.IsNullOrWhiteSpace(grpc.CertificateKeyPath)
            ? X509CertificateLoader.LoadPkcs12FromFile(grpc.CertificatePath, grpc.CertificatePassword)
            : X509Certificate2.CreateFromPemFile(grpc.CertificatePath, grpc.CertificateKeyPath);
    }
}
