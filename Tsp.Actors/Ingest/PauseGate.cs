namespace Tsp.Actors.Ingest;

/// <summary>Where ingest waits while its project is paused: closed and opened on the ingest actor's
/// thread, waited on by the stream's batches. A waiting batch holds the stream back, so the Kafka
/// source pauses its partitions: nothing more is fetched and nothing is committed.</summary>
internal sealed class PauseGate(bool open)
{
    private volatile TaskCompletionSource _opened = NewSource(open);

    public bool IsOpen => _opened.Task.IsCompleted;

    public Task WaitOpenAsync(CancellationToken cancellation) => _opened.Task.WaitAsync(cancellation);

    public void Open() => _opened.TrySetResult();

    public void Close()
    {
        if (IsOpen)
        {
            _opened = NewSource(open: false);
        }
    }

    private static TaskCompletionSource NewSource(bool open)
    {
        var source = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (open)
        {
            source.SetResult();
        }

        return source;
    }
}
