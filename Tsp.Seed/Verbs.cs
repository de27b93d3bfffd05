namespace Tsp.Seed;

internal static class Verbs
{
    public static readonly IReadOnlySet<string> Flags = new HashSet<string>(StringComparer.Ordinal) { "frames", "concurrency", "size", "bootstrap", "project", "dir", "rate", "grpc", "from", "token" };

    public static int Usage(TextWriter writer, int exitCode, string? problem = null)
    {
        if (problem is not null)
        {
            writer.WriteLine($"error: {problem}");
        }

        writer.WriteLine("""
            usage: Tsp.Seed <verb> [flags]

            verbs:
              demo         run the rail-inspection sample end to end in one process on embedded defaults
                           (trains its model first when --models has none)
                           [--frames N (200)] [--concurrency N (64)] [--models DIR (.tsp/models)]
                           [--workflow FILE] [--size BYTES (65536), random frames for other workflows]
              standalone   every role in one process on embedded defaults, until Ctrl+C
                           [--workflow FILE ...] (default: samples/rail-inspection, inspection + training)
              run          a cluster member (roles seed + orchestrator unless --roles says otherwise)
              produce      publish every file of a folder as a frame to a project's Kafka topic
                           --bootstrap HOST:PORT --project P --dir FOLDER [--rate PER_SECOND]
              status       members, roles, reachability, queues and in-flight runs, asked of an orchestrator
                           --seed HOST:PORT
              subscribe    print a project's results from a gRPC gateway as they arrive
                           --grpc URL --project P[,P...] [--from latest|earliest|N|P=N,...] [--token T]

            shared flags (also Tsp__* environment variables and appsettings.json, section "Tsp"):
              --host HOST  --port PORT  --seed HOST:PORT (repeatable)  --roles seed,orchestrator,gpu,cpu
              --redis HOST:PORT  --postgres CONNSTRING  --journal SQLITE_FILE  --workflow FILE (repeatable)
              --kafka HOST:PORT[,HOST:PORT]  --public-host HOST  --grpc-port PORT (5000; 0 any, -1 none)
              --models DIR (model repository, .tsp/models)
            """);
        return exitCode;
    }
}
