using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Tsp.Actors.Hosting;

namespace Tsp.Seed.Grpc;

/// <summary>Kestrel + gRPC on an orchestrator: the TSP service, health, reflection, tokens, TLS.</summary>
internal static class GrpcGateway
{
    /// <summary>Room for the rest of a Submit request around a frame of the maximum size.</summary>
    private const int EnvelopeBytes = 64 * 1024;

    public static void Add(WebApplicationBuilder builder, TspOptions options, GrpcOptions grpcOptions)
    {
        builder.Services.AddSingleton(grpcOptions);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            // A host name (not an address) listens on every interface, as Akka remoting does with 0.0.0.0.
            var address = options.Host == "localhost" ? System.Net.IPAddress.Loopback
                : System.Net.IPAddress.TryParse(options.Host, out var parsed) ? parsed
                : System.Net.IPAddress.Any;
            kestrel.Listen(address, grpcOptions.Port, listen =>
            {
                listen.Protocols = HttpProtocols.Http2;
                if (LoadCertificate(grpcOptions) is { } certificate)
                {
                    listen.UseHttps(certificate);
                }
            });
        });
        builder.Services.AddSingleton<ApiTokenInterceptor>();
        builder.Services.AddGrpc(grpc =>
        {
            grpc.MaxReceiveMessageSize = options.MaxFrameBytes + EnvelopeBytes;
            grpc.EnableDetailedErrors = false;
        }).AddServiceOptions<TspGrpcService>(service => service.Interceptors.Add<ApiTokenInterceptor>());
        builder.Services.AddGrpcReflection();
        builder.Services.AddGrpcHealthChecks().AddCheck("tsp", () => Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckResult.Healthy());
    }

    public static void Map(WebApplication app)
    {
        app.MapGrpcService<TspGrpcService>();
        app.MapGrpcHealthChecksService();
        app.MapGrpcReflectionService();
    }

    /// <summary>The gateway's URL once started (the real port when 0 was asked for); null without one.</summary>
    public static string? Url(IServiceProvider services, TspOptions options)
    {
        var addresses = services.GetService<IServer>()?.Features.Get<IServerAddressesFeature>()?.Addresses;
        var bound = addresses?.FirstOrDefault();
        if (bound is null)
        {
            return null;
        }

        // Kestrel reports the bound address; a client on another machine uses the public host.
        var port = new Uri(bound.Replace("0.0.0.0", "127.0.0.1", StringComparison.Ordinal)).Port;
        var host = !string.IsNullOrWhiteSpace(options.PublicHost) ? options.PublicHost : options.Host;
        return $"{(LoadCertificate(services.GetRequiredService<GrpcOptions>()) is null ? "http" : "https")}://{host}:{port}";
    }

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
