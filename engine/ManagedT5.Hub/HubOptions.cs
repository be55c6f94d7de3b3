// Where ModelLocator looks and how it downloads; defaults come from the same environment variables huggingface_hub reads.
namespace ManagedT5.Hub;

/// <summary>
/// Options for <see cref="ModelLocator"/>. Every default is read when the record is created: <c>HF_ENDPOINT</c>,
/// <c>HF_TOKEN</c>, <c>HF_HUB_OFFLINE</c>, <c>HF_HUB_CACHE</c> / <c>HF_HOME</c> / <c>XDG_CACHE_HOME</c>, and the current
/// directory.
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

    /// <summary>cache_dir (as in HF's <c>from_pretrained</c>): the HuggingFace cache that hub ids are looked up in and
    /// downloaded to, in huggingface_hub's layout, so Python and ManagedT5 share one copy:
    /// <c>models--{org}--{name}/blobs/{etag}</c>, <c>snapshots/{commit}/{file}</c> (links to the blobs), <c>refs/{revision}</c>.
    /// Default: env <c>HF_HUB_CACHE</c>, else <c>HF_HOME/hub</c>, else <c>XDG_CACHE_HOME/huggingface/hub</c>, else
    /// <c>~/.cache/huggingface/hub</c>. Null (or empty) also means that default.</summary>
    public string? CacheDir { get; init; } = HubEnvironment.CacheDirectory(Environment.GetEnvironmentVariable);

    /// <summary>A folder of checkpoints a user placed by hand, one folder per id (<c>{WeightsDirectory}/{org}/{name}/</c>),
    /// searched before the cache; nothing is ever downloaded into it. Default: <c>weights/</c> under the current directory
    /// (the repository's weights/ when run from the repository root). Null or empty: not searched.</summary>
    public string? WeightsDirectory { get; init; } = Path.Combine(Environment.CurrentDirectory, "weights");

    /// <summary>More HuggingFace caches searched (read-only) after <see cref="CacheDir"/>, e.g. a shared read-only copy.
    /// Default: none.</summary>
    public IReadOnlyList<string> CacheDirectories { get; init; } = [];

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

    /// <summary>The slowest a body may arrive, averaged over each <see cref="MinimumRateWindow"/> (default 1,000 bytes/s; 0:
    /// no limit). Like curl's <c>--speed-limit</c>/<c>--speed-time</c>: a server that trickles bytes fast enough to beat
    /// <see cref="ReadTimeout"/> but too slowly to ever finish fails the attempt as a network error (retried, resuming).</summary>
    public long MinimumBytesPerSecond { get; init; } = 1_000;

    /// <summary>The window <see cref="MinimumBytesPerSecond"/> is averaged over (default 30 seconds).</summary>
    public TimeSpan MinimumRateWindow { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Test hook: write the cache as where symbolic links cannot be made (Windows without developer mode).</summary>
    internal bool NoSymlinksForTests { get; init; }
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

    /// <summary>huggingface_hub's cache folder: HF_HUB_CACHE (or its old name HUGGINGFACE_HUB_CACHE), else HF_HOME/hub, else
    /// XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub; a leading ~ is the home folder. Null when there is no
    /// home folder to put it in.</summary>
    public static string? CacheDirectory(Func<string, string?> env)
    {
        string user = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        string? Expand(string path) =>
            path == "~" || path.StartsWith("~/", StringComparison.Ordinal) || path.StartsWith(@"~\", StringComparison.Ordinal)
                ? string.IsNullOrEmpty(user) ? null : user + path[1..]
                : path;

        if ((NonEmpty(env("HF_HUB_CACHE")) ?? NonEmpty(env("HUGGINGFACE_HUB_CACHE"))) is string hubCache) return Expand(hubCache);
        if (NonEmpty(env("HF_HOME")) is string home) return Expand(home) is string h ? Path.Combine(h, "hub") : null;
        if (NonEmpty(env("XDG_CACHE_HOME")) is string xdg) return Expand(xdg) is string x ? Path.Combine(x, "huggingface", "hub") : null;
        return string.IsNullOrEmpty(user) ? null : Path.Combine(user, ".cache", "huggingface", "hub");
    }

    private static string? NonEmpty(string? s) => string.IsNullOrWhiteSpace(s) ? null : s;
}
