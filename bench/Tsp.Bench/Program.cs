using Tsp.Bench;

// Benchmarks: each scenario prints one result line and appends a row to bench/RESULTS.md.
var scenario = args.Length > 0 ? args[0] : "help";
var options = BenchOptions.Parse(args.Skip(1).ToArray());
return scenario switch
{
    "orchestration" => await OrchestrationScenario.RunAsync(options with { Size = args.Contains("--size") ? options.Size : 64 * 1024, Messages = args.Contains("--messages") ? options.Messages : 20_000 }, args.Contains("--one-node"), NodeMs(args)),
    "ingest" => await IngestScenario.RunAsync(options),
    "model" => await ModelScenario.RunAsync(options),
    "quality" => await QualityScenario.RunAsync(options with { Messages = args.Contains("--messages") ? options.Messages : 400, InFlight = args.Contains("--in-flight") ? options.InFlight : 16 }),
    "scaleout" => await ScaleoutScenario.RunAsync(options with { Messages = args.Contains("--messages") ? options.Messages : 1000 }),
    "memory" => await MemoryScenario.RunAsync(options with { Messages = args.Contains("--messages") ? options.Messages : 10_000, InFlight = args.Contains("--in-flight") ? options.InFlight : 256 }),
    "recovery" => await RecoveryScenario.RunAsync(options with { InFlight = args.Contains("--in-flight") ? options.InFlight : 32 }, StableAfter(args)),
    "soak" => await SoakScenario.RunAsync(options, Minutes(args)),
    "fairness" => await FairnessScenario.RunAsync(options),
    "costs" => await CostsScenario.RunAsync(options with { Size = args.Contains("--size") ? options.Size : 64 * 1024, Messages = args.Contains("--messages") ? options.Messages : 20_000 }),
    _ => Usage(),
};

static double? StableAfter(string[] args) =>
    args.SkipWhile(a => a != "--stable-after").Skip(1).FirstOrDefault() is { } s ? double.Parse(s, System.Globalization.CultureInfo.InvariantCulture) : null;

static double? NodeMs(string[] args) =>
    args.SkipWhile(a => a != "--node-ms").Skip(1).FirstOrDefault() is { } ms ? double.Parse(ms, System.Globalization.CultureInfo.InvariantCulture) : null;

static int Minutes(string[] args) =>
    args.SkipWhile(a => a != "--minutes").Skip(1).FirstOrDefault() is { } m ? int.Parse(m, System.Globalization.CultureInfo.InvariantCulture) : 10;

static int Usage()
{
    Console.Error.WriteLine("""
        usage: Tsp.Bench <scenario> [--messages N] [--size BYTES] [--repeats N] [--redis HOST:PORT] [--no-record]
                        [--in-flight N] [--journal sqlite|postgres] [--telemetry] [--traces]
          --telemetry  aggregate the tsp_* metrics for a Prometheus endpoint, as every process does
          --traces     record every span of every run, as with an OTLP collector sampling all runs
          orchestration  runs/s and latency of a 5-node DAG of checksum nodes (64 KiB frames, 20,000 runs) [--one-node] [--node-ms MS: sleep nodes]
          ingest   messages/s from Kafka into accepted runs vs a bare Confluent consumer loop [--accept-only]
          model    images/s of the text detector through TSP vs a bare ONNX Runtime loop [--batch B] [--instances N] [--cuda]
          quality  the rail-inspection sample through TSP on 400 held-out images: AUROC, recall, precision, serial accuracy
          scaleout runs/s with 1, 2 and 3 worker processes (sleep 20 ms node, 4 slots per worker) and scaling efficiency
          memory   orchestrator heap per run in flight (10,000 waiting runs) and after they finish, three rounds
          recovery time from kill -9 of one of two workers under load until the runs it held are done [--stable-after S]
          fairness a live project's p99 beside another's flood vs alone, and the completed-run ratio of weights 3:1 on one queue
          costs    each operation a run is made of, alone: frame put/get, result append, journal write (ops/s, CPU per op)
          soak     N minutes at 80 % of the maximum with a worker killed every 60 s: lost, duplicates, heap/RSS slope, p99 per minute [--minutes N]
        """);
    return 2;
}
