using System.Collections.Frozen;
using Akka.Actor;
using System.Runtime.Serialization;
using Akka.Serialization;
using Google.Protobuf;
using Google.Protobuf.Reflection;

namespace Tsp.Actors.Protocol;

/// <summary>
/// Protobuf serializer for every <see cref="ITspMessage"/>. The manifest is the message's short
/// proto name, so persisted events survive a rename of the C# type or assembly.
/// </summary>
public sealed class TspProtobufSerializer : SerializerWithStringManifest
{
    public const int SerializerId = 2417;

    private static readonly FrozenDictionary<string, MessageParser> ParsersByManifest =
        TpReflection.Descriptor.MessageTypes.ToFrozenDictionary(d => d.Name, d => d.Parser);

    private static readonly FrozenDictionary<Type, string> ManifestsByType =
        TpReflection.Descriptor.MessageTypes.ToFrozenDictionary(d => d.ClrType, d => d.Name);

    public TspProtobufSerializer(ExtendedActorSystem system)
        : base(system)
    {
    }

    public override int Identifier => SerializerId;

    public static IEnumerable<MessageDescriptor> Messages => TpReflection.Descriptor.MessageTypes;

    public override byte[] ToBinary(object obj) => obj is IMessage message
        ? message.ToByteArray()
        : throw new ArgumentException($"{obj.GetType()} is not a protobuf message", nameof(obj));

    public override object FromBinary(byte[] bytes, string manifest) =>
        ParsersByManifest.TryGetValue(manifest, out var parser)
            ? parser.ParseFrom(bytes)
            : throw new SerializationException($"Unknown TP message manifest '{manifest}'");

    public override string Manifest(object o) =>
        ManifestsByType.TryGetValue(o.GetType(), out var manifest)
            ? manifest
            : throw new ArgumentException($"{o.GetType()} is not a TP message", nameof(o));
}
