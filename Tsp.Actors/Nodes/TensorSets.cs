using System.Runtime.InteropServices;
using Google.Protobuf;
using Tsp.Actors.Protocol;

namespace Tsp.Actors.Nodes;

/// <summary>Reading and writing <see cref="TensorSet"/> node payloads (float32, NCHW).</summary>
public static class TensorSets
{
    public static Tensor Create(string name, ReadOnlySpan<long> dims, ReadOnlySpan<float> values)
    {
        var expected = ElementCount(dims);
        if (expected != values.Length)
        {
            throw new ArgumentException($"tensor '{name}': {values.Length} values for shape {Shape(dims)} ({expected})");
        }

        var tensor = new Tensor { Name = name, Data = ByteString.CopyFrom(MemoryMarshal.AsBytes(values)) };
        tensor.Dims.Add(dims.ToArray());
        return tensor;
    }

    /// <summary>A tensor over float32 bytes that nobody changes afterwards (no copy).</summary>
    public static Tensor Wrap(string name, ReadOnlySpan<long> dims, ReadOnlyMemory<byte> float32Bytes)
    {
        var expected = ElementCount(dims);
        if (expected * sizeof(float) != float32Bytes.Length)
        {
            throw new ArgumentException($"tensor '{name}': {float32Bytes.Length / sizeof(float)} values for shape {Shape(dims)} ({expected})");
        }

        var tensor = new Tensor { Name = name, Data = UnsafeByteOperations.UnsafeWrap(float32Bytes) };
        tensor.Dims.Add(dims.ToArray());
        return tensor;
    }

    public static float[] Values(Tensor tensor)
    {
        var values = new float[tensor.Data.Length / sizeof(float)];
        tensor.Data.Span.CopyTo(MemoryMarshal.AsBytes(values.AsSpan()));
        return values;
    }

    public static long ElementCount(ReadOnlySpan<long> dims)
    {
        long count = 1;
        foreach (var d in dims)
        {
            count *= d;
        }

        return count;
    }

    public static string Shape(IEnumerable<long> dims) => $"[{string.Join(",", dims)}]";

    public static string Shape(ReadOnlySpan<long> dims) => Shape(dims.ToArray());

    /// <summary>The node input of that name parsed as a tensor set (or the only input when no name).</summary>
    /// <exception cref="NodeInputException">Missing, or not a tensor set.</exception>
    public static TensorSet Read(NodeInvocation invocation, string? fromNode = null)
    {
        var input = fromNode is null
            ? invocation.Inputs.Count == 1 ? invocation.Inputs[0] : throw new NodeInputException($"node '{invocation.NodeId}' needs exactly one input (it has {invocation.Inputs.Count}); name one with parameter 'from'")
            : invocation.Inputs.FirstOrDefault(i => i.NodeId == fromNode) ?? throw new NodeInputException($"node '{invocation.NodeId}' has no input from '{fromNode}'");
        try
        {
            var set = TensorSet.Parser.ParseFrom(input.Data.Span);
            return set.Tensors.Count > 0 ? set : throw new NodeInputException($"input from '{input.NodeId}' holds no tensors");
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new NodeInputException($"input from '{input.NodeId}' is not a tensor set: {e.Message}", e);
        }
    }

    /// <exception cref="NodeInputException">No tensor of that name (or, with no name, not exactly one).</exception>
    public static Tensor Find(TensorSet set, string? name, string nodeId) =>
        name is null
            ? set.Tensors.Count == 1 ? set.Tensors[0] : throw new NodeInputException($"node '{nodeId}': its input holds {set.Tensors.Count} tensors ({string.Join(", ", set.Tensors.Select(t => t.Name))}); name one with parameter 'tensor'")
            : set.Tensors.FirstOrDefault(t => t.Name == name) ?? throw new NodeInputException($"node '{nodeId}': no tensor '{name}' in its input (has {string.Join(", ", set.Tensors.Select(t => t.Name))})");
}
