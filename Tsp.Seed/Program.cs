using Tsp.Actors.Workflows;
using Tsp.Seed;

// Host wiring only: each verb lives in its own file.
try
{
    var cli = Tsp.Actors.Hosting.TspCommandLine.Parse(args, Verbs.Flags);
    return cli.Verb switch
    {
        "demo" => await DemoVerb.RunAsync(cli),
        "standalone" => await ServeVerb.RunAsync(cli, standalone: true),
        "run" => await ServeVerb.RunAsync(cli, standalone: false),
        "produce" => await ProduceVerb.RunAsync(cli),
        "subscribe" => await SubscribeVerb.RunAsync(cli.VerbOptions),
        "status" => await StatusVerb.RunAsync(cli),
        "help" or "--help" or "-h" => Verbs.Usage(Console.Out, 0),
        _ => Verbs.Usage(Console.Error, 2, $"unknown verb '{cli.Verb}'"),
    };
}
catch (FormatException e)
{
    return Verbs.Usage(Console.Error, 2, e.Message);
}
catch (WorkflowValidationException e)
{
    await Console.Error.WriteLineAsync(e.Message);
    return 3;
}
catch (InvalidOperationException e) when (e.Message.StartsWith("cannot reach", StringComparison.Ordinal) || e.Message.StartsWith("no Redis", StringComparison.Ordinal))
{
    await Console.Error.WriteLineAsync($"error: {e.Message}");
    return 4;
}
