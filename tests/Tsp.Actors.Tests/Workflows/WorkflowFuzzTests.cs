using Tsp.Actors.Nodes;
using Tsp.Actors.Workflows;
using Tsp.Tests.Shared;

namespace Tsp.Actors.Tests.Workflows;

/// <summary>Whatever a workflow file holds, loading it ends in a workflow or in errors that name the
/// file and a line: never another exception (the process would print a stack trace instead).</summary>
public sealed class WorkflowFuzzTests
{
    private const int MutationsPerFile = 3000;
    private static readonly IReadOnlySet<string> Processors = new HashSet<string>(NodeProcessorRegistry.WithBuiltIns().Names.Concat(["image.normalize", "onnx", "map.regions", "train.fit-normal", "train.export-onnx"]), StringComparer.Ordinal);
    private static readonly string[] Inserts = [":", ": ", "- ", "-", "[", "]", "{", "}", ",", "\"", "'", "\t", "&a", "*a", "!tag ", "%YAML 1.2\n", "---\n", "...\n", "#", "|", ">", "?", "@", "`", "\n", "  ", "\0", "é", "😀", "after: [", "when: \"", "timeout: ", "max_attempts: ", "<<: *a", "~", "null", "1e400", "-1", "99999999999999999999"];

    public static TheoryData<string> Samples => ["samples/rail-inspection/workflow.yaml", "samples/rail-inspection/train.yaml", "samples/demo/workflow.yaml"];

    [Theory]
    [MemberData(nameof(Samples))]
    public void A_mutated_sample_workflow_loads_or_fails_with_file_and_line_errors_only(string sample)
    {
        var original = File.ReadAllText(Path.Combine(RepositoryFiles.Root, sample));
        var random = new Random(sample.Length * 7919);
        for (var i = 0; i < MutationsPerFile; i++)
        {
            var text = Mutate(original, random, 1 + random.Next(4));
            try
            {
                WorkflowLoader.Parse(text, "fuzz.yaml", Processors);
            }
            catch (WorkflowValidationException e)
            {
                Assert.NotEmpty(e.Errors);
                Assert.All(e.Errors, error =>
                {
                    Assert.Equal("fuzz.yaml", error.Source);
                    Assert.InRange(error.Line, 0, text.Count(c => c == '\n') + 2);
                    Assert.False(string.IsNullOrWhiteSpace(error.Message));
                });
            }
            catch (Exception e)
            {
                Assert.Fail($"mutation {i} of {sample} threw {e}\n--- text ---\n{text}");
            }
        }
    }

    private static string Mutate(string text, Random random, int times)
    {
        for (var t = 0; t < times; t++)
        {
            var lines = text.Split('\n').ToList();
            switch (random.Next(7))
            {
                case 0 when text.Length > 1:
                    var start = random.Next(text.Length);
                    text = text.Remove(start, Math.Min(text.Length - start, 1 + random.Next(12)));
                    break;
                case 1:
                    text = text.Insert(random.Next(text.Length + 1), Inserts[random.Next(Inserts.Length)]);
                    break;
                case 2 when lines.Count > 1:
                    var line = random.Next(lines.Count);
                    lines.Insert(random.Next(lines.Count), lines[line]);
                    text = string.Join('\n', lines);
                    break;
                case 3 when lines.Count > 1:
                    var (a, b) = (random.Next(lines.Count), random.Next(lines.Count));
                    (lines[a], lines[b]) = (lines[b], lines[a]);
                    text = string.Join('\n', lines);
                    break;
                case 4:
                    var indent = random.Next(lines.Count);
                    lines[indent] = random.Next(2) == 0 ? "  " + lines[indent] : lines[indent].TrimStart();
                    text = string.Join('\n', lines);
                    break;
                case 5:
                    text = text[..random.Next(text.Length + 1)];
                    break;
                default:
                    var at = random.Next(lines.Count);
                    lines.RemoveAt(at);
                    text = string.Join('\n', lines);
                    break;
            }
        }

        return text;
    }
}
