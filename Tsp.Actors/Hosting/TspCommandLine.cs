using System.Globalization;

namespace Tsp.Actors.Hosting;

/// <summary>
/// The flags both hosts share, mapped onto the <c>Tsp</c> configuration section so that flags,
/// environment variables (<c>Tsp__Redis</c>) and appsettings.json are one set of settings; flags win.
/// Verb-specific flags are returned separately.
/// </summary>
public sealed class TspCommandLine
{
    private static readonly Dictionary<string, string> Scalars = new(StringComparer.Ordinal)
    {
        ["--host"] = "Host",
        ["--public-host"] = "PublicHost",
        ["--port"] = "Port",
        ["--redis"] = "Redis",
        ["--postgres"] = "Postgres",
        ["--journal"] = "SqlitePath",
        ["--kafka"] = "Kafka:Bootstrap",
        ["--grpc-port"] = "Grpc:Port",
        ["--models"] = "Onnx:Repository",
    };

    private static readonly Dictionary<string, string> Lists = new(StringComparer.Ordinal)
    {
        ["--seed"] = "Seeds",
        ["--workflow"] = "Workflows",
        ["--roles"] = "Roles",
    };

    private TspCommandLine(string verb, Dictionary<string, string?> configuration, Dictionary<string, string> verbOptions)
    {
        Verb = verb;
        Configuration = configuration;
        VerbOptions = verbOptions;
    }

    public string Verb { get; }

    /// <summary>Configuration keys (<c>Tsp:Redis</c>, <c>Tsp:Seeds:0</c>, …) from the shared flags.</summary>
    public IReadOnlyDictionary<string, string?> Configuration { get; }

    /// <summary>Other flags as name (without dashes) to value; a flag without a value is "true".</summary>
    public IReadOnlyDictionary<string, string> VerbOptions { get; }

    /// <exception cref="FormatException">A flag is malformed; the message names it.</exception>
    public static TspCommandLine Parse(IReadOnlyList<string> args, IReadOnlySet<string> verbFlags)
    {
        var verb = args.Count > 0 && !args[0].StartsWith('-') ? args[0] : "help";
        var configuration = new Dictionary<string, string?>(StringComparer.Ordinal);
        var verbOptions = new Dictionary<string, string>(StringComparer.Ordinal);
        var listCounts = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = verb == "help" && (args.Count == 0 || args[0].StartsWith('-')) ? 0 : 1; i < args.Count; i++)
        {
            var flag = args[i];
            string? value = null;
            var eq = flag.IndexOf('=', StringComparison.Ordinal);
            if (eq > 0)
            {
                value = flag[(eq + 1)..];
                flag = flag[..eq];
            }

            string Value()
            {
                if (value is not null)
                {
                    return value;
                }

                if (i + 1 >= args.Count || args[i + 1].StartsWith("--", StringComparison.Ordinal))
                {
                    throw new FormatException($"flag {flag} needs a value");
                }

                return args[++i];
            }

            if (Scalars.TryGetValue(flag, out var key))
            {
                configuration[$"{TspOptions.Section}:{key}"] = Value();
            }
            else if (Lists.TryGetValue(flag, out var list))
            {
                foreach (var item in Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                {
                    var index = listCounts.GetValueOrDefault(list);
                    listCounts[list] = index + 1;
                    configuration[$"{TspOptions.Section}:{list}:{index.ToString(CultureInfo.InvariantCulture)}"] = item;
                }
            }
            else if (flag.StartsWith("--", StringComparison.Ordinal) && verbFlags.Contains(flag[2..]))
            {
                var isSwitch = value is null && (i + 1 >= args.Count || args[i + 1].StartsWith("--", StringComparison.Ordinal));
                verbOptions[flag[2..]] = isSwitch ? "true" : Value();
            }
            else
            {
                throw new FormatException($"unknown flag '{flag}' for '{verb}'");
            }
        }

        return new TspCommandLine(verb, configuration, verbOptions);
    }

    public int IntOption(string name, int fallback)
    {
        if (!VerbOptions.TryGetValue(name, out var text))
        {
            return fallback;
        }

        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) && value > 0
            ? value
            : throw new FormatException($"--{name} '{text}' must be a positive whole number");
    }
}
