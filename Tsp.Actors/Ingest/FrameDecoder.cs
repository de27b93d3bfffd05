using System.Globalization;
using System.Text;
using Confluent.Kafka;
using Google.Protobuf;
using Tsp.Actors.Protocol;

namespace Tsp.Actors.Ingest;

/// <summary>What a run takes of a Kafka record: the frame's bytes and its source id.</summary>
public readonly record struct DecodedFrame(ReadOnlyMemory<byte> Data, string SourceId);

/// <summary>
/// Turns a Kafka record into a frame: either raw image bytes (headers <c>source-id</c>,
/// <c>content-type</c>, <c>captured-at</c> optional) or, with <c>content-type: application/x-tp-frame</c>,
/// a TP Frame protobuf. Returns the reason instead when the record is not a frame.
/// </summary>
public static class FrameDecoder
{
    /// <returns>The frame's bytes and source id (all a run takes of it), or the reason (Error not null).</returns>
    public static (DecodedFrame Frame, string? Error) Decode(string project, ConsumeResult<byte[]?, byte[]?> record, int maxFrameBytes)
    {
        var value = record.Message.Value;
        if (value is null || value.Length == 0)
        {
            return (default, "empty message");
        }

        if (value.Length > maxFrameBytes)
        {
            return (default, $"message of {value.Length} bytes exceeds the maximum of {maxFrameBytes} bytes");
        }

        if (record.Message.Headers is { } headers && headers.TryGetLastBytes(KafkaTopics.ContentTypeHeader, out var contentType) && contentType.AsSpan().SequenceEqual(TpFrameContentType))
        {
            Frame frame;
            try
            {
                frame = Frame.Parser.ParseFrom(value);
            }
            catch (InvalidProtocolBufferException e)
            {
                return (default, $"TP frame does not parse: {e.Message}");
            }

            if (frame.Project.Length > 0 && frame.Project != project)
            {
                return (default, $"TP frame for project '{frame.Project}' on topic {record.Topic} of project '{project}'");
            }

            if (frame.Data.IsEmpty)
            {
                return (default, "TP frame without data");
            }

            return (new DecodedFrame(frame.Data.Memory, frame.SourceId), null);
        }

        // Checked so that a producer learns of a bad header; a run does not record the time yet.
        if (Header(record, KafkaTopics.CapturedAtHeader) is { } captured
            && !long.TryParse(captured, NumberStyles.Integer, CultureInfo.InvariantCulture, out _)
            && !DateTimeOffset.TryParse(captured, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out _))
        {
            return (default, $"header captured-at '{captured}' is neither unix milliseconds nor an ISO 8601 time");
        }

        return (new DecodedFrame(value, Header(record, KafkaTopics.SourceIdHeader) ?? string.Empty), null);
    }

    private static readonly byte[] TpFrameContentType = Encoding.UTF8.GetBytes(KafkaTopics.TpFrameContentType);

    private static string? Header(ConsumeResult<byte[]?, byte[]?> record, string name) =>
        record.Message.Headers is { } headers && headers.TryGetLastBytes(name, out var bytes) ? Encoding.UTF8.GetString(bytes) : null;
}
