using Tsp.Bench;

// Benchmarks: each scenario prints one result line and appends a row to bench/RESULTS.md.
var scenario = args.Length > 0 ? args[0] : "help";
var options = BenchOptions.Parse(args.Skip(1).ToArray());
return scenario switch
{
    "ingest" => await IngestScenario.RunAsync(options),
    "model" => await ModelScenario.RunAsync(options),
    "quality" => await QualityScenario.RunAsync(options),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("""
        usage: Tsp.Bench <scenario> [--messages N] [--size BYTES] [--repeats N] [--redis HOST:PORT] [--no-record]
          ingest   messages/s from Kafka into accepted runs vs a bare Confluent consumer loop
          model    images/s of the text detector through TSP vs a bare ONNX Runtime loop [--batch B] [--cuda]
          quality  AUROC and region recall of the rail-inspection anomaly path on generated images
        """);
    return 2;
}
