using Tsp.ServiceDefaults.Embedded;

// Prints "kafka: host:port" once the broker answers, then serves until it is stopped.
using var kafka = EmbeddedKafka.Start();
Console.WriteLine($"kafka: {kafka.BootstrapServers}");
using var stop = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    stop.Cancel();
};
AppDomain.CurrentDomain.ProcessExit += (_, _) => stop.Cancel();
await Task.Delay(Timeout.Infinite, stop.Token).ContinueWith(_ => { }, TaskScheduler.Default);
