using System.Globalization;
using Grpc.Core;
using Tsp.Actors.Protocol;

namespace Tsp.Integration.Tests;

/// <summary>A gRPC subscriber as a client should write one: it reads one project's results from the
/// earliest position and, whenever its stream breaks (the orchestrator died, Redis was away), subscribes
/// again from its last position + 1, to the same address or the next of <c>addresses</c>.</summary>
public sealed class ResubscribingReader : IAsyncDisposable
{
    private readonly string[] _addresses;
    private readonly string _project;
    private readonly List<TpResult> _received = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _reading;
    private int _resubscriptions;

    public ResubscribingReader(string project, params string[] addresses)
    {
        _project = project;
        _addresses = addresses;
        _reading = Task.Run(ReadAsync);
    }

    public int Resubscriptions => Volatile.Read(ref _resubscriptions);

    public List<TpResult> Received
    {
        get
        {
            lock (_received)
            {
                return [.. _received];
            }
        }
    }

    /// <summary>Waits until results of <paramref name="runs"/> distinct runs have arrived.</summary>
    public async Task<List<TpResult>> WaitForRunsAsync(int runs, TimeSpan limit)
    {
        var deadline = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            var received = Received;
            if (received.Select(r => r.RunId).Distinct().Count() >= runs)
            {
                return received;
            }

            Assert.False(_reading.IsCompleted, $"the reader stopped: {_reading.Exception?.GetBaseException().Message}");
            Assert.True(deadline.Elapsed < limit, $"{received.Select(r => r.RunId).Distinct().Count()} of {runs} runs' results arrived within {limit.TotalSeconds} s");
            await Task.Delay(50);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _reading.ContinueWith(_ => { }, TaskScheduler.Default);
        _stop.Dispose();
    }

    private async Task ReadAsync()
    {
        var from = "earliest";
        var address = 0;
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                using var channel = GrpcTestClients.Channel(_addresses[address]);
                using var subscription = new TspService.TspServiceClient(channel).Subscribe(new SubscribeRequest { Projects = { _project }, From = from }, cancellationToken: _stop.Token);
                while (await subscription.ResponseStream.MoveNext(_stop.Token))
                {
                    var result = subscription.ResponseStream.Current;
                    lock (_received)
                    {
                        _received.Add(result);
                    }

                    from = (result.Position + 1).ToString(CultureInfo.InvariantCulture);
                }
            }
            catch (RpcException) when (!_stop.IsCancellationRequested)
            {
                // Broken or refused: the next address, after a pause a client would also take.
                Interlocked.Increment(ref _resubscriptions);
                address = (address + 1) % _addresses.Length;
                await Task.Delay(TimeSpan.FromMilliseconds(250), _stop.Token).ContinueWith(_ => { }, TaskScheduler.Default);
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                return;
            }
        }
    }
}
