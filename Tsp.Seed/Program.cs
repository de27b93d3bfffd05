using System.CommandLine;
using Tsp.Seed;
using Tsp.ServiceDefaults.CommandLine;

// Host wiring only: the command line, each verb in its own file. Every verb has --help; a flag's
// error names the flag and exits with 2; other exit codes come from typed errors (ExitCodes).
var flags = new TspFlags();

var frames = TspCommands.Count("--frames", "frames to produce", 200);
var concurrency = TspCommands.Count("--concurrency", "runs in flight at once", 64);
var size = TspCommands.Count("--size", "bytes per random frame, for workflows other than the sample's", 64 * 1024);
var demo = new Command("demo", "run the rail-inspection sample end to end in one process on embedded defaults (trains its model first when the repository has none)")
{
    frames, concurrency, size,
};
flags.AddTo(demo, flags.Workflows, flags.Models, flags.Redis, flags.Kafka);
demo.SetAction(parsed => DemoVerb.RunAsync(flags.ToConfiguration(parsed), parsed.GetValue(frames), parsed.GetValue(concurrency), parsed.GetValue(size)));

var standalone = new Command("standalone", "every role in one process on embedded defaults (Garnet, a Kafka mock cluster, SQLite), until Ctrl+C; default workflows: the rail-inspection sample");
flags.AddTo(standalone);
standalone.SetAction(parsed => ServeVerb.RunAsync(flags.ToConfiguration(parsed), standalone: true));

var run = new Command("run", "a cluster member: roles seed and orchestrator unless --roles says otherwise");
flags.AddTo(run);
run.SetAction(parsed => ServeVerb.RunAsync(flags.ToConfiguration(parsed), standalone: false));

var bootstrap = new Option<string>("--bootstrap") { Description = "Kafka bootstrap servers", HelpName = "HOST:PORT", Required = true };
var produceProject = new Option<string>("--project") { Description = "the project whose topic (tsp.{project}.frames) gets the frames", HelpName = "P", Required = true };
var dir = new Option<string>("--dir") { Description = "folder whose files are published, one frame each", HelpName = "FOLDER", Required = true };
var rate = TspCommands.Count("--rate", "frames per second (0: as fast as possible)", 0, min: 0);
var produce = new Command("produce", "publish every file of a folder as a frame to a project's Kafka topic") { bootstrap, produceProject, dir, rate };
produce.SetAction(parsed => ProduceVerb.RunAsync(parsed.GetRequiredValue(bootstrap), parsed.GetRequiredValue(produceProject), parsed.GetRequiredValue(dir), parsed.GetValue(rate)));

var status = new Command("status", "members, roles, reachability, queues and in-flight runs, asked of an orchestrator");
flags.AddTo(status, flags.Seeds, flags.Host);
status.SetAction(parsed => StatusVerb.RunAsync(flags.ToConfiguration(parsed)));

var interval = TspCommands.Count("--interval", "seconds between refreshes", 2);
var iterations = TspCommands.Count("--iterations", "frames to show before exiting (0: until Ctrl+C)", 0, min: 0);
var top = new Command("top", "the whole cluster live in the terminal: members, queues, node latency, models, projects, recent failures") { interval, iterations };
flags.AddTo(top, flags.Seeds, flags.Host);
top.SetAction(parsed => TopVerb.RunAsync(flags.ToConfiguration(parsed), TimeSpan.FromSeconds(parsed.GetValue(interval)), parsed.GetValue(iterations)));

var grpc = new Option<string>("--grpc") { Description = "the gRPC gateway of an orchestrator, e.g. http://127.0.0.1:5000", HelpName = "URL", Required = true };
grpc.Validators.Add(result =>
{
    if (result.Tokens.Count > 0 && !Uri.TryCreate(result.Tokens[^1].Value, UriKind.Absolute, out _))
    {
        result.AddError($"--grpc '{result.Tokens[^1].Value}' is not an absolute URL (e.g. http://127.0.0.1:5000)");
    }
});
var subscribeProjects = new Option<string>("--project") { Description = "projects to follow, separated by commas", HelpName = "P[,P...]", Required = true };
var from = new Option<string>("--from") { Description = "where to start: latest, earliest, a position N, or P=N,Q=M per project", HelpName = "FROM", DefaultValueFactory = _ => "latest" };
var token = new Option<string?>("--token") { Description = "API token (Grpc:Tokens of the gateway)", HelpName = "TOKEN" };
var subscribe = new Command("subscribe", "print a project's results from a gRPC gateway as they arrive, resuming by itself") { grpc, subscribeProjects, from, token };
subscribe.SetAction(parsed => SubscribeVerb.RunAsync(new Uri(parsed.GetRequiredValue(grpc)), parsed.GetRequiredValue(subscribeProjects), parsed.GetValue(from)!, parsed.GetValue(token)));

var root = new RootCommand("TSP: AI pipelines on an Akka.NET cluster. Shared flags are also read from Tsp__* environment variables and appsettings.json (section \"Tsp\"); flags win.")
{
    demo, standalone, run, produce, status, top, subscribe,
};
return await TspCommands.InvokeAsync(root, args);
