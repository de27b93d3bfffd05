using Tsp.Actors.Nodes;
using Tsp.Actors.Nodes.Onnx;
using Tsp.Actors.Workflows;

namespace Tsp.Actors.Tests.Nodes;

/// <summary>Deploy-time checks of AI nodes: tensor names and shapes along the DAG against the model repository.</summary>
public sealed class NodeContractTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "tsp-tests", "models-" + Guid.NewGuid().ToString("N")[..12]);
    private readonly OnnxModels _models;
    private readonly NodeProcessorRegistry _processors;

    public NodeContractTests()
    {
        Directory.CreateDirectory(Path.Combine(_root, "anomaly"));
        File.WriteAllText(Path.Combine(_root, "anomaly", ModelRepository.ConfigFile), """
            inputs: [{ name: x, shape: [-1, 3, 256, 256] }]
            outputs: [{ name: anomaly_map, shape: [-1, 1, 64, 64] }]
            """);
        _models = new OnnxModels(new ModelRepository(_root), new OnnxOptions { ExecutionProvider = "cpu" }, preferCuda: false);
        _processors = NodeProcessorRegistry.Standard(_models);
    }

    public void Dispose()
    {
        _models.Dispose();
        Directory.Delete(_root, recursive: true);
    }

    private void Check(string nodes) =>
        WorkflowContracts.Check(WorkflowLoader.Parse($"project: p\nnodes:\n{nodes}", "rail.yaml", _processors.Names), _processors);

    [Fact]
    public void A_pipeline_whose_shapes_fit_its_models_deploys()
    {
        Check("""
              - { id: pre, processor: image.normalize, role: cpu, queue: q, params: { width: 256, height: 256 } }
              - { id: model, processor: onnx, role: gpu, queue: g, after: [pre], params: { model: anomaly } }
              - { id: boxes, processor: map.regions, role: cpu, queue: q, after: [model] }
              - { id: later, processor: onnx, role: gpu, queue: g, after: [pre], params: { model: trained-later } }
            """);
    }

    [Fact]
    public void A_shape_mismatch_names_the_node_the_tensor_and_both_shapes()
    {
        var error = Assert.Throws<WorkflowValidationException>(() => Check("""
              - { id: pre, processor: image.normalize, role: cpu, queue: q, params: { width: 320, height: 320 } }
              - { id: model, processor: onnx, role: gpu, queue: g, after: [pre], params: { model: anomaly } }
            """));
        Assert.Contains("rail.yaml:4: node 'model': tensor 'x' from 'pre' is [1,3,320,320], but model 'anomaly' input 'x' is [-1,3,256,256]", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Wrong_tensor_names_bad_parameters_and_non_maps_are_reported_together()
    {
        var error = Assert.Throws<WorkflowValidationException>(() => Check("""
              - { id: pre, processor: image.normalize, role: cpu, queue: q, params: { width: 256, height: 256, tensor: pixels, tiles: 2by2 } }
              - { id: gray, processor: image.normalize, role: cpu, queue: q, params: { channels: 1, tensor: pixels } }
              - { id: model, processor: onnx, role: gpu, queue: g, after: [gray], params: { model: anomaly, input: y } }
              - { id: nomodel, processor: onnx, role: gpu, queue: g, after: [gray] }
              - { id: rgb, processor: image.normalize, role: cpu, queue: q, params: { width: 64, height: 64 } }
              - { id: boxes, processor: map.regions, role: cpu, queue: q, after: [rgb] }
            """));
        Assert.Contains("rail.yaml:3: node 'pre': parameter 'tiles' = '2by2' is not ROWSxCOLS", error.Message, StringComparison.Ordinal);
        Assert.Contains("rail.yaml:5: node 'model': model 'anomaly' has inputs x [-1,3,256,256]; parameter 'input' must name one", error.Message, StringComparison.Ordinal);
        Assert.Contains("rail.yaml:6: node 'nomodel': parameter 'model' is missing", error.Message, StringComparison.Ordinal);
        Assert.Contains("rail.yaml:8: node 'boxes': tensor x [1,3,64,64] from 'rgb' is not a score map", error.Message, StringComparison.Ordinal);
    }
}
