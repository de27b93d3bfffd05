using Akka.Configuration;

namespace Tsp.Tests.Shared;

/// <summary>
/// How much slower than an idle machine the suite may run. Every TestKit wait that has a default or
/// a given bound (ExpectMsg's 3 s, AwaitAssert, ExpectNoMsg, Within) is multiplied by it, so a wait
/// that crosses threads or processes holds while another process takes a core. Default 4;
/// <c>TSP_TEST_TIMEFACTOR</c> overrides it (e.g. 10 on a very busy CI runner).
/// </summary>
public static class TestTiming
{
    public static double Factor =>
        double.TryParse(Environment.GetEnvironmentVariable("TSP_TEST_TIMEFACTOR"), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var factor) && factor >= 1
            ? factor
            : 4;

    /// <summary>TestKit's time factor, for a test actor system's configuration.</summary>
    public static Config Config => ConfigurationFactory.ParseString(FormattableString.Invariant($"akka.test.timefactor = {Factor}"));
}
