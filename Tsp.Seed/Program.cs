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

var controlProject = new Option<string>("--project") { Description = "the project", HelpName = "P", Required = true };
var runOption = new Option<string?>("--run") { Description = "one run, by its id", HelpName = "ID" };
var sourceOption = new Option<string?>("--source") { Description = "only the runs of this source id", HelpName = "S" };
var reasonOption = new Option<string?>("--reason") { Description = "why, kept with the action (a cancelled run's result, a pause)", HelpName = "TEXT" };
var limit = TspCommands.Count("--limit", "at most this many", 100);

var inspect = new Command("inspect", "a project's unfinished runs, one line each starting with its run id: stage, source, host and every node's state; --run: one run's timeline") { grpc, token, controlProject, runOption, sourceOption, limit };
inspect.SetAction(parsed => ControlVerbs.InspectAsync(new Uri(parsed.GetRequiredValue(grpc)), parsed.GetValue(token), parsed.GetRequiredValue(controlProject), parsed.GetValue(runOption), parsed.GetValue(sourceOption), parsed.GetValue(limit)));

var cancelAll = new Option<bool>("--all") { Description = "every unfinished run of the project" };
var cancel = new Command("cancel", "cancel a run (--run), every unfinished run of a project (--all) or of a source (--source): each ends with status CANCELLED") { grpc, token, controlProject, runOption, cancelAll, sourceOption, reasonOption };
cancel.Validators.Add(result =>
{
    var chosen = (result.GetValue(runOption) is null ? 0 : 1) + (result.GetValue(cancelAll) ? 1 : 0) + (result.GetValue(sourceOption) is null ? 0 : 1);
    if (chosen != 1)
    {
        result.AddError("cancel needs exactly one of --run ID, --all or --source S");
    }
});
cancel.SetAction(parsed => ControlVerbs.CancelAsync(new Uri(parsed.GetRequiredValue(grpc)), parsed.GetValue(token), parsed.GetRequiredValue(controlProject), parsed.GetValue(runOption), parsed.GetValue(cancelAll), parsed.GetValue(sourceOption), parsed.GetValue(reasonOption)));

var redrive = new Option<string?>("--redrive") { Description = "run the frames of dead runs again: all, an id N, or a range N-M", HelpName = "all|N|N-M" };
var deadLetters = new Command("deadletters", "a project's dead letters, newest first (id, time, origin, reference, reason); --redrive runs them again") { grpc, token, controlProject, redrive, limit };
deadLetters.SetAction(parsed => ControlVerbs.DeadLettersAsync(new Uri(parsed.GetRequiredValue(grpc)), parsed.GetValue(token), parsed.GetRequiredValue(controlProject), parsed.GetValue(redrive), parsed.GetValue(limit)));

var pause = new Command("pause", "stop consuming a project's Kafka topic (runs in flight finish; stays paused across restarts)") { grpc, token, controlProject, reasonOption };
pause.SetAction(parsed => ControlVerbs.PauseAsync(new Uri(parsed.GetRequiredValue(grpc)), parsed.GetValue(token), parsed.GetRequiredValue(controlProject), paused: true, parsed.GetValue(reasonOption)));
var resume = new Command("resume", "consume a paused project's Kafka topic again") { grpc, token, controlProject, reasonOption };
resume.SetAction(parsed => ControlVerbs.PauseAsync(new Uri(parsed.GetRequiredValue(grpc)), parsed.GetValue(token), parsed.GetRequiredValue(controlProject), paused: false, parsed.GetValue(reasonOption)));

var workflowFile = new Option<string>("--workflow") { Description = "the workflow file to deploy (its project: a new version, or a new project)", HelpName = "FILE", Required = true };
var deploy = new Command("deploy", "deploy a workflow on every orchestrator while it runs: runs in flight finish on their version, new runs take this one; an invalid file is refused with its errors") { grpc, token, workflowFile };
deploy.SetAction(parsed => ControlVerbs.DeployAsync(new Uri(parsed.GetRequiredValue(grpc)), parsed.GetValue(token), parsed.GetRequiredValue(workflowFile)));
var remove = new Command("remove", "stop taking new runs of a project (ingest stops, submissions are refused); its runs in flight finish") { grpc, token, controlProject };
remove.SetAction(parsed => ControlVerbs.RemoveAsync(new Uri(parsed.GetRequiredValue(grpc)), parsed.GetValue(token), parsed.GetRequiredValue(controlProject)));

var loadModel = new Option<string?>("--load") { Description = "load a model on every member that serves models; NAME:VERSION pins that version", HelpName = "NAME[:VER]" };
var unloadModel = new Option<string?>("--unload") { Description = "stop serving a model on every member (NAME:VERSION: only if that version is loaded)", HelpName = "NAME[:VER]" };
var modelStats = new Option<bool>("--stats") { Description = "per model version, summed over members: inferences, batches, failures, queue and compute time" };
var models = new Command("models", "the model repository index: every version on every member that serves models, READY, LOADING or UNAVAILABLE and why; load, unload, pin, statistics") { grpc, token, loadModel, unloadModel, modelStats };
models.Validators.Add(result =>
{
    if ((result.GetValue(loadModel) is null ? 0 : 1) + (result.GetValue(unloadModel) is null ? 0 : 1) + (result.GetValue(modelStats) ? 1 : 0) > 1)
    {
        result.AddError("models takes at most one of --load, --unload or --stats");
    }
});
models.SetAction(parsed => ControlVerbs.ModelsAsync(new Uri(parsed.GetRequiredValue(grpc)), parsed.GetValue(token), parsed.GetValue(loadModel), parsed.GetValue(unloadModel), parsed.GetValue(modelStats)));

var root = new RootCommand("TSP: AI pipelines on an Akka.NET cluster. Shared flags are also read from Tsp__* environment variables and appsettings.json (section \"Tsp\"); flags win.")
{
    demo, standalone, run, produce, status, top, subscribe, inspect, cancel, deadLetters, pause, resume, deploy, remove, models,
};
return await TspCommands.InvokeAsync(root, args);
