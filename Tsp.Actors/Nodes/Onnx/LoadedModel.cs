using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;
using Tsp.Actors.Telemetry;

namespace Tsp.Actors.Nodes.Onnx;

/// <summary>
/// One model version: <see cref="ModelConfig.Instances"/> sessions sharing one request queue, each with
/// a dedicated thread that takes requests, gathers more until the batch limit or the queue delay that
/// <see cref="BatchTuner"/> gives (at most <see cref="ModelConfig.MaxBatchSize"/> and
/// <see cref="ModelConfig.MaxQueueDelay"/>), runs them as one batch (concatenated along dimension 0) and
/// splits the outputs. If a batch fails, its requests run one by one, so a bad item fails alone.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA1001", Justification = "Its batching threads dispose the queue and the sessions once retired and drained.")]
internal sealed class LoadedModel
{
    private readonly BlockingCollection<Request> _queue = new();
    private readonly Instance[] _instances;
    private readonly ILogger _log;
    private readonly KeyValuePair<string, object?> _modelTag;
    private readonly KeyValuePair<string, object?> _versionTag;
    private readonly BatchTuner _tuner;
    private int _running;

    /// <param name="sessions">One per instance, all of the same model file; this object owns them.</param>
    public LoadedModel(ModelConfig config, int version, IReadOnlyList<InferenceSession> sessions, string provider, ILogger log)
    {
        Config = config;
        Version = version;
        Provider = provider;
        _log = log;
        _modelTag = new("model", config.Name);
        _versionTag = new("version", version.ToString(System.Globalization.CultureInfo.InvariantCulture));
        _tuner = new BatchTuner(config.MaxBatchSize, config.MaxQueueDelay, config.LatencyBudget, config.AdaptiveBatching);
        _instances = [.. sessions.Select((session, index) => new Instance(this, session, index))];
        _running = _instances.Length;
        foreach (var instance in _instances)
        {
            instance.Start();
        }
    }

    public ModelConfig Config { get; }

    public int Version { get; }

    public string Provider { get; }

    /// <summary>The batch limit and delay in use, and the costs measured per batch size.</summary>
    public BatchChoice Batching => _tuner.Choice;

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

    /// <summary>Takes no more requests; the queue is finished, then the sessions are released.</summary>
    public void Retire() => _queue.CompleteAdding();

    /// <summary>Runs every instance once, so that the first real batch does not pay ONNX Runtime's
    /// lazy initialization.</summary>
    public void WarmUp()
    {
        foreach (var instance in _instances)
        {
            instance.WarmUp();
        }
    }

    /// <summary>Triton's split: the time each request waited for its batch, and the batch's compute.</summary>
    /// <param name="started">When the batch left the queue (a Stopwatch timestamp).</param>
    private void CountBatch(List<Request> batch, long started, int rows, double inferenceMs)
    {
        TspMetrics.ModelBatches.Add(1, _modelTag, _versionTag);
        TspMetrics.ModelInferences.Add(batch.Count, _modelTag, _versionTag);
        TspMetrics.ModelBatchSize.Record(rows, _modelTag, _versionTag);
        TspMetrics.ModelComputeTime.Record(inferenceMs / 1000, _modelTag, _versionTag);
        foreach (var request in batch)
        {
            TspMetrics.ModelQueueTime.Record(System.Diagnostics.Stopwatch.GetElapsedTime(request.EnqueuedAt, started).TotalSeconds, _modelTag, _versionTag);
        }
    }

    /// <summary>One session and the thread that feeds it batches from the shared queue.</summary>
    private sealed class Instance(LoadedModel model, InferenceSession session, int index)
    {
        private readonly RunOptions _runOptions = new();
        private readonly string[] _outputNames = [.. session.OutputMetadata.Keys];
        private Thread? _thread;

        private ModelConfig Config => model.Config;

        public void Start()
        {
            _thread = new Thread(Loop) { IsBackground = true, Name = $"onnx-{Config.Name}-v{model.Version}-{index}" };
            _thread.Start();
        }

        public void WarmUp()
        {
            var inputs = session.InputMetadata.ToDictionary(
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
            var queue = model._queue;
            Request? carried = null;
            try
            {
                while (true)
                {
                    if (carried is null && !queue.TryTake(out carried, Timeout.Infinite))
                    {
                        break;
                    }

                    var batch = new List<Request> { carried! };
                    var rows = carried!.Rows;
                    carried = null;
                    var (limit, delay) = model._tuner.Next(queue.Count);
                    var deadline = DateTime.UtcNow + delay;
                    while (rows < limit)
                    {
                        var wait = deadline - DateTime.UtcNow;
                        if (!queue.TryTake(out var next, wait > TimeSpan.Zero ? wait : TimeSpan.Zero))
                        {
                            break;
                        }

                        if (rows + next.Rows > limit || !next.FitsWith(batch[0]))
                        {
                            carried = next;
                            break;
                        }

                        batch.Add(next);
                        rows += next.Rows;
                    }

                    Execute(batch, limit);
                }

                if (carried is not null)
                {
                    Execute([carried], 1);
                }
            }
            finally
            {
                session.Dispose();
                _runOptions.Dispose();
                if (Interlocked.Decrement(ref model._running) == 0)
                {
                    queue.Dispose();
                }
            }
        }

        /// <param name="limit">The batch limit it was gathered under (reported in each result).</param>
        private void Execute(List<Request> batch, int limit)
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
                var queued = System.Diagnostics.Stopwatch.GetTimestamp();
                var (outputs, inferenceMs) = Run(batch);
                var rows = batch.Sum(r => r.Rows);
                model.CountBatch(batch, queued, rows, inferenceMs);
                model._tuner.Record(rows, inferenceMs);
                for (var i = 0; i < batch.Count; i++)
                {
                    batch[i].Completion.TrySetResult(new InferenceResult(outputs[i], Config.Name, model.Version, model.Provider, rows, inferenceMs, index, limit));
                }
            }
            catch (Exception e) when (batch.Count > 1)
            {
                model._log.LogDebug(e, "model {Model} v{Version}: a batch of {Count} failed; running its requests one by one", Config.Name, model.Version, batch.Count);
                foreach (var request in batch)
                {
                    Execute([request], limit);
                }
            }
            catch (Exception e)
            {
                TspMetrics.ModelFailures.Add(1, model._modelTag, model._versionTag);
                batch[0].Completion.TrySetException(e is OnnxRuntimeException
                    ? new NodeInputException($"model '{Config.Name}' v{model.Version} rejected its input: {e.Message}", e)
                    : e);
            }
        }

        /// <returns>Each request's outputs (its rows of every output, in request order) and how long ONNX
        /// Runtime took for the batch. The batch input is assembled in a pooled buffer, and each request's
        /// rows are copied once, straight out of ONNX Runtime's output.</returns>
        private (Dictionary<string, TensorData>[] Outputs, double InferenceMs) Run(List<Request> batch)
        {
            var names = new List<string>();
            var values = new List<OrtValue>();
            var rented = new List<float[]>();
            try
            {
                foreach (var name in session.InputMetadata.Keys)
                {
                    var parts = batch.Select(r => r.Inputs.TryGetValue(name, out var t) ? t : throw new NodeInputException($"model '{Config.Name}' needs input '{name}'")).ToList();
                    var dims = (long[])parts[0].Dims.Clone();
                    dims[0] = parts.Sum(p => p.Dims[0]);
                    var length = parts.Sum(p => p.Length);
                    var buffer = ArrayPool<float>.Shared.Rent(length);
                    rented.Add(buffer);
                    var offset = 0;
                    foreach (var part in parts)
                    {
                        part.Span.CopyTo(buffer.AsSpan(offset));
                        offset += part.Length;
                    }

                    names.Add(name);
                    values.Add(OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, buffer.AsMemory(0, length), dims));
                }

                var started = System.Diagnostics.Stopwatch.GetTimestamp();
                using var results = session.Run(_runOptions, names, values, _outputNames);
                var inferenceMs = System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds;
                var outputs = batch.Select(_ => new Dictionary<string, TensorData>(StringComparer.Ordinal)).ToArray();
                for (var o = 0; o < _outputNames.Length; o++)
                {
                    var shape = results[o].GetTensorTypeAndShape().Shape;
                    var whole = results[o].GetTensorDataAsSpan<float>();
                    var rowSize = shape[0] == 0 ? 0 : whole.Length / (int)shape[0];
                    var firstRow = 0;
                    for (var r = 0; r < batch.Count; r++)
                    {
                        var rows = batch[r].Rows;
                        var dims = (long[])shape.Clone();
                        dims[0] = rows;
                        var mine = MemoryMarshal.AsBytes(whole.Slice(firstRow * rowSize, rows * rowSize)).ToArray();
                        outputs[r][_outputNames[o]] = new TensorData(dims, mine);
                        firstRow += rows;
                    }
                }

                return (outputs, inferenceMs);
            }
            finally
            {
                foreach (var value in values)
                {
                    value.Dispose();
                }

                foreach (var buffer in rented)
                {
                    ArrayPool<float>.Shared.Return(buffer);
                }
            }
        }
    }

    private sealed record Request(IReadOnlyDictionary<string, TensorData> Inputs, CancellationToken Cancellation)
    {
        public TaskCompletionSource<InferenceResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public long EnqueuedAt { get; } = System.Diagnostics.Stopwatch.GetTimestamp();

        public int Rows => Inputs.Values.First().Batch;

        /// <summary>Batchable together: same inputs with the same shape beyond the batch dimension.</summary>
        public bool FitsWith(Request other) =>
            Inputs.Count == other.Inputs.Count && Inputs.All(i => other.Inputs.TryGetValue(i.Key, out var o) && i.Value.Dims.AsSpan(1).SequenceEqual(o.Dims.AsSpan(1)));
    }
}
