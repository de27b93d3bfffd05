using System.Runtime.InteropServices;
using Google.Protobuf;
using Tsp.Actors.Nodes;
using Tsp.Actors.Protocol;

namespace Tsp.Actors.Tests.Nodes;

/// <summary><see cref="TensorSets.ParseShared"/> against Google.Protobuf's own parser.</summary>
public sealed class TensorSetParsingTests
{
    private static TensorSet RandomSet(Random random)
    {
        var set = new TensorSet
        {
            SourceWidth = random.Next(0, 5000),
            SourceHeight = random.Next(-3, 5000),
            TileRows = random.Next(0, 4),
            TileCols = random.Next(0, 4),
        };
        for (var t = random.Next(1, 4); t > 0; t--)
        {
            var dims = Enumerable.Range(0, random.Next(1, 5)).Select(_ => (long)random.Next(1, 9)).ToArray();
            var values = Enumerable.Range(0, (int)TensorSets.ElementCount(dims)).Select(_ => (float)random.NextDouble()).ToArray();
            set.Tensors.Add(TensorSets.Create($"t{t}-ü", dims, values));
        }

        return set;
    }

    [Fact]
    public void Tensor_sets_parse_as_Google_Protobuf_parses_them_with_data_sharing_the_buffer()
    {
        var random = new Random(7);
        for (var i = 0; i < 200; i++)
        {
            var bytes = RandomSet(random).ToByteArray();

            var shared = TensorSets.ParseShared(bytes);

            Assert.Equal(TensorSet.Parser.ParseFrom(bytes), shared);
            Assert.All(shared.Tensors, t => Assert.True(MemoryMarshal.TryGetArray(t.Data.Memory, out var segment) && ReferenceEquals(segment.Array, bytes)));
        }
    }

    [Fact]
    public void Unknown_fields_and_unpacked_dims_are_read_as_protobuf_allows()
    {
        var set = RandomSet(new Random(3));
        using var extra = new MemoryStream();
        var output = new CodedOutputStream(extra);
        set.WriteTo(output);
        output.WriteTag(20, WireFormat.WireType.Varint);
        output.WriteInt64(-5);
        output.WriteTag(21, WireFormat.WireType.Fixed64);
        output.WriteFixed64(42);
        output.WriteTag(22, WireFormat.WireType.Fixed32);
        output.WriteFixed32(7);
        output.WriteTag(23, WireFormat.WireType.LengthDelimited);
        output.WriteBytes(ByteString.CopyFromUtf8("later field"));
        // A tensor whose dims come one by one (unpacked), as older writers may send them.
        using var tensorBytes = new MemoryStream();
        var tensorOut = new CodedOutputStream(tensorBytes);
        tensorOut.WriteTag(Tensor.NameFieldNumber, WireFormat.WireType.LengthDelimited);
        tensorOut.WriteString("unpacked");
        tensorOut.WriteTag(Tensor.DimsFieldNumber, WireFormat.WireType.Varint);
        tensorOut.WriteInt64(1);
        tensorOut.WriteTag(Tensor.DimsFieldNumber, WireFormat.WireType.Varint);
        tensorOut.WriteInt64(2);
        tensorOut.WriteTag(Tensor.DataFieldNumber, WireFormat.WireType.LengthDelimited);
        tensorOut.WriteBytes(ByteString.CopyFrom(new byte[8]));
        tensorOut.Flush();
        output.WriteTag(TensorSet.TensorsFieldNumber, WireFormat.WireType.LengthDelimited);
        output.WriteBytes(ByteString.CopyFrom(tensorBytes.ToArray()));
        output.Flush();

        var shared = TensorSets.ParseShared(extra.ToArray());

        var expected = set.Clone();
        expected.Tensors.Add(new Tensor { Name = "unpacked", Dims = { 1, 2 }, Data = ByteString.CopyFrom(new byte[8]) });
        Assert.Equal(expected, shared);
    }

    [Fact]
    public void A_cut_tensor_set_is_refused_exactly_where_Google_Protobuf_refuses_it()
    {
        var bytes = RandomSet(new Random(11)).ToByteArray();
        for (var length = 0; length < bytes.Length; length++)
        {
            var cut = bytes.AsMemory(0, length);
            var protobufRefuses = Refuses(() => TensorSet.Parser.ParseFrom(cut.Span));
            var sharedRefuses = Refuses(() => TensorSets.ParseShared(cut));
            Assert.True(protobufRefuses == sharedRefuses, $"cut at {length} of {bytes.Length}: protobuf {(protobufRefuses ? "refuses" : "accepts")}, ParseShared {(sharedRefuses ? "refuses" : "accepts")}");
        }
    }

    [Fact]
    public void Garbage_is_refused_with_the_byte_where_it_goes_wrong()
    {
        var error = Assert.Throws<FormatException>(() => TensorSets.ParseShared(new byte[] { 0x0A, 0x7F, 0x01 }));

        Assert.Contains("field at byte 1 declares 127 bytes, 1 remain", error.Message, StringComparison.Ordinal);
        Assert.Throws<FormatException>(() => TensorSets.ParseShared(new byte[] { 0x00 }));
        Assert.Throws<FormatException>(() => TensorSets.ParseShared(Enumerable.Repeat((byte)0xFF, 12).ToArray()));
    }

    private static bool Refuses(Action parse)
    {
        try
        {
            parse();
            return false;
        }
        catch (Exception e) when (e is InvalidProtocolBufferException or FormatException)
        {
            return true;
        }
    }
}
