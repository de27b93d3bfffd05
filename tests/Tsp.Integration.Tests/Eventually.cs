using System.Diagnostics;
using Xunit.Sdk;

namespace Tsp.Integration.Tests;

/// <summary>Asserts on state that other threads or processes bring about: the assertion is tried until
/// it holds or the deadline passes, and then its last failure is the test's.</summary>
public static class Eventually
{
    public static async Task HoldsAsync(Func<Task> assertion, TimeSpan within)
    {
        var waited = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                await assertion();
                return;
            }
            catch (XunitException) when (waited.Elapsed < within)
            {
                await Task.Delay(250);
            }
        }
    }
}
