using Tsp.Bench;

// Benchmarks: each scenario prints one result line and appends a row to bench/RESULTS.md.
var scenario = args.Length > 0 ? args[0] : "help";
var options = BenchOptions.Parse(args.Skip(1).ToArray());
return scenario switch
{
    "ingest" => await IngestScenario.RunAsync(options),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("""
        usage: Tsp.Bench <scenario> [--messages N] [--size BYTES] [--redis HOST:PORT] [--no-record]
          ingest   messages/s from Kafka into accepted runs vs a bare Confluent consumer loop
        """);
    return 2;
}
