using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;

namespace Tsp.Actors.Nodes.Onnx;

/// <summary>
/// One session of one model version and its batcher: a dedicated thread takes requests, gathers more
/// until <see cref="ModelConfig.MaxBatchSize"/> or <see cref="ModelConfig.MaxQueueDelay"/>, runs them as
/// one batch (concatenated along dimension 0) and splits the outputs. If a batch fails, its requests
/// run one by one, so a bad item fails alone.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA1001", Justification = "Its batching thread disposes the queue and the session once retired and drained.")]
internal sealed class LoadedModel
{
    private readonly BlockingCollection<Request> _queue = new();
    private readonly InferenceSession _session;
    private readonly RunOptions _runOptions = new();
    private readonly ILogger _log;
    private readonly Thread _thread;
    private readonly string[] _outputNames;

    public LoadedModel(ModelConfig config, int version, InferenceSession session, string provider, ILogger log)
    {
        Config = config;
        Version = version;
        _session = session;
        Provider = provider;
        _log = log;
        _outputNames = session.OutputMetadata.Keys.ToArray();
        _thread = new Thread(Loop) { IsBackground = true, Name = $"onnx-{config.Name}-v{version}" };
        _thread.Start();
    }

    public ModelConfig Config { get; }

    public int Version { get; }

    public string Provider { get; }

    public bool TryEnqueue(IReadOnlyDictionary<string, TensorData> inputs, CancellationToken cancellationToken, out Task<InferenceResult> result)
    {
        var request = new Request(inputs, cancellationToken);
        result = request.Completion.Task;
        try
        {
            _queue.Add(request, CancellationToken.None);
            return true;
        }
        catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException)
        {
            return false;
        }
    }

    /// <summary>Takes no more requests; the queue is finished, then the session is released.</summary>
    public void Retire() => _queue.CompleteAdding();

    public void WarmUp()
    {
        var inputs = _session.InputMetadata.ToDictionary(
            m => m.Key,
            m =>
            {
                var declared = Config.Inputs.FirstOrDefault(s => s.Name == m.Key)?.Shape ?? m.Value.Dimensions.Select(d => (long)d).ToList();
                var dims = declared.Select((d, i) => d > 0 ? d : i == 0 ? 1 : 64).ToArray();
                return new TensorData(dims, new float[TensorSets.ElementCount(dims)]);
            });
        Run([new Request(inputs, CancellationToken.None)]);
    }

    private void Loop()
    {
        Request? carried = null;
        try
        {
            while (true)
            {
                if (carried is null && !_queue.TryTake(out carried, Timeout.Infinite))
                {
                    break;
                }

                var batch = new List<Request> { carried! };
                var rows = carried!.Rows;
                carried = null;
                var deadline = DateTime.UtcNow + Config.MaxQueueDelay;
                while (rows < Config.MaxBatchSize)
                {
                    var wait = deadline - DateTime.UtcNow;
                    if (!_queue.TryTake(out var next, wait > TimeSpan.Zero ? wait : TimeSpan.Zero))
                    {
                        break;
                    }

                    if (rows + next.Rows > Config.MaxBatchSize || !next.FitsWith(batch[0]))
                    {
                        carried = next;
                        break;
                    }

                    batch.Add(next);
                    rows += next.Rows;
                }

                Execute(batch);
            }

            if (carried is not null)
            {
                Execute([carried]);
            }
        }
        finally
        {
            _session.Dispose();
            _runOptions.Dispose();
            _queue.Dispose();
        }
    }

    private void Execute(List<Request> batch)
    {
        batch.RemoveAll(r =>
        {
            if (r.Cancellation.IsCancellationRequested)
            {
                r.Completion.TrySetCanceled(r.Cancellation);
                return true;
            }

            return false;
        });
        if (batch.Count == 0)
        {
            return;
        }

        try
        {
            var (outputs, inferenceMs) = Run(batch);
            Complete(batch, outputs, inferenceMs);
        }
        catch (Exception e) when (batch.Count > 1)
        {
            _log.LogDebug(e, "model {Model} v{Version}: a batch of {Count} failed; running its requests one by one", Config.Name, Version, batch.Count);
            foreach (var request in batch)
            {
                Execute([request]);
            }
        }
        catch (Exception e)
        {
            batch[0].Completion.TrySetException(e is OnnxRuntimeException
                ? new NodeInputException($"model '{Config.Name}' v{Version} rejected its input: {e.Message}", e)
                : e);
        }
    }

    private void Complete(List<Request> batch, Dictionary<string, TensorData> outputs, double inferenceMs)
    {
        var offset = 0;
        foreach (var request in batch)
        {
            var mine = outputs.ToDictionary(o => o.Key, o => Slice(o.Value, offset, request.Rows));
            offset += request.Rows;
            request.Completion.TrySetResult(new InferenceResult(mine, Config.Name, Version, Provider, batch.Sum(r => r.Rows), inferenceMs));
        }
    }

    private static TensorData Slice(TensorData whole, int firstRow, int rows)
    {
        var rowSize = whole.Values.Length / whole.Batch;
        var dims = (long[])whole.Dims.Clone();
        dims[0] = rows;
        return new TensorData(dims, whole.Values.AsSpan(firstRow * rowSize, rows * rowSize).ToArray());
    }

    /// <returns>The batch's outputs and how long ONNX Runtime took to run it.</returns>
    private (Dictionary<string, TensorData> Outputs, double InferenceMs) Run(List<Request> batch)
    {
        var names = new List<string>();
        var values = new List<OrtValue>();
        try
        {
            foreach (var name in _session.InputMetadata.Keys)
            {
                var parts = batch.Select(r => r.Inputs.TryGetValue(name, out var t) ? t : throw new NodeInputException($"model '{Config.Name}' needs input '{name}'")).ToList();
                var dims = (long[])parts[0].Dims.Clone();
                dims[0] = parts.Sum(p => p.Dims[0]);
                var data = parts.Count == 1 ? parts[0].Values : Concatenate(parts);
                names.Add(name);
                values.Add(OrtValue.CreateTensorValueFromMemory(data, dims));
            }

            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            using var results = _session.Run(_runOptions, names, values, _outputNames);
            var inferenceMs = System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds;
            var outputs = new Dictionary<string, TensorData>(StringComparer.Ordinal);
            for (var i = 0; i < _outputNames.Length; i++)
            {
                var shape = results[i].GetTensorTypeAndShape().Shape;
                outputs[_outputNames[i]] = new TensorData(shape, results[i].GetTensorDataAsSpan<float>().ToArray());
            }

            return (outputs, inferenceMs);
        }
        finally
        {
            foreach (var value in values)
            {
                value.Dispose();
            }
        }
    }

    private static float[] Concatenate(List<TensorData> parts)
    {
        var data = GC.AllocateUninitializedArray<float>(parts.Sum(p => p.Values.Length));
        var offset = 0;
        foreach (var part in parts)
        {
            part.Values.CopyTo(data, offset);
            offset += part.Values.Length;
        }

        return data;
    }

    private sealed record Request(IReadOnlyDictionary<string, TensorData> Inputs, CancellationToken Cancellation)
    {
        public TaskCompletionSource<InferenceResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Rows => Inputs.Values.First().Batch;

        /// <summary>Batchable together: same inputs with the same shape beyond the batch dimension.</summary>
        public bool FitsWith(Request other) =>
            Inputs.Count == other.Inputs.Count && Inputs.All(i => other.Inputs.TryGetValue(i.Key, out var o) && i.Value.Dims.AsSpan(1).SequenceEqual(o.Dims.AsSpan(1)));
    }
}
