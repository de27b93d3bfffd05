namespace Tsp.Actors.Hosting;

/// <summary>A server the process needs from its start (Redis, the PostgreSQL journal) does not answer.
/// The message names it and its address, never a password. Hosts exit with their "unreachable" code.</summary>
public sealed class DependencyUnreachableException : Exception
{
    public DependencyUnreachableException()
    {
    }

    public DependencyUnreachableException(string message)
        : base(message)
    {
    }

    public DependencyUnreachableException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>A setting is missing or has a value TSP cannot use; the message names the setting (its
/// configuration key or flag) and what is allowed. Hosts exit with their "usage" code.</summary>
public sealed class SettingException : Exception
{
    public SettingException()
    {
    }

    public SettingException(string message)
        : base(message)
    {
    }

    public SettingException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
