using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.ML.OnnxRuntime;
using Tsp.Actors.Protocol;
using Tsp.Actors.Telemetry;

namespace Tsp.Actors.Nodes.Onnx;

/// <summary>Settings of the ONNX nodes on a process (section <c>Tsp:Onnx</c>).</summary>
public sealed class OnnxOptions
{
    /// <summary>The model repository (a shared volume in a cluster).</summary>
    public string Repository { get; set; } = Path.Combine(".tsp", "models");

    /// <summary>auto (CUDA on gpu-role processes when it loads, else CPU), cuda, or cpu.</summary>
    public string ExecutionProvider { get; set; } = "auto";

    public int DeviceId { get; set; }

    /// <summary>Threads per session; 0 lets ONNX Runtime choose (one per core), or splits the cores
    /// evenly between a model's sessions when its config.yaml asks for several <c>instances</c>.</summary>
    public int IntraOpThreads { get; set; }

    /// <summary>Whether ONNX Runtime's worker threads spin while waiting for work. Spinning wins in a
    /// bare loop but steals the cores the rest of the node (actors, Redis I/O) needs between batches.</summary>
    public bool AllowSpinning { get; set; }

    /// <summary>How often the repository is checked for new versions.</summary>
    public TimeSpan ReloadInterval { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>Load every model of the repository when a member that runs nodes starts, and be ready
    /// only once they are loaded; false loads each on its first use.</summary>
    public bool LoadAtStart { get; set; } = true;
}

/// <summary>A float32 tensor going into or coming out of a model, its values as little-endian bytes:
/// a tensor payload's bytes go to the model, and the model's outputs come back, without converting
/// (images are megabytes; each avoided copy is a large-object allocation less per image).</summary>
public sealed record TensorData(long[] Dims, ReadOnlyMemory<byte> Bytes)
{
    public TensorData(long[] dims, float[] values)
        : this(dims, MemoryMarshal.AsBytes(values.AsSpan()).ToArray())
    {
    }

    public int Batch => (int)Dims[0];

    public int Length => Bytes.Length / sizeof(float);

    public ReadOnlySpan<float> Span => MemoryMarshal.Cast<byte, float>(Bytes.Span);

    /// <summary>A copy of the values.</summary>
    public float[] Values => Span.ToArray();
}

/// <param name="InferenceMs">ONNX Runtime's time for the whole batch this request ran in.</param>
/// <param name="Instance">Which of the model's instances (config.yaml <c>instances</c>) ran it, from 0.</param>
/// <param name="BatchLimit">The batch limit in use when the batch was gathered (<see cref="BatchTuner"/>).</param>
public sealed record InferenceResult(IReadOnlyDictionary<string, TensorData> Outputs, string Model, int Version, string Provider, int BatchSize, double InferenceMs, int Instance = 0, int BatchLimit = 1);

/// <summary>
/// The models a process serves: per (model, version) its config.yaml's number of ONNX Runtime sessions
/// (instances, default 1), loaded on first use,
/// batched dynamically, and replaced without failing anything in flight when a newer version appears
/// in the repository (loaded and warmed first, then switched to; the old one finishes its queue).
/// </summary>
/// <summary>A model version a process serves, and where it runs (CPU, CUDA).</summary>
/// <param name="Batching">The batching in use and what it was chosen from.</param>
public sealed record ServedModelState(string Model, int Version, string Provider, BatchChoice? Batching = null);

public sealed class OnnxModels : IDisposable
{
    private readonly ConcurrentDictionary<(string Model, int? Pinned), Lazy<Task<ServedModel>>> _served = new();
    private readonly OnnxOptions _options;
    private readonly bool _preferCuda;
    private ILogger _log;
    private readonly Timer _reload;
    private readonly ConcurrentDictionary<string, VersionFiles> _refused = new(StringComparer.Ordinal);
    private long _reloadPasses;
    private readonly Lock _providerLock = new();
    private string? _cudaProblem;
    private int _reloading;
    private readonly IDisposable _gauge;

    // The operator's rules (TspControl LoadModel/UnloadModel), by model; and what this process knows of
    // each version beyond what it serves: loads in progress and why a version did not load.
    private volatile IReadOnlyDictionary<string, ModelRule> _rules = new Dictionary<string, ModelRule>(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<(string Model, int Version), byte> _loading = new();
    private readonly ConcurrentDictionary<(string Model, int Version), string> _problems = new();
    private TaskCompletionSource _rulesKnown = Known();

    /// <summary>How long a load waits for the operator's rules at start before it follows the repository's policy.</summary>
    public static readonly TimeSpan RulesWait = TimeSpan.FromSeconds(10);

    public OnnxModels(ModelRepository repository, OnnxOptions options, bool preferCuda, ILogger? log = null)
    {
        Repository = repository;
        _options = options;
        _preferCuda = options.ExecutionProvider.Equals("cuda", StringComparison.OrdinalIgnoreCase)
            || (preferCuda && options.ExecutionProvider.Equals("auto", StringComparison.OrdinalIgnoreCase));
        _log = log ?? NullLogger.Instance;
        _reload = new Timer(_ => _ = ReloadAsync(), null, options.ReloadInterval, options.ReloadInterval);
        _gauge = TspMetrics.ModelsLoaded.Observe(() => Loaded.Select(m => new Measurement<long>(
            1,
            new KeyValuePair<string, object?>("model", m.Model),
            new KeyValuePair<string, object?>("version", m.Version.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            new KeyValuePair<string, object?>("provider", m.Provider))));
    }

    /// <summary>The model versions serving now, with their execution provider.</summary>
    public IReadOnlyList<ServedModelState> Loaded =>
    [
        .. _served.Where(s => s.Value.IsValueCreated && s.Value.Value.IsCompletedSuccessfully)
            .Select(s => s.Value.Value.Result.Current)
            .Select(m => new ServedModelState(m.Config.Name, m.Version, m.Provider, m.Batching))
            .DistinctBy(m => (m.Model, m.Version, m.Provider))
            .OrderBy(m => m.Model, StringComparer.Ordinal),
    ];

    /// <summary>Loads the served version of each of <paramref name="names"/> (every model of the
    /// repository when null), as Triton does at start, so that the first frames wait for no load.</summary>
    /// <returns>One line per model that did not load, naming it and why; empty when all did.</returns>
    public async Task<IReadOnlyList<string>> LoadAllAsync(IReadOnlyCollection<string>? names = null)
    {
        var problems = new List<string>();
        foreach (var model in names ?? Repository.Models())
        {
            try
            {
                await GetAsync(model, null);
            }
            catch (Exception e) when (e is ModelRepositoryException or IOException or InvalidOperationException)
            {
                problems.Add(e.Message);
            }
        }

        return problems;
    }

    public ModelRepository Repository { get; }

    /// <summary>Loads wait (at most <see cref="RulesWait"/>) until <see cref="ApplyRules"/> is first
    /// called: a member that starts must not serve a version an operator pinned away from.</summary>
    public void ExpectRules() => _rulesKnown = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The operator's rules, as the model-rules entity holds them: an unloaded model stops
    /// serving at once; a pinned one switches to its version (kept on the old one if the pinned version
    /// does not load); a model loaded again is loaded now.</summary>
    public async Task ApplyRules(IEnumerable<ModelRule> rules)
    {
        var next = rules.ToDictionary(r => r.Model, StringComparer.Ordinal);
        var before = _rules;
        _rules = next;
        _rulesKnown.TrySetResult();
        foreach (var rule in next.Values.Where(r => r.Unloaded))
        {
            if (_served.TryRemove((rule.Model, null), out var lazy) && lazy.IsValueCreated && lazy.Value.IsCompletedSuccessfully)
            {
                var served = lazy.Value.Result.Current;
                served.Retire();
                _log.LogInformation("model {Model}: version {Version} unloaded by {Who}", rule.Model, served.Version, rule.ChangedBy);
            }
        }

        // Pins take effect through the reload pass (load, then swap); models loaded again, at once.
        await ReloadAsync();
        foreach (var rule in next.Values.Where(r => !r.Unloaded && (before.GetValueOrDefault(r.Model) is not { } earlier || earlier.Unloaded || earlier.PinnedVersion != r.PinnedVersion)))
        {
            try
            {
                await GetAsync(rule.Model, null);
            }
            catch (ModelRepositoryException e)
            {
                _log.LogWarning("model {Model}: {Problem}", rule.Model, e.Message);
            }
        }
    }

    /// <summary>Every version of every model in the repository, with its state here: READY (served),
    /// LOADING, or UNAVAILABLE and why.</summary>
    public IReadOnlyList<ModelVersionStatus> Index()
    {
        var served = Loaded.ToLookup(m => m.Model, StringComparer.Ordinal);
        var index = new List<ModelVersionStatus>();
        foreach (var model in Repository.Models())
        {
            var rule = _rules.GetValueOrDefault(model);
            string policy;
            try
            {
                var config = Repository.Config(model);
                var wanted = rule is { PinnedVersion: > 0 } ? rule.PinnedVersion : config.PinnedVersion;
                policy = wanted is { } pin ? $"version {pin} is pinned{(rule is { PinnedVersion: > 0 } ? $" by {rule.ChangedBy}" : " in config.yaml")}" : "the latest version is served";
            }
            catch (ModelRepositoryException e)
            {
                index.Add(new ModelVersionStatus { Model = model, State = ModelVersionState.Unavailable, Reason = e.Message });
                continue;
            }

            foreach (var version in Repository.Versions(model))
            {
                var status = new ModelVersionStatus { Model = model, Version = version };
                if (served[model].FirstOrDefault(m => m.Version == version) is { } ready)
                {
                    (status.State, status.Provider) = (ModelVersionState.Ready, ready.Provider);
                }
                else if (_loading.ContainsKey((model, version)))
                {
                    status.State = ModelVersionState.Loading;
                }
                else
                {
                    status.State = ModelVersionState.Unavailable;
                    status.Reason = _problems.TryGetValue((model, version), out var problem) ? problem
                        : rule is { Unloaded: true } ? $"unloaded by {rule.ChangedBy}"
                        : served[model].Any() ? $"not served: {policy}"
                        : "not loaded yet (nothing has used it)";
                }

                index.Add(status);
            }
        }

        return index;
    }

    /// <summary>Where loads, swaps and the CUDA fallback are reported (set once the host's logging exists).</summary>
    public ILogger Logger
    {
        get => _log;
        set => _log = value;
    }

    /// <summary>Whether this machine shows an NVIDIA device (the driver's control node).</summary>
    public static bool GpuPresent => File.Exists("/dev/nvidiactl");

    /// <summary>Why CUDA is not used, once it was tried and failed; null otherwise.</summary>
    public string? CudaProblem => _cudaProblem;

    /// <summary>Runs one request (its batch dimension may be more than 1, e.g. tiles) through the
    /// model's batcher.</summary>
    /// <exception cref="ModelRepositoryException">The model or version is not there, or does not load.</exception>
    /// <exception cref="NodeInputException">The inputs do not fit the model.</exception>
    public async Task<InferenceResult> InferAsync(string model, int? pinnedVersion, IReadOnlyDictionary<string, TensorData> inputs, CancellationToken cancellationToken)
    {
        using var span = TspTracing.Source.StartActivity("tsp.model infer", System.Diagnostics.ActivityKind.Internal);
        span?.SetTag("tsp.model", model);
        while (true)
        {
            var served = await GetAsync(model, pinnedVersion);
            var current = served.Current;
            if (current.TryEnqueue(inputs, cancellationToken, out var result))
            {
                var inferred = await result;
                span?.SetTag("tsp.model_version", inferred.Version);
                span?.SetTag("tsp.provider", inferred.Provider);
                span?.SetTag("tsp.batch_rows", inferred.BatchSize);
                span?.SetTag("tsp.compute_ms", inferred.InferenceMs);
                return inferred;
            }

            // Retired between the lookup and the enqueue: the successor is already current.
        }
    }

    /// <summary>The version now served for a model (loading it if needed).</summary>
    public async Task<int> ServedVersionAsync(string model, int? pinnedVersion = null) => (await GetAsync(model, pinnedVersion)).Current.Version;

    private async Task<ServedModel> GetAsync(string model, int? pinnedVersion)
    {
        if (!_rulesKnown.Task.IsCompleted)
        {
            await Task.WhenAny(_rulesKnown.Task, Task.Delay(RulesWait));
        }

        if (pinnedVersion is null && _rules.GetValueOrDefault(model) is { Unloaded: true } rule)
        {
            throw new ModelRepositoryException($"model '{model}' is unloaded (by {rule.ChangedBy}); load it again with `models --load {model}`");
        }

        return await GetOrLoadAsync(model, pinnedVersion);
    }

    /// <summary>The version an operator pinned for <paramref name="model"/>, if one did.</summary>
    private int? RulePin(string model) => _rules.GetValueOrDefault(model) is { PinnedVersion: > 0 } rule ? rule.PinnedVersion : null;

    private Task<ServedModel> GetOrLoadAsync(string model, int? pinnedVersion) =>
        _served.GetOrAdd((model, pinnedVersion), key => new Lazy<Task<ServedModel>>(() => Task.Run(() =>
        {
            var config = Repository.Config(key.Model);
            if (Repository.ServedVersion(config, key.Pinned ?? RulePin(key.Model)) is not { } version)
            {
                var versions = string.Join(", ", Repository.Versions(key.Model));
                var wanted = key.Pinned ?? RulePin(key.Model) ?? config.PinnedVersion;
                throw new ModelRepositoryException($"model '{key.Model}' has no version {(wanted is null ? "at all" : wanted.Value.ToString(System.Globalization.CultureInfo.InvariantCulture))} in {Repository.Root}/{key.Model} (versions: {(versions.Length > 0 ? versions : "none")})");
            }

            return new ServedModel(Load(config, version));
        }))).Value.ContinueWith(t =>
        {
            if (t.IsFaulted)
            {
                // A failed load is not cached: the next task tries again (the version may be fixed by then).
                _served.TryRemove((model, pinnedVersion), out _);
            }

            return t;
        }, TaskScheduler.Default).Unwrap();

    /// <summary>Loads a version, noting while it loads and, when it does not, why (the index shows both).</summary>
    private LoadedModel Load(ModelConfig config, int version)
    {
        _loading[(config.Name, version)] = 0;
        try
        {
            var loaded = LoadVersion(config, version);
            _problems.TryRemove((config.Name, version), out _);
            return loaded;
        }
        catch (ModelRepositoryException e)
        {
            _problems[(config.Name, version)] = e.Message;
            throw;
        }
        finally
        {
            _loading.TryRemove((config.Name, version), out _);
        }
    }

    private LoadedModel LoadVersion(ModelConfig config, int version)
    {
        var path = Repository.ModelPath(config.Name, version);
        var sessions = new List<InferenceSession>(config.Instances);
        var provider = "CPU";
        try
        {
            for (var i = 0; i < config.Instances; i++)
            {
                (var options, provider) = CreateSessionOptions(config.Instances);
                try
                {
                    sessions.Add(new InferenceSession(path, options));
                }
                catch (OnnxRuntimeException e)
                {
                    throw new ModelRepositoryException($"model '{config.Name}' version {version} ({path}) does not load: {e.Message}", e);
                }
                finally
                {
                    options.Dispose();
                }
            }

            Check(config, version, sessions[0]);
        }
        catch
        {
            sessions.ForEach(session => session.Dispose());
            throw;
        }

        var loaded = new LoadedModel(config, version, sessions, provider, _log);
        try
        {
            loaded.WarmUp();
        }
        catch
        {
            // Its threads release the sessions.
            loaded.Retire();
            throw;
        }

        _log.LogInformation("model {Model} version {Version} loaded on {Provider} (batch ≤ {Batch}, delay ≤ {Delay} ms, {Instances} instance(s) of {Threads} thread(s))", config.Name, version, provider, config.MaxBatchSize, config.MaxQueueDelay.TotalMilliseconds, config.Instances, ThreadsPerInstance(config.Instances) is var t && t > 0 ? t : Environment.ProcessorCount);
        return loaded;
    }

    /// <summary>Intra-op threads per session: as configured, or (0) ONNX Runtime's choice of one per core
    /// for a single instance and the cores split evenly between several, so that instances running
    /// side by side do not oversubscribe the cores.</summary>
    private int ThreadsPerInstance(int instances) =>
        _options.IntraOpThreads > 0 ? _options.IntraOpThreads
        : instances > 1 ? Math.Max(1, Environment.ProcessorCount / instances)
        : 0;

    private SessionOptions NewSessionOptions(int instances)
    {
        var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        if (ThreadsPerInstance(instances) is var threads && threads > 0)
        {
            options.IntraOpNumThreads = threads;
        }

        options.AddSessionConfigEntry("session.intra_op.allow_spinning", _options.AllowSpinning ? "1" : "0");
        return options;
    }

    private (SessionOptions Options, string Provider) CreateSessionOptions(int instances)
    {
        var options = NewSessionOptions(instances);

        if (!_preferCuda || _cudaProblem is not null)
        {
            return (options, "CPU");
        }

        try
        {
            options.AppendExecutionProvider_CUDA(_options.DeviceId);
            return (options, $"CUDA:{_options.DeviceId}");
        }
        catch (OnnxRuntimeException e)
        {
            lock (_providerLock)
            {
                if (_cudaProblem is null)
                {
                    _cudaProblem = $"{e.Message} ({DiagnoseCuda()})";
                    _log.LogWarning("CUDA execution provider unavailable, models run on the CPU provider: {Problem}", _cudaProblem);
                }
            }

            options.Dispose();
            return (NewSessionOptions(instances), "CPU");
        }
    }

    /// <summary>ONNX Runtime says only that the CUDA provider failed to load; the loader says which
    /// library it could not find (e.g. libcublasLt.so.13 of CUDA 13, or libcudnn.so.9).</summary>
    private static string DiagnoseCuda()
    {
        const string provider = "libonnxruntime_providers_cuda.so";
        var path = new[] { AppContext.BaseDirectory, Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native") }
            .Select(folder => Path.Combine(folder, provider)).FirstOrDefault(File.Exists);
        if (path is null)
        {
            return $"{provider} is not beside the application";
        }

        try
        {
            System.Runtime.InteropServices.NativeLibrary.Free(System.Runtime.InteropServices.NativeLibrary.Load(path));
            return $"{provider} loads; see ONNX Runtime's message";
        }
        catch (DllNotFoundException e)
        {
            return e.Message;
        }
        catch (BadImageFormatException e)
        {
            return e.Message;
        }
    }

    /// <summary>config.yaml must describe the model file: every declared tensor exists with a compatible shape.</summary>
    private static void Check(ModelConfig config, int version, InferenceSession session)
    {
        void Compare(IReadOnlyList<TensorSpec> declared, IReadOnlyDictionary<string, NodeMetadata> actual, string kind)
        {
            foreach (var spec in declared)
            {
                if (!actual.TryGetValue(spec.Name, out var meta))
                {
                    throw new ModelRepositoryException($"model '{config.Name}' version {version}: config.yaml names {kind} '{spec.Name}', the model has {string.Join(", ", actual.Keys)}");
                }

                var shape = meta.Dimensions.Select(d => (long)d).ToList();
                if (!spec.Accepts(shape))
                {
                    throw new ModelRepositoryException($"model '{config.Name}' version {version}: config.yaml says {kind} {spec}, the model has {TensorSets.Shape(shape)}");
                }
            }
        }

        Compare(config.Inputs, session.InputMetadata, "input");
        Compare(config.Outputs, session.OutputMetadata, "output");
    }

    private async Task ReloadAsync()
    {
        if (Interlocked.Exchange(ref _reloading, 1) == 1)
        {
            return;
        }

        try
        {
            foreach (var ((model, pinned), lazy) in _served)
            {
                if (pinned is not null || !lazy.IsValueCreated || !lazy.Value.IsCompletedSuccessfully)
                {
                    continue;
                }

                var served = await lazy.Value;
                VersionFiles? candidate = null;
                try
                {
                    var config = Repository.Config(model);
                    if (Repository.ServedVersion(config, RulePin(model)) is { } newest && newest != served.Current.Version)
                    {
                        candidate = VersionFiles.Of(Repository, model, newest);
                        if (_refused.TryGetValue(model, out var refused) && refused == candidate)
                        {
                            continue;
                        }

                        var next = await Task.Run(() => Load(config, newest));
                        var previous = served.Swap(next);
                        previous.Retire();
                        _refused.TryRemove(model, out _);
                        _log.LogInformation("model {Model}: now serving version {Version} (was {Previous})", model, newest, previous.Version);
                    }
                }
                catch (ModelRepositoryException e)
                {
                    // A broken new version must not take down the one being served. It is said once, and
                    // tried again only when its file changes (a copy that was still being written).
                    if (candidate is { } broken)
                    {
                        _refused[model] = broken;
                    }

                    _log.LogWarning("model {Model}: keeping version {Version}: {Problem}", model, served.Current.Version, e.Message);
                }
            }
        }
        finally
        {
            Interlocked.Increment(ref _reloadPasses);
            Volatile.Write(ref _reloading, 0);
        }
    }

    /// <summary>How many times the repository has been checked for new versions.</summary>
    public long ReloadPasses => Interlocked.Read(ref _reloadPasses);

    private static TaskCompletionSource Known()
    {
        var known = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        known.SetResult();
        return known;
    }

    public void Dispose()
    {
        _gauge.Dispose();
        _reload.Dispose();
        foreach (var lazy in _served.Values.Where(l => l.IsValueCreated && l.Value.IsCompletedSuccessfully))
        {
            lazy.Value.Result.Current.Retire();
        }
    }

    /// <summary>A version as its files are now: a refused version is tried again once this changes.</summary>
    private readonly record struct VersionFiles(int Version, DateTime ModelWritten, long ModelLength, DateTime ConfigWritten)
    {
        public static VersionFiles Of(ModelRepository repository, string model, int version)
        {
            var file = new FileInfo(repository.ModelPath(model, version));
            return new(version, file.LastWriteTimeUtc, file.Length, File.GetLastWriteTimeUtc(Path.Combine(repository.Root, model, ModelRepository.ConfigFile)));
        }
    }

    private sealed class ServedModel(LoadedModel initial)
    {
        private LoadedModel _current = initial;

        public LoadedModel Current => Volatile.Read(ref _current);

        public LoadedModel Swap(LoadedModel next) => Interlocked.Exchange(ref _current, next);
    }
}
