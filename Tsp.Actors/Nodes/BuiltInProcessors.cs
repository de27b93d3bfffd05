using System.Buffers.Binary;
using System.Globalization;
using System.IO.Hashing;

namespace Tsp.Actors.Nodes;

/// <summary>Passes its first input on unchanged.</summary>
public sealed class PassthroughProcessor : INodeProcessor
{
    public string Name => "passthrough";

    public Task<NodeOutput> ProcessAsync(NodeInvocation invocation, CancellationToken cancellationToken)
    {
        var data = invocation.Inputs.Count > 0 ? invocation.Inputs[0].Data : ReadOnlyMemory<byte>.Empty;
        var output = new NodeOutput { Data = data };
        output.Metrics["bytes"] = data.Length;
        return Task.FromResult(output);
    }
}

/// <summary>
/// Hashes all its inputs (XxHash64, in input order) and outputs the 8-byte hash. Its <c>score</c>
/// metric is the hash mapped to [0, 1): a deterministic, data-dependent value for conditions.
/// </summary>
public sealed class ChecksumProcessor : INodeProcessor
{
    public string Name => "checksum";

    public Task<NodeOutput> ProcessAsync(NodeInvocation invocation, CancellationToken cancellationToken)
    {
        var hash = new XxHash64();
        long bytes = 0;
        foreach (var input in invocation.Inputs)
        {
            hash.Append(input.Data.Span);
            bytes += input.Data.Length;
        }

        var value = hash.GetCurrentHashAsUInt64();
        var data = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(data, value);
        var output = new NodeOutput { Data = data };
        output.Metrics["score"] = (value >> 11) * (1.0 / (1UL << 53));
        output.Metrics["bytes"] = bytes;
        output.Labels["checksum"] = value.ToString("x16", CultureInfo.InvariantCulture);
        return Task.FromResult(output);
    }
}

/// <summary>Waits <c>ms</c> milliseconds (default 10), then passes its first input on: a stand-in for
/// a latency-bound model.</summary>
public sealed class SleepProcessor : INodeProcessor
{
    public string Name => "sleep";

    public async Task<NodeOutput> ProcessAsync(NodeInvocation invocation, CancellationToken cancellationToken)
    {
        var ms = invocation.Parameter("ms", 10.0);
        if (ms < 0)
        {
            throw new NodeInputException($"parameter 'ms' = {ms} must not be negative");
        }

        await Task.Delay(TimeSpan.FromMilliseconds(ms), cancellationToken);
        var data = invocation.Inputs.Count > 0 ? invocation.Inputs[0].Data : ReadOnlyMemory<byte>.Empty;
        var output = new NodeOutput { Data = data };
        output.Metrics["slept_ms"] = ms;
        return output;
    }
}

/// <summary>Keeps its thread busy for <c>ms</c> milliseconds (default 5), then passes its first input
/// on: a stand-in for a CPU-bound node (preprocessing, a model on the CPU), where a latency-bound
/// stand-in (<see cref="SleepProcessor"/>) would hide that cores, not slots, are the limit.</summary>
public sealed class SpinProcessor : INodeProcessor
{
    public string Name => "spin";

    public Task<NodeOutput> ProcessAsync(NodeInvocation invocation, CancellationToken cancellationToken)
    {
        var ms = invocation.Parameter("ms", 5.0);
        if (ms < 0)
        {
            throw new NodeInputException($"parameter 'ms' = {ms} must not be negative");
        }

        var until = System.Diagnostics.Stopwatch.GetTimestamp() + (long)(ms * System.Diagnostics.Stopwatch.Frequency / 1000);
        var spins = 0L;
        while (System.Diagnostics.Stopwatch.GetTimestamp() < until && !cancellationToken.IsCancellationRequested)
        {
            spins++;
        }

        var data = invocation.Inputs.Count > 0 ? invocation.Inputs[0].Data : ReadOnlyMemory<byte>.Empty;
        var output = new NodeOutput { Data = data };
        output.Metrics["spun_ms"] = ms;
        output.Metrics["spins"] = spins;
        return Task.FromResult(output);
    }
}

/// <summary>
/// Fails on purpose, for testing retries, timeouts and dead letters: the first <c>hang_attempts</c>
/// attempts (default: none) never return and ignore their cancellation, like a hung native call; the
/// first <c>fail_attempts</c> attempts (default: all) throw; with <c>permanent: true</c> the failure is
/// a non-retryable input error. Later attempts pass their first input on.
/// </summary>
public sealed class FlakyProcessor : INodeProcessor
{
    private static readonly TaskCompletionSource<NodeOutput> Never = new();

    public string Name => "flaky";

    public Task<NodeOutput> ProcessAsync(NodeInvocation invocation, CancellationToken cancellationToken)
    {
        if (invocation.Attempt <= invocation.Parameter("hang_attempts", 0.0))
        {
            return Never.Task;
        }

        var failAttempts = invocation.Parameter("fail_attempts", double.MaxValue);
        if (invocation.Attempt <= failAttempts)
        {
            if (string.Equals(invocation.Parameter("permanent", "false"), "true", StringComparison.OrdinalIgnoreCase))
            {
                throw new NodeInputException($"flaky: permanent failure on attempt {invocation.Attempt}");
            }

            throw new InvalidOperationException($"flaky: failure on attempt {invocation.Attempt}");
        }

        var data = invocation.Inputs.Count > 0 ? invocation.Inputs[0].Data : ReadOnlyMemory<byte>.Empty;
        return Task.FromResult(new NodeOutput { Data = data });
    }
}
