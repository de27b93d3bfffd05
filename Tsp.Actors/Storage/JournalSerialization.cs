using Akka.Actor;
using Akka.Persistence;

namespace Tsp.Actors.Storage;

/// <summary>An event or snapshot as TSP's journals store it: the serializer's id and manifest beside the bytes.</summary>
public sealed record SerializedPayload(int SerializerId, string Manifest, byte[] Bytes);

/// <summary>What TSP's journals and snapshot stores (SQLite, PostgreSQL) share of Akka's serialization.</summary>
public static class JournalSerialization
{
    /// <summary>Call on the journal actor's thread: actor references need the system's transport information.</summary>
    public static SerializedPayload Serialize(ExtendedActorSystem system, object payload)
    {
        var serializer = system.Serialization.FindSerializerFor(payload);
        var bytes = Akka.Serialization.Serialization.WithTransport<byte[]>(system, () => serializer.ToBinary(payload));
        return new SerializedPayload(serializer.Identifier, Akka.Serialization.Serialization.ManifestFor(serializer, payload), bytes);
    }

    /// <summary>The rows of the writes, each write's rows together; a write that cannot be serialized is
    /// rejected alone (Akka then calls <c>OnPersistRejected</c> for it).</summary>
    /// <returns>The rows and, when any write was rejected, one entry per write (null where it was not),
    /// as <c>WriteMessagesAsync</c> answers.</returns>
    public static (List<List<T>> Rows, System.Collections.Immutable.IImmutableList<Exception>? Rejections) Rows<T>(
        IEnumerable<AtomicWrite> writes, Func<IPersistentRepresentation, T> toRow)
    {
        var rows = new List<List<T>>();
        var rejections = System.Collections.Immutable.ImmutableList.CreateBuilder<Exception>();
        var anyRejected = false;
        foreach (var write in writes)
        {
            try
            {
                rows.Add(((System.Collections.Immutable.IImmutableList<IPersistentRepresentation>)write.Payload).Select(toRow).ToList());
                rejections.Add(null!);
            }
            catch (Exception e)
            {
                rejections.Add(e);
                anyRejected = true;
            }
        }

        return (rows, anyRejected ? rejections.ToImmutable() : null);
    }
}
