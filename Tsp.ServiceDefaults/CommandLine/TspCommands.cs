using System.CommandLine;

namespace Tsp.ServiceDefaults.CommandLine;

/// <summary>Parsing and running a TSP process's command line: errors name the flag and exit with
/// <see cref="ExitCodes.Usage"/>; typed errors of a verb become their exit code (<see cref="TspProcess.RunAsync"/>).</summary>
public static class TspCommands
{
    public static async Task<int> InvokeAsync(RootCommand root, IReadOnlyList<string> args)
    {
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var error in parsed.Errors)
            {
                await Console.Error.WriteLineAsync($"error: {error.Message}");
            }

            var command = string.Join(' ', parsed.CommandResult.Command.Parents.OfType<Command>().Reverse().Append(parsed.CommandResult.Command).Skip(1).Select(c => c.Name));
            await Console.Error.WriteLineAsync($"see: {root.Name} {command}{(command.Length > 0 ? " " : string.Empty)}--help");
            return ExitCodes.Usage;
        }

        return await TspProcess.RunAsync(() => parsed.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false }));
    }

    /// <summary>An option that takes a whole number of at least <paramref name="min"/>.</summary>
    public static Option<int> Count(string name, string description, int defaultValue, int min = 1)
    {
        return new Option<int>(name) { Description = description, HelpName = "N", DefaultValueFactory = _ => defaultValue }.InRange(min);
    }

    /// <summary>Refuses a value outside [<paramref name="min"/>, <paramref name="max"/>], naming the flag.</summary>
    public static Option<int> InRange(this Option<int> option, int min, int max = int.MaxValue)
    {
        option.Validators.Add(result =>
        {
            if (result.Tokens.Count == 0
                || !int.TryParse(result.Tokens[^1].Value, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out var value)
                || (value >= min && value <= max))
            {
                return;
            }

            result.AddError(max == int.MaxValue
                ? FormattableString.Invariant($"{option.Name} {value} must be at least {min}")
                : FormattableString.Invariant($"{option.Name} {value} is out of range ({min} to {max})"));
        });
        return option;
    }
}
