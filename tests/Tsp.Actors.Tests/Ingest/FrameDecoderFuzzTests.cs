using System.Text;
using Confluent.Kafka;
using Google.Protobuf;
using Tsp.Actors.Ingest;
using Tsp.Actors.Protocol;

namespace Tsp.Actors.Tests.Ingest;

/// <summary>Whatever a Kafka record holds, decoding it gives a frame or a reason, never an exception
/// (which would stop its partition's ingest instead of dead-lettering the record).</summary>
public sealed class FrameDecoderFuzzTests
{
    private const int MaxFrameBytes = 4096;

    private static ConsumeResult<byte[]?, byte[]?> Record(byte[]? value, params (string Key, byte[] Value)[] headers)
    {
        var message = new Message<byte[]?, byte[]?> { Value = value, Headers = [] };
        foreach (var (key, bytes) in headers)
        {
            message.Headers.Add(key, bytes);
        }

        return new ConsumeResult<byte[]?, byte[]?> { Topic = KafkaTopics.Frames("p"), Message = message };
    }

    private static void AssertFrameOrReason((DecodedFrame Frame, string? Error) decoded, string what)
    {
        if (decoded.Error is null)
        {
            Assert.False(decoded.Frame.Data.IsEmpty, $"{what}: decoded to an empty frame without a reason");
        }
        else
        {
            Assert.False(string.IsNullOrWhiteSpace(decoded.Error), $"{what}: a blank reason");
        }
    }

    [Fact]
    public void Every_truncation_and_corruption_of_a_valid_TP_frame_decodes_or_gives_a_reason()
    {
        var tp = ("content-type", Encoding.UTF8.GetBytes(KafkaTopics.TpFrameContentType));
        var valid = new Frame { Project = "p", Data = ByteString.CopyFrom(Enumerable.Range(0, 300).Select(i => (byte)i).ToArray()), SourceId = "cam-1" }.ToByteArray();
        Assert.Null(FrameDecoder.Decode("p", Record(valid, tp), MaxFrameBytes).Error);

        for (var length = 0; length <= valid.Length; length++)
        {
            AssertFrameOrReason(FrameDecoder.Decode("p", Record(valid[..length], tp), MaxFrameBytes), $"truncated to {length}");
        }

        var random = new Random(1729);
        for (var i = 0; i < 20_000; i++)
        {
            var corrupt = (byte[])valid.Clone();
            for (var flips = 1 + random.Next(4); flips > 0; flips--)
            {
                corrupt[random.Next(corrupt.Length)] = (byte)random.Next(256);
            }

            AssertFrameOrReason(FrameDecoder.Decode("p", Record(corrupt, tp), MaxFrameBytes), $"corruption {i}");
        }
    }

    [Fact]
    public void Random_bytes_and_random_headers_decode_or_give_a_reason()
    {
        var random = new Random(31337);
        string[] names = ["content-type", "source-id", "captured-at", "other"];
        for (var i = 0; i < 20_000; i++)
        {
            var value = random.Next(10) == 0 ? null : new byte[random.Next(MaxFrameBytes + 64)];
            if (value is not null)
            {
                random.NextBytes(value);
            }

            var headers = Enumerable.Range(0, random.Next(4)).Select(_ =>
            {
                var bytes = new byte[random.Next(40)];
                random.NextBytes(bytes);
                var name = names[random.Next(names.Length)];
                return (name, name == "content-type" && random.Next(2) == 0 ? Encoding.UTF8.GetBytes(KafkaTopics.TpFrameContentType) : bytes);
            }).ToArray();

            AssertFrameOrReason(FrameDecoder.Decode("p", Record(value, headers), MaxFrameBytes), $"record {i}");
        }
    }
}
