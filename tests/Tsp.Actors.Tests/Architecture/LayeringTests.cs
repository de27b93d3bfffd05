using System.Reflection;
using NetArchTest.Rules;
using Tsp.Actors.Workflows;

namespace Tsp.Actors.Tests.Architecture;

/// <summary>The rules of the house about who may use whom, checked on the compiled library.</summary>
public sealed class LayeringTests
{
    private static readonly Assembly Library = typeof(WorkflowRunHost).Assembly;

    /// <summary>The library's folders (namespaces under Tsp.Actors), lowest layer first: a folder uses
    /// only folders of lower layers, never one of its own layer or above. That is also what makes the
    /// folders free of cycles.</summary>
    private static readonly string[][] Layers =
    [
        ["Protocol", "Telemetry"],
        ["Storage"],
        ["Nodes", "Northbound"],
        ["Dispatch"],
        ["Workflows"],
        ["Ingest"],
        ["Control"],
        ["Hosting"],
    ];

    public static TheoryData<string> Folders => [.. Layers.SelectMany(layer => layer)];

    [Theory]
    [MemberData(nameof(Folders))]
    public void A_folder_uses_only_the_folders_of_the_layers_below_it(string folder)
    {
        var layer = Array.FindIndex(Layers, l => l.Contains(folder));
        var above = Layers.Skip(layer).SelectMany(l => l).Where(f => f != folder).Select(f => $"Tsp.Actors.{f}").ToArray();

        var result = Types.InAssembly(Library).That().ResideInNamespace($"Tsp.Actors.{folder}")
            .ShouldNot().HaveDependencyOnAny(above).GetResult();

        Assert.True(result.IsSuccessful, $"{folder} uses a folder of its own layer or above ({string.Join(", ", above)}): {string.Join(", ", result.FailingTypeNames ?? [])}");
    }

    [Fact]
    public void Every_folder_of_the_library_has_a_place_in_the_layers()
    {
        var folders = Library.GetTypes()
            .Select(t => t.Namespace ?? string.Empty)
            .Where(n => n.StartsWith("Tsp.Actors.", StringComparison.Ordinal))
            .Select(n => n.Split('.')[2])
            .Distinct()
            .Order(StringComparer.Ordinal)
            .ToList();

        Assert.Empty(folders.Except(Layers.SelectMany(l => l)));
        Assert.DoesNotContain(Library.GetTypes(), t => t.Namespace == "Tsp.Actors" && !t.Name.StartsWith('<'));
    }

    [Fact]
    public void Workflows_never_reference_ONNX_imaging_training_or_any_node_processor()
    {
        var result = Types.InAssembly(Library).That().ResideInNamespace("Tsp.Actors.Workflows")
            .ShouldNot().HaveDependencyOnAny("Microsoft.ML.OnnxRuntime", "SkiaSharp", "Tsp.Actors.Nodes.Onnx", "Tsp.Actors.Nodes.Imaging", "Tsp.Actors.Nodes.Training")
            .GetResult();

        Assert.True(result.IsSuccessful, $"workflow types that know processors: {string.Join(", ", result.FailingTypeNames ?? [])}");
    }

    [Fact]
    public void Node_processors_never_see_the_workflow_model()
    {
        var result = Types.InAssembly(Library).That().ImplementInterface(typeof(Tsp.Actors.Nodes.INodeProcessor))
            .ShouldNot().HaveDependencyOn("Tsp.Actors.Workflows").GetResult();

        Assert.True(result.IsSuccessful, $"processors that know workflows: {string.Join(", ", result.FailingTypeNames ?? [])}");
    }

    [Fact]
    public void The_library_references_no_host_process()
    {
        var references = Library.GetReferencedAssemblies().Select(a => a.Name).ToList();

        Assert.DoesNotContain("Tsp.Seed", references);
        Assert.DoesNotContain("Tsp.GpuNode", references);
    }
}
