using Akka.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Tsp.Actors.Hosting;
using Tsp.Actors.Storage;
using Tsp.Actors.Workflows;
using Tsp.ServiceDefaults.Operations;

namespace Tsp.ServiceDefaults;

/// <summary>Exit codes of every TSP process, each for one kind of typed error.</summary>
public static class ExitCodes
{
    public const int Ok = 0;

    /// <summary>The work itself failed (a demo with failed runs, a status that got no answer).</summary>
    public const int Failed = 1;

    /// <summary>A flag or setting is wrong (<see cref="SettingException"/>, a command-line error).</summary>
    public const int Usage = 2;

    /// <summary>A workflow failed validation (<see cref="WorkflowValidationException"/>), with file:line.</summary>
    public const int InvalidWorkflow = 3;

    /// <summary>Redis or the journal does not answer (<see cref="DependencyUnreachableException"/>).</summary>
    public const int Unreachable = 4;

    /// <summary>A port this process must serve on is taken.</summary>
    public const int PortInUse = 5;

    /// <summary>A server answered a client verb with an error (a gRPC status).</summary>
    public const int RemoteError = 6;
}

/// <summary>A port this process must listen on is taken (or not allowed).</summary>
public sealed class PortInUseException(string message, Exception inner) : Exception(message, inner);

/// <summary>
/// The one host setup Tsp.Seed and Tsp.GpuNode share (the "service defaults"): where settings come
/// from, logging, the TSP services and actor system for this process's roles, the start-up checks,
/// and how a typed error becomes a message and an exit code.
/// </summary>
public static class TspProcess
{
    /// <summary>Settings from appsettings.json, then <c>Tsp__*</c> environment variables, then the
    /// flags (<see cref="CommandLine.TspFlags.ToConfiguration"/>); later sources win.</summary>
    public static TspOptions ReadOptions(IReadOnlyDictionary<string, string?> flags) => ReadOptions(ReadConfiguration(flags));

    /// <exception cref="SettingException">A value does not convert; the message names its key.</exception>
    public static TspOptions ReadOptions(IConfiguration configuration) => Bind<TspOptions>(configuration, TspOptions.Section);

    /// <summary>A section of the settings as <typeparamref name="T"/>.</summary>
    /// <exception cref="SettingException">A value does not convert; the message names its key.</exception>
    public static T Bind<T>(IConfiguration configuration, string section)
        where T : new()
    {
        try
        {
            return configuration.GetSection(section).Get<T>() ?? new T();
        }
        catch (InvalidOperationException e)
        {
            // The binder names the key and the type: "Failed to convert configuration value at 'Tsp:Port' …".
            throw new SettingException(e.InnerException is { } inner ? $"{e.Message} ({inner.Message})" : e.Message, e);
        }
    }

    /// <summary>The settings of a process (a host binds its own sections of it too).</summary>
    public static IConfiguration ReadConfiguration(IReadOnlyDictionary<string, string?> flags) =>
        new ConfigurationBuilder()
            .AddJsonFile("appsettings.json", optional: true)
            .AddEnvironmentVariables()
            .AddInMemoryCollection(flags)
            .Build();

    /// <summary>The operations port from <c>Tsp:Http:Port</c>, else <paramref name="defaultPort"/>.</summary>
    /// <exception cref="SettingException">The port is out of range.</exception>
    public static int ReadHttpPort(IConfiguration configuration, int defaultPort)
    {
        var port = Bind<HttpOptions>(configuration, HttpOptions.Section).Port ?? defaultPort;
        return port is >= -1 and <= 65535 ? port
            : throw new SettingException($"{HttpOptions.Section}:Port (--http-port) is {port}: use a port, 0 for any free port or -1 for none");
    }

    /// <summary>
    /// The host of a TSP process: <see cref="Configure"/>, the operations port (<see cref="OperationsHttp"/>:
    /// metrics and health) and what the caller adds (an orchestrator's gRPC gateway), then the start-up
    /// checks of <see cref="CheckDependencies"/>.
    /// </summary>
    /// <param name="httpPort">-1: no operations port; with nothing else to serve, no web server at all.</param>
    /// <exception cref="WorkflowValidationException">A configured workflow is invalid.</exception>
    /// <exception cref="DependencyUnreachableException">Redis or the journal does not answer.</exception>
    public static IHost Build(TspOptions options, int httpPort, bool quiet, Action<WebApplicationBuilder>? add = null, Action<WebApplication>? map = null)
    {
        IHost host;
        if (httpPort < 0 && add is null)
        {
            // Kestrel with no endpoint would listen on localhost:5000 by itself.
            var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
            Configure(builder.Services, builder.Logging, options, quiet);
            host = builder.Build();
        }
        else
        {
            var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
            Configure(builder.Services, builder.Logging, options, quiet);
            OperationsHttp.Add(builder, options, httpPort);
            add?.Invoke(builder);
            var app = builder.Build();
            OperationsHttp.Map(app);
            map?.Invoke(app);
            host = app;
        }

        CheckDependencies(host, options);
        return host;
    }

    /// <summary>Starts the host; a port it cannot listen on is a <see cref="SettingException"/> that
    /// names it and the flag that moves it.</summary>
    public static async Task StartAsync(IHost host)
    {
        try
        {
            await host.StartAsync();
        }
        catch (IOException e)
        {
            throw new PortInUseException($"cannot listen: {e.Message.TrimEnd('.')}; choose other ports with --http-port and --grpc-port (0: any free port, -1: none)", e);
        }
    }

    /// <summary>Logging, the TSP services and the actor system with the parts of every role in
    /// <paramref name="options"/>.</summary>
    /// <exception cref="WorkflowValidationException">A configured workflow is invalid.</exception>
    public static void Configure(IServiceCollection services, ILoggingBuilder logging, TspOptions options, bool quiet = false)
    {
        logging.ClearProviders();
        logging.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(quiet ? LogLevel.Warning : LogLevel.Information);
        // Kestrel's and gRPC's per-request information lines drown the platform's own.
        logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        // It logs every failing probe as an error; /health/ready says why, and a probe every 5 s would flood.
        logging.AddFilter("Microsoft.Extensions.Diagnostics.HealthChecks", LogLevel.None);
        // A start that fails (a port taken) is one error line and an exit code (StartAsync), not a stack trace.
        logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.None);
        services.AddTspServices(options);
        Tracing.Add(services, options);
        services.AddAkka(TspHostingExtensions.SystemName, (akka, _) =>
        {
            akka.ConfigureLoggers(l =>
            {
                l.LogLevel = quiet ? Akka.Event.LogLevel.WarningLevel : Akka.Event.LogLevel.InfoLevel;
                l.AddLoggerFactory();
            });
            akka.AddTsp(options);
        });
    }

    /// <summary>Connects to what this process needs before anything starts, so that an unreachable
    /// Redis or journal fails the start with its address instead of the first run.</summary>
    /// <exception cref="DependencyUnreachableException">Names the server and its address.</exception>
    /// <exception cref="SettingException">No Redis is configured.</exception>
    public static void CheckDependencies(IHost host, TspOptions options)
    {
        host.Services.GetRequiredService<RedisStore>();
        if (options.Roles.Count == 0 || options.Roles.Contains(TspRoles.Orchestrator))
        {
            TspHostingExtensions.CheckJournal(options);
        }
    }

    /// <summary>Runs a verb and turns its typed errors into a line on standard error and an exit code.</summary>
    public static async Task<int> RunAsync(Func<Task<int>> verb)
    {
        try
        {
            return await verb();
        }
        catch (SettingException e)
        {
            await Console.Error.WriteLineAsync($"error: {e.Message}");
            return ExitCodes.Usage;
        }
        catch (WorkflowValidationException e)
        {
            await Console.Error.WriteLineAsync(e.Message);
            return ExitCodes.InvalidWorkflow;
        }
        catch (DependencyUnreachableException e)
        {
            await Console.Error.WriteLineAsync($"error: {e.Message}");
            return ExitCodes.Unreachable;
        }
        catch (PortInUseException e)
        {
            await Console.Error.WriteLineAsync($"error: {e.Message}");
            return ExitCodes.PortInUse;
        }
    }
}
