using System.Runtime.InteropServices;
using Google.Protobuf;
using Tsp.Actors.Nodes.Onnx.Format;

namespace Tsp.Actors.Nodes.Onnx;

/// <summary>Writes small ONNX models (float tensors, default domain, opset 13): what training exports.</summary>
public sealed class OnnxGraph(string name)
{
    public const int Opset = 13;
    private readonly GraphProto _graph = new() { Name = name };

    public OnnxGraph Input(string tensor, params long[] shape)
    {
        _graph.Input.Add(ValueInfo(tensor, shape));
        return this;
    }

    public OnnxGraph Output(string tensor, params long[] shape)
    {
        _graph.Output.Add(ValueInfo(tensor, shape));
        return this;
    }

    public OnnxGraph Constant(string tensor, long[] dims, ReadOnlySpan<float> values)
    {
        _graph.Initializer.Add(new TensorProto
        {
            Name = tensor,
            DataType = (int)TensorProto.Types.DataType.Float,
            Dims = { dims },
            RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values)),
        });
        return this;
    }

    public OnnxGraph ConstantInts(string tensor, params long[] values)
    {
        _graph.Initializer.Add(new TensorProto
        {
            Name = tensor,
            DataType = (int)TensorProto.Types.DataType.Int64,
            Dims = { values.Length },
            Int64Data = { values },
        });
        return this;
    }

    /// <param name="attributes">name → int, long, float, long[] or float[].</param>
    public OnnxGraph Node(string op, string[] inputs, string[] outputs, params (string Name, object Value)[] attributes)
    {
        var node = new NodeProto { OpType = op, Name = $"{op}_{_graph.Node.Count}", Input = { inputs }, Output = { outputs } };
        foreach (var (attribute, value) in attributes)
        {
            node.Attribute.Add(value switch
            {
                int i => new AttributeProto { Name = attribute, Type = AttributeProto.Types.AttributeType.Int, I = i },
                long l => new AttributeProto { Name = attribute, Type = AttributeProto.Types.AttributeType.Int, I = l },
                float f => new AttributeProto { Name = attribute, Type = AttributeProto.Types.AttributeType.Float, F = f },
                long[] ints => new AttributeProto { Name = attribute, Type = AttributeProto.Types.AttributeType.Ints, Ints = { ints } },
                float[] floats => new AttributeProto { Name = attribute, Type = AttributeProto.Types.AttributeType.Floats, Floats = { floats } },
                _ => throw new ArgumentException($"attribute '{attribute}': unsupported type {value.GetType().Name}", nameof(attributes)),
            });
        }

        _graph.Node.Add(node);
        return this;
    }

    public byte[] ToModel(IReadOnlyDictionary<string, string>? metadata = null)
    {
        var model = new ModelProto
        {
            IrVersion = 8,
            ProducerName = "tsp",
            Graph = _graph,
            OpsetImport = { new OperatorSetIdProto { Domain = "", Version = Opset } },
        };
        foreach (var (key, value) in metadata ?? new Dictionary<string, string>())
        {
            model.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });
        }

        return model.ToByteArray();
    }

    private static ValueInfoProto ValueInfo(string name, long[] shape)
    {
        var tensorShape = new TensorShapeProto();
        for (var i = 0; i < shape.Length; i++)
        {
            tensorShape.Dim.Add(shape[i] > 0
                ? new TensorShapeProto.Types.Dimension { DimValue = shape[i] }
                : new TensorShapeProto.Types.Dimension { DimParam = i == 0 ? "N" : $"d{i}" });
        }

        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = tensorShape } },
        };
    }
}
