using System.CommandLine;
using System.Globalization;
using Tsp.Actors.Hosting;

namespace Tsp.ServiceDefaults.CommandLine;

/// <summary>
/// The flags every TSP process shares, each mapped onto a key of the <c>Tsp</c> configuration section,
/// so that flags, environment variables (<c>Tsp__Redis</c>) and appsettings.json are one set of
/// settings (flags win). Add them to a command with <see cref="AddTo"/>; after parsing,
/// <see cref="ToConfiguration"/> gives the keys the flags set.
/// </summary>
public sealed class TspFlags
{
    private readonly List<(Option Option, string Key, bool IsList)> _all = [];

    public TspFlags()
    {
        Host = Scalar<string>("--host", "Host", "address to bind Akka remoting to (127.0.0.1; 0.0.0.0 in containers)", "HOST");
        PublicHost = Scalar<string>("--public-host", "PublicHost", "address other members reach this one at (default: --host)", "HOST");
        Port = Scalar<int>("--port", "Port", "Akka remoting port (0: any free port)", "PORT");
        Seeds = List("--seed", "Seeds", "a seed member, HOST:PORT; repeat or separate with commas", "HOST:PORT");
        Roles = List("--roles", "Roles", "roles of this member: seed, orchestrator, gpu, cpu", "ROLE,...");
        Redis = Scalar<string>("--redis", "Redis", "Redis endpoint for frames, node outputs, results and dead letters", "HOST:PORT");
        Postgres = Scalar<string>("--postgres", "Postgres", "PostgreSQL connection string for the journal (several orchestrators need it)", "CONNSTRING");
        Journal = Scalar<string>("--journal", "SqlitePath", "SQLite journal file when no PostgreSQL is set (.tsp/journal.db)", "FILE");
        Kafka = Scalar<string>("--kafka", "Kafka:Bootstrap", "Kafka bootstrap servers to ingest frames from", "HOST:PORT[,HOST:PORT]");
        Workflows = List("--workflow", "Workflows", "a workflow file to deploy; repeat for several projects", "FILE");
        GrpcPort = Scalar<int>("--grpc-port", "Grpc:Port", "gRPC gateway port on orchestrators (5000; 0: any free port, -1: none)", "PORT");
        GrpcPort.InRange(-1, 65535);
        HttpPort = Scalar<int>("--http-port", "Http:Port", "operations port: /metrics, /health/live, /health/ready (Tsp.Seed 8080, worker: any free port; 0: any free port, -1: none)", "PORT");
        HttpPort.InRange(-1, 65535);
        Queues = List("--queues", "WorkerQueues", "worker: the queues it serves and its slots for each, e.g. gpu-model=2,gpu-ocr=1 (default: every queue of its roles, with the slots their pools deploy)", "QUEUE[=SLOTS],...");
        Models = Scalar<string>("--models", "Onnx:Repository", "model repository folder (.tsp/models)", "DIR");
    }

    public Option<string> Host { get; }

    public Option<string> PublicHost { get; }

    public Option<int> Port { get; }

    public Option<string[]> Seeds { get; }

    public Option<string[]> Roles { get; }

    public Option<string> Redis { get; }

    public Option<string> Postgres { get; }

    public Option<string> Journal { get; }

    public Option<string> Kafka { get; }

    public Option<string[]> Workflows { get; }

    public Option<int> GrpcPort { get; }

    public Option<int> HttpPort { get; }

    public Option<string> Models { get; }

    public Option<string[]> Queues { get; }

    /// <summary>Adds the given flags (all of them when none are named) to <paramref name="command"/>.</summary>
    public void AddTo(Command command, params Option[] only)
    {
        foreach (var (option, _, _) in _all.Where(f => only.Length == 0 || only.Contains(f.Option)))
        {
            command.Add(option);
        }
    }

    /// <summary>Configuration keys (<c>Tsp:Redis</c>, <c>Tsp:Seeds:0</c>, …) of the flags given.</summary>
    public Dictionary<string, string?> ToConfiguration(ParseResult result)
    {
        var configuration = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (var (option, key, isList) in _all)
        {
            if (result.GetResult(option) is not { Implicit: false } given)
            {
                continue;
            }

            if (isList)
            {
                var items = given.Tokens.SelectMany(t => Split(t.Value)).ToList();
                for (var i = 0; i < items.Count; i++)
                {
                    configuration[$"{TspOptions.Section}:{key}:{i.ToString(CultureInfo.InvariantCulture)}"] = items[i];
                }
            }
            else
            {
                configuration[$"{TspOptions.Section}:{key}"] = given.Tokens.Count > 0 ? given.Tokens[^1].Value : null;
            }
        }

        return configuration;
    }

    private static string[] Split(string value) => value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private Option<T> Scalar<T>(string name, string key, string description, string helpName)
    {
        var option = new Option<T>(name) { Description = $"{description} [{TspOptions.Section}:{key}]", HelpName = helpName };
        _all.Add((option, key, false));
        return option;
    }

    private Option<string[]> List(string name, string key, string description, string helpName)
    {
        var option = new Option<string[]>(name)
        {
            Description = $"{description} [{TspOptions.Section}:{key}]",
            HelpName = helpName,
            CustomParser = result => [.. result.Tokens.SelectMany(t => Split(t.Value))],
        };
        _all.Add((option, key, true));
        return option;
    }
}
