using System.Net;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Tsp.Actors.Hosting;

namespace Tsp.ServiceDefaults.Operations;

/// <summary>The Kestrel endpoints a process listens on, by purpose, so that each URL it prints has the
/// port really bound (Kestrel fills it in when 0 was asked for).</summary>
public sealed class BoundEndpoints
{
    public ListenOptions? Http { get; set; }

    public ListenOptions? Grpc { get; set; }

    /// <summary>Where to listen: a host name (not an address) listens on every interface, as Akka
    /// remoting does with 0.0.0.0.</summary>
    public static IPAddress ListenAddress(TspOptions options) =>
        options.Host == "localhost" ? IPAddress.Loopback
        : IPAddress.TryParse(options.Host, out var parsed) ? parsed
        : IPAddress.Any;

    /// <summary>The URL a client on another machine uses for <paramref name="endpoint"/>; null when there is none.</summary>
    public static string? Url(ListenOptions? endpoint, TspOptions options, string scheme)
    {
        if (endpoint?.IPEndPoint is not { Port: > 0 } bound)
        {
            return null;
        }

        var host = !string.IsNullOrWhiteSpace(options.PublicHost) ? options.PublicHost
            : options.Host is "0.0.0.0" or "::" ? "127.0.0.1"
            : options.Host;
        return $"{scheme}://{host}:{bound.Port}";
    }
}
