// Where ModelLocator looks and how it downloads; defaults come from the same environment variables huggingface_hub reads.
namespace ManagedT5.Hub;

/// <summary>
/// Options for <see cref="ModelLocator"/>. Every default is read when the record is created: <c>HF_ENDPOINT</c>,
/// <c>HF_TOKEN</c>, <c>HF_HUB_OFFLINE</c>, <c>HF_HUB_CACHE</c> / <c>HF_HOME</c>, and the current directory.
/// </summary>
public sealed record HubOptions
{
    /// <summary>The hub's base URL (env <c>HF_ENDPOINT</c>, else https://huggingface.co).</summary>
    public string Endpoint { get; init; } = HubEnvironment.Endpoint(Environment.GetEnvironmentVariable);

    /// <summary>Branch, tag or commit to download (default "main").</summary>
    public string Revision { get; init; } = "main";

    /// <summary>Access token sent as <c>Authorization: Bearer</c> (env <c>HF_TOKEN</c>); needed for gated or private repos.</summary>
    public string? Token { get; init; } = HubEnvironment.Token(Environment.GetEnvironmentVariable);

    /// <summary>Never touch the network (env <c>HF_HUB_OFFLINE</c>=1): only local folders and the HF cache are used.</summary>
    public bool Offline { get; init; } = HubEnvironment.Offline(Environment.GetEnvironmentVariable);

    /// <summary>Where hub ids are looked up and downloaded to, one folder per id (default: <c>weights/</c> under the
    /// current directory, which is the repository's weights/ when run from the repository root).</summary>
    public string WeightsDirectory { get; init; } = Path.Combine(Environment.CurrentDirectory, "weights");

    /// <summary>HuggingFace cache folders searched before downloading (layout <c>models--{org}--{name}/snapshots/{commit}/</c>).
    /// Default: env <c>HF_HUB_CACHE</c>, else <c>HF_HOME/hub</c>, else <c>~/.cache/huggingface/hub</c>.</summary>
    public IReadOnlyList<string> CacheDirectories { get; init; } = HubEnvironment.CacheDirectories(Environment.GetEnvironmentVariable);

    /// <summary>cache_dir (as in HF's <c>from_pretrained</c>): the HuggingFace cache that hub ids are looked up in and
    /// downloaded to, in huggingface_hub's layout (shared with Python). Default: env <c>HF_HUB_CACHE</c>, else
    /// <c>HF_HOME/hub</c>, else <c>~/.cache/huggingface/hub</c>. (Downloads are moving here from weights/: issue 14.)</summary>
    public string? CacheDir { get; init; }

    /// <summary>A client to send requests with (not disposed; its own timeout and redirect settings apply).
    /// Null: a client is made for each download.</summary>
    public HttpClient? HttpClient { get; init; }

    /// <summary>A handler for the client made for each download (not disposed), when <see cref="HttpClient"/> is null.</summary>
    public HttpMessageHandler? HttpMessageHandler { get; init; }

    /// <summary>Longest wait for a connection, for response headers, or for the next bytes of a body (default 2 minutes).
    /// Past it the attempt fails as a network error.</summary>
    public TimeSpan ReadTimeout { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>How many times a file is retried, resuming where it stopped, after a network error or a 5xx/429 answer (default 3).</summary>
    public int MaxRetries { get; init; } = 3;

    /// <summary>Wait before the first retry; doubled for each further one (default 1 second).</summary>
    public TimeSpan RetryDelay { get; init; } = TimeSpan.FromSeconds(1);
}

/// <summary>The environment variables huggingface_hub reads, as pure functions of a lookup (so tests need not set them).</summary>
internal static class HubEnvironment
{
    public const string DefaultEndpoint = "https://huggingface.co";

    public static string Endpoint(Func<string, string?> env) => NonEmpty(env("HF_ENDPOINT"))?.TrimEnd('/') ?? DefaultEndpoint;

    public static string? Token(Func<string, string?> env) => NonEmpty(env("HF_TOKEN"))?.Trim();

    /// <summary>huggingface_hub's truthy values: 1, ON, YES, TRUE (any case).</summary>
    public static bool Offline(Func<string, string?> env) =>
        NonEmpty(env("HF_HUB_OFFLINE"))?.Trim().ToUpperInvariant() is "1" or "ON" or "YES" or "TRUE";

    /// <summary>HF_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.</summary>
    public static IReadOnlyList<string> CacheDirectories(Func<string, string?> env)
    {
        if (NonEmpty(env("HF_HUB_CACHE")) is string hubCache) return [hubCache];
        if (NonEmpty(env("HF_HOME")) is string home) return [Path.Combine(home, "hub")];
        if (NonEmpty(env("XDG_CACHE_HOME")) is string xdg) return [Path.Combine(xdg, "huggingface", "hub")];
        string user = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        return string.IsNullOrEmpty(user) ? [] : [Path.Combine(user, ".cache", "huggingface", "hub")];
    }

    private static string? NonEmpty(string? s) => string.IsNullOrWhiteSpace(s) ? null : s;
}
