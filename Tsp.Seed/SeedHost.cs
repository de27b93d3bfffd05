using Akka.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Tsp.Actors.Hosting;

namespace Tsp.Seed;

/// <summary>Builds a TSP host from configuration (appsettings.json, environment, flags).</summary>
public static class SeedHost
{
    public static TspOptions ReadOptions(IReadOnlyDictionary<string, string?> flags)
    {
        var configuration = new ConfigurationBuilder()
            .AddJsonFile("appsettings.json", optional: true)
            .AddEnvironmentVariables()
            .AddInMemoryCollection(flags)
            .Build();
        return configuration.GetSection(TspOptions.Section).Get<TspOptions>() ?? new TspOptions();
    }

    public static IHost Build(TspOptions options, bool quiet)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(quiet ? LogLevel.Warning : LogLevel.Information);
        builder.Services.AddTspServices(options);
        builder.Services.AddAkka(TspHostingExtensions.SystemName, (akka, _) =>
        {
            akka.ConfigureLoggers(l =>
            {
                l.LogLevel = quiet ? Akka.Event.LogLevel.WarningLevel : Akka.Event.LogLevel.InfoLevel;
                l.AddLoggerFactory();
            });
            akka.AddTsp(options);
        });
        var host = builder.Build();
        // Connect now, so an unreachable Redis fails the start with its address, not the first run.
        host.Services.GetRequiredService<Tsp.Actors.Storage.RedisStore>();
        return host;
    }

    /// <summary>A workflow path as given, else relative to the executable (samples are copied there).</summary>
    public static string ResolveSample(string path) =>
        File.Exists(path) ? path : Path.Combine(AppContext.BaseDirectory, path);
}
