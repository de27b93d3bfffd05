namespace Tsp.Actors.Storage;

/// <summary>
/// A node task's inputs as read from Redis, in the task's order; null for a missing one. A frame's
/// range lies in a pooled buffer (the reply as it came off the socket), which goes back to the pool
/// on <see cref="Dispose"/>: the bytes are valid until then, so the routee disposes once the node's
/// output is written, or, for a node that outlives its task (abandoned, cancelled), once it ends.
/// Why pooled: a 64 KiB frame read into a fresh <c>byte[]</c> cost twice the client CPU of the same
/// read into a lease (docs/scaling.md), most of it the garbage collector's.
/// </summary>
public sealed class NodeInputReads : IDisposable
{
    private readonly IDisposable?[] _owners;
    private int _disposed;

    internal NodeInputReads(ReadOnlyMemory<byte>?[] blobs, IDisposable?[] owners)
    {
        Blobs = blobs;
        _owners = owners;
    }

    public IReadOnlyList<ReadOnlyMemory<byte>?> Blobs { get; }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        foreach (var owner in _owners)
        {
            owner?.Dispose();
        }
    }
}
