using Grpc.Core;
using Grpc.Core.Interceptors;
using Tsp.Actors.Hosting;

namespace Tsp.Seed.Grpc;

/// <summary>
/// Bearer-token authentication for the TSP service. With no tokens configured every caller is let
/// in (development); otherwise a call without a known token is UNAUTHENTICATED, and the service
/// checks each project against the token's list (<see cref="ProjectAccess"/>).
/// </summary>
internal sealed class ApiTokenInterceptor(GrpcOptions options) : Interceptor
{
    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        Authenticate(context);
        return continuation(request, context);
    }

    public override Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Authenticate(context);
        return continuation(request, responseStream, context);
    }

    private void Authenticate(ServerCallContext context)
    {
        if (options.Tokens.Count == 0)
        {
            return;
        }

        var header = context.RequestHeaders.GetValue("authorization");
        if (header is null || !header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            throw new RpcException(new Status(StatusCode.Unauthenticated, "missing API token: send metadata 'authorization: Bearer <token>'"));
        }

        var presented = header["Bearer ".Length..].Trim();
        var token = options.Tokens.FirstOrDefault(t => FixedTimeEquals(t.Token, presented))
            ?? throw new RpcException(new Status(StatusCode.Unauthenticated, "unknown API token"));
        context.UserState[typeof(ApiToken)] = token;
    }

    private static bool FixedTimeEquals(string expected, string presented) =>
        System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(
            System.Text.Encoding.UTF8.GetBytes(expected), System.Text.Encoding.UTF8.GetBytes(presented));
}

internal static class ProjectAccess
{
    public static bool Allows(ServerCallContext context, string project) =>
        !context.UserState.TryGetValue(typeof(ApiToken), out var token) || ((ApiToken)token).Allows(project);

    /// <exception cref="RpcException">PERMISSION_DENIED naming the project.</exception>
    public static void Demand(ServerCallContext context, string project)
    {
        if (!Allows(context, project))
        {
            throw new RpcException(new Status(StatusCode.PermissionDenied, $"this API token may not access project '{project}'"));
        }
    }

    /// <exception cref="RpcException">PERMISSION_DENIED: the token may not access the project, or only read it.</exception>
    public static void DemandControl(ServerCallContext context, string project)
    {
        Demand(context, project);
        if (context.UserState.TryGetValue(typeof(ApiToken), out var token) && !((ApiToken)token).MayControl)
        {
            throw new RpcException(new Status(StatusCode.PermissionDenied, $"this API token is read-only: controlling project '{project}' needs a token with Access: control"));
        }
    }

    /// <summary>Models are shared by every project: changing one needs a control token for all projects.</summary>
    /// <exception cref="RpcException">PERMISSION_DENIED naming what is missing.</exception>
    public static void DemandClusterControl(ServerCallContext context, string what)
    {
        if (context.UserState.TryGetValue(typeof(ApiToken), out var held) && held is ApiToken token && !(token.MayControl && token.Projects.Contains("*")))
        {
            throw new RpcException(new Status(StatusCode.PermissionDenied, $"{what} affects every project: it needs a token with Access: control and Projects: [\"*\"]"));
        }
    }

    /// <summary>Who is calling, as control actions record it: the token's holder (no tokens configured: the peer).</summary>
    public static string Caller(ServerCallContext context) =>
        context.UserState.TryGetValue(typeof(ApiToken), out var token) ? ((ApiToken)token).Holder : $"an unauthenticated caller at {context.Peer}";
}
