namespace Tsp.Seed.Grpc;

/// <summary>The gRPC gateway of an orchestrator: port, API tokens and TLS (configuration section
/// <c>Tsp:Grpc</c>, flag <c>--grpc-port</c>).</summary>
public sealed class GrpcOptions
{
    public const string Section = "Tsp:Grpc";

    /// <summary>Port of the gRPC gateway on <c>Tsp:Host</c>; 0 picks a free one, -1 turns it off.</summary>
    public int Port { get; set; } = 5000;

    /// <summary>API tokens, each allowed a set of projects ("*": all). None configured: no
    /// authentication (development); one or more: every call needs <c>authorization: Bearer TOKEN</c>.</summary>
    public List<ApiToken> Tokens { get; set; } = [];

    /// <summary>TLS certificate: a PFX/PKCS#12 file, or a PEM certificate with <see cref="CertificateKeyPath"/>.
    /// Empty serves plain HTTP/2 (h2c).</summary>
    public string? CertificatePath { get; set; }

    public string? CertificatePassword { get; set; }

    /// <summary>PEM private key of a PEM <see cref="CertificatePath"/>.</summary>
    public string? CertificateKeyPath { get; set; }
}

public sealed class ApiToken
{
    public string Token { get; set; } = "";

    /// <summary>Who holds it, as control actions record it (a cancelled run's result, a pause); empty:
    /// "token …" and its last four characters.</summary>
    public string Name { get; set; } = "";

    public List<string> Projects { get; set; } = [];

    /// <summary><c>read</c> (the default): results, submissions, status. <c>control</c>: also the
    /// TspControl service (cancel, redrive, pause) on its projects.</summary>
    public string Access { get; set; } = ReadAccess;

    public const string ReadAccess = "read";
    public const string ControlAccess = "control";

    public bool Allows(string project) => Projects.Contains("*") || Projects.Contains(project);

    public bool MayControl => string.Equals(Access, ControlAccess, StringComparison.OrdinalIgnoreCase);

    public string Holder => Name.Length > 0 ? Name : $"token …{Token[Math.Max(0, Token.Length - 4)..]}";
}
