using System.Globalization;
using System.Text;
using Confluent.Kafka;
using Google.Protobuf;
using Tsp.Actors.Protocol;

namespace Tsp.Actors.Ingest;

/// <summary>
/// Turns a Kafka record into a frame: either raw image bytes (headers <c>source-id</c>,
/// <c>content-type</c>, <c>captured-at</c> optional) or, with <c>content-type: application/x-tp-frame</c>,
/// a TP Frame protobuf. Returns the reason instead when the record is not a frame.
/// </summary>
public static class FrameDecoder
{
    public static (Frame? Frame, string? Error) Decode(string project, ConsumeResult<byte[]?, byte[]?> record, int maxFrameBytes)
    {
        var value = record.Message.Value;
        if (value is null || value.Length == 0)
        {
            return (null, "empty message");
        }

        if (value.Length > maxFrameBytes)
        {
            return (null, $"message of {value.Length} bytes exceeds the maximum of {maxFrameBytes} bytes");
        }

        var contentType = Header(record, KafkaTopics.ContentTypeHeader);
        if (contentType == KafkaTopics.TpFrameContentType)
        {
            Frame frame;
            try
            {
                frame = Frame.Parser.ParseFrom(value);
            }
            catch (InvalidProtocolBufferException e)
            {
                return (null, $"TP frame does not parse: {e.Message}");
            }

            if (frame.Project.Length > 0 && frame.Project != project)
            {
                return (null, $"TP frame for project '{frame.Project}' on topic {record.Topic} of project '{project}'");
            }

            if (frame.Data.IsEmpty)
            {
                return (null, "TP frame without data");
            }

            frame.Project = project;
            return (frame, null);
        }

        var capturedAt = 0L;
        if (Header(record, KafkaTopics.CapturedAtHeader) is { } captured)
        {
            if (long.TryParse(captured, NumberStyles.Integer, CultureInfo.InvariantCulture, out var ms))
            {
                capturedAt = ms;
            }
            else if (DateTimeOffset.TryParse(captured, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at))
            {
                capturedAt = at.ToUnixTimeMilliseconds();
            }
            else
            {
                return (null, $"header captured-at '{captured}' is neither unix milliseconds nor an ISO 8601 time");
            }
        }

        return (new Frame
        {
            Project = project,
            SourceId = Header(record, KafkaTopics.SourceIdHeader) ?? string.Empty,
            ContentType = contentType ?? string.Empty,
            CapturedAtUnixMs = capturedAt,
            Data = UnsafeByteOperations.UnsafeWrap(value),
        }, null);
    }

    private static string? Header(ConsumeResult<byte[]?, byte[]?> record, string name) =>
        record.Message.Headers is { } headers && headers.TryGetLastBytes(name, out var bytes) ? Encoding.UTF8.GetString(bytes) : null;
}
