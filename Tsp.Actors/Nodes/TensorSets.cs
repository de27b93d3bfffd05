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
            var set = ParseShared(input.Data);
            return set.Tensors.Count > 0 ? set : throw new NodeInputException($"input from '{input.NodeId}' holds no tensors");
        }
        catch (FormatException e)
        {
            throw new NodeInputException($"input from '{input.NodeId}' is not a tensor set: {e.Message}", e);
        }
    }

    /// <summary>Parses a tensor set whose tensors' data are slices of <paramref name="bytes"/>, not
    /// copies: Google.Protobuf copies every bytes field, and an image tensor is megabytes (a copy and a
    /// large-object allocation per image and node). <paramref name="bytes"/> must not change afterwards.
    /// Unknown fields are skipped.</summary>
    /// <exception cref="FormatException">Not a well-formed tensor set; the message says where.</exception>
    public static TensorSet ParseShared(ReadOnlyMemory<byte> bytes)
    {
        var set = new TensorSet();
        var reader = new WireReader(bytes);
        while (!reader.AtEnd)
        {
            var (field, wire) = reader.Tag();
            switch (field)
            {
                case TensorSet.TensorsFieldNumber when wire == WireReader.LengthDelimitedWire:
                    set.Tensors.Add(ParseTensor(reader.LengthDelimitedField()));
                    break;
                case TensorSet.SourceWidthFieldNumber when wire == WireReader.VarintWire:
                    set.SourceWidth = (int)reader.Varint();
                    break;
                case TensorSet.SourceHeightFieldNumber when wire == WireReader.VarintWire:
                    set.SourceHeight = (int)reader.Varint();
                    break;
                case TensorSet.TileRowsFieldNumber when wire == WireReader.VarintWire:
                    set.TileRows = (int)reader.Varint();
                    break;
                case TensorSet.TileColsFieldNumber when wire == WireReader.VarintWire:
                    set.TileCols = (int)reader.Varint();
                    break;
                case TensorSet.RegionsFieldNumber when wire == WireReader.LengthDelimitedWire:
                    try
                    {
                        set.Regions.Add(Detection.Parser.ParseFrom(reader.LengthDelimitedField().Span));
                    }
                    catch (InvalidProtocolBufferException e)
                    {
                        throw new FormatException($"region {set.Regions.Count}: {e.Message}", e);
                    }

                    break;
                default:
                    reader.Skip(wire);
                    break;
            }
        }

        return set;
    }

    private static Tensor ParseTensor(ReadOnlyMemory<byte> bytes)
    {
        var tensor = new Tensor();
        var reader = new WireReader(bytes);
        while (!reader.AtEnd)
        {
            var (field, wire) = reader.Tag();
            switch (field)
            {
                case Tensor.NameFieldNumber when wire == WireReader.LengthDelimitedWire:
                    tensor.Name = System.Text.Encoding.UTF8.GetString(reader.LengthDelimitedField().Span);
                    break;
                case Tensor.DimsFieldNumber when wire == WireReader.LengthDelimitedWire:
                    var packed = new WireReader(reader.LengthDelimitedField());
                    while (!packed.AtEnd)
                    {
                        tensor.Dims.Add((long)packed.Varint());
                    }

                    break;
                case Tensor.DimsFieldNumber when wire == WireReader.VarintWire:
                    tensor.Dims.Add((long)reader.Varint());
                    break;
                case Tensor.DataFieldNumber when wire == WireReader.LengthDelimitedWire:
                    tensor.Data = UnsafeByteOperations.UnsafeWrap(reader.LengthDelimitedField());
                    break;
                default:
                    reader.Skip(wire);
                    break;
            }
        }

        return tensor;
    }

    /// <summary>The protobuf wire format, read forward over a buffer without copying.</summary>
    private struct WireReader(ReadOnlyMemory<byte> bytes)
    {
        public const int VarintWire = 0;
        public const int Fixed64Wire = 1;
        public const int LengthDelimitedWire = 2;
        public const int Fixed32Wire = 5;

        private int _position;

        public readonly bool AtEnd => _position >= bytes.Length;

        public (int Field, int Wire) Tag()
        {
            var at = _position;
            var tag = Varint();
            var field = tag >> 3;
            if (field is 0 or > 536_870_911)
            {
                throw new FormatException($"invalid field number {field} at byte {at}");
            }

            return ((int)field, (int)(tag & 7));
        }

        public ulong Varint()
        {
            var span = bytes.Span;
            ulong value = 0;
            for (var shift = 0; shift < 64; shift += 7)
            {
                if (_position >= span.Length)
                {
                    throw new FormatException($"truncated varint at byte {_position}");
                }

                var b = span[_position++];
                value |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80)
                {
                    return value;
                }
            }

            throw new FormatException($"varint longer than 10 bytes before byte {_position}");
        }

        public ReadOnlyMemory<byte> LengthDelimitedField()
        {
            var at = _position;
            var length = Varint();
            if (length > (ulong)(bytes.Length - _position))
            {
                throw new FormatException($"field at byte {at} declares {length} bytes, {bytes.Length - _position} remain");
            }

            var field = bytes.Slice(_position, (int)length);
            _position += (int)length;
            return field;
        }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case VarintWire:
                    Varint();
                    break;
                case LengthDelimitedWire:
                    LengthDelimitedField();
                    break;
                case Fixed64Wire:
                    Advance(8);
                    break;
                case Fixed32Wire:
                    Advance(4);
                    break;
                default:
                    throw new FormatException($"wire type {wire} before byte {_position} is not supported");
            }
        }

        private void Advance(int count)
        {
            if (count > bytes.Length - _position)
            {
                throw new FormatException($"truncated fixed-size field at byte {_position}");
            }

            _position += count;
        }
    }

    /// <exception cref="NodeInputException">No tensor of that name (or, with no name, not exactly one).</exception>
    public static Tensor Find(TensorSet set, string? name, string nodeId) =>
        name is null
            ? set.Tensors.Count == 1 ? set.Tensors[0] : throw new NodeInputException($"node '{nodeId}': its input holds {set.Tensors.Count} tensors ({string.Join(", ", set.Tensors.Select(t => t.Name))}); name one with parameter 'tensor'")
            : set.Tensors.FirstOrDefault(t => t.Name == name) ?? throw new NodeInputException($"node '{nodeId}': no tensor '{name}' in its input (has {string.Join(", ", set.Tensors.Select(t => t.Name))})");
}
