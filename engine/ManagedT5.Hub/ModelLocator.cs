// Turns what a user typed (a folder or a hub id like google/flan-t5-small) into a local model folder: the folder itself,
// else a checkpoint placed in weights/{id}/, else the HuggingFace cache's snapshot, else a download into that cache.
using System.Text.RegularExpressions;

namespace ManagedT5.Hub;

/// <summary>Resolves a model folder or hub id to a local folder, downloading it when needed.</summary>
public static partial class ModelLocator
{
    /// <summary>
    /// A local folder for <paramref name="modelOrHubId"/>, in this order:
    /// <list type="number">
    /// <item>an existing folder: itself (its full path);</item>
    /// <item>a hub id (<c>org/name</c> or <c>name</c>): <c>{WeightsDirectory}/{id}/</c> when complete (checkpoints a user
    /// placed there; nothing is downloaded into it);</item>
    /// <item>else the snapshot of <see cref="HubOptions.Revision"/> in <see cref="HubOptions.CacheDir"/> (the HuggingFace
    /// cache, shared with Python), then in each of <see cref="HubOptions.CacheDirectories"/>, when complete;</item>
    /// <item>else a download from <c>{Endpoint}/{id}/resolve/{revision}/{file}</c> into <see cref="HubOptions.CacheDir"/> in
    /// huggingface_hub's layout, returning <c>{CacheDir}/models--{org}--{name}/snapshots/{commit}/</c>
    /// (not when <see cref="HubOptions.Offline"/>: then a <see cref="HubException"/> says where it looked and what to do).</item>
    /// </list>
    /// "Complete" means config.json, model.safetensors (or its index and every shard) and spiece.model (or tokenizer.json),
    /// each of them usable: JSON that parses to an object, a safetensors header that reads, a non-empty spiece.model.
    /// </summary>
    /// <exception cref="ArgumentException">Empty input, a string that is neither a folder nor a hub id, or bad options.</exception>
    /// <exception cref="DirectoryNotFoundException">A path (./x, /x, a/b/c, x\y) that does not exist.</exception>
    /// <exception cref="HubException">Not found on the hub, refused (gated), corrupt, offline, or the network failed.</exception>
    /// <exception cref="IOException">The disk failed, or another process is downloading the same file.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public static string Resolve(string modelOrHubId, HubOptions? options = null, IProgress<DownloadProgress>? progress = null,
        CancellationToken cancellationToken = default) =>
        ResolveAsync(modelOrHubId, options, progress, cancellationToken).GetAwaiter().GetResult();

    /// <summary>The same as <see cref="Resolve"/>, without blocking a thread while downloading.</summary>
    public static async Task<string> ResolveAsync(string modelOrHubId, HubOptions? options = null,
        IProgress<DownloadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(modelOrHubId);
        cancellationToken.ThrowIfCancellationRequested();
        if (Directory.Exists(modelOrHubId)) return Path.GetFullPath(modelOrHubId);

        if (!IsHubId(modelOrHubId))
        {
            if (LooksLikePath(modelOrHubId))
                throw new DirectoryNotFoundException(
                    $"Model folder '{modelOrHubId}' does not exist. Give a folder with config.json, model.safetensors and spiece.model, " +
                    "or a hub id such as google/flan-t5-small.");
            throw new ArgumentException(
                $"'{modelOrHubId}' is neither an existing folder nor a hub id (org/name of letters, digits, '-', '_' and '.', " +
                "such as google/flan-t5-small).", nameof(modelOrHubId));
        }

        options ??= new HubOptions();
        Validate(options);
        string id = modelOrHubId;
        string? local = string.IsNullOrWhiteSpace(options.WeightsDirectory) ? null : Path.GetFullPath(Path.Combine(options.WeightsDirectory, id));
        if (local is not null && ModelFolder.IsComplete(local)) return local;
        string? cache = CacheDirectory(options);
        var caches = new List<string>(options.CacheDirectories.Where(d => !string.IsNullOrWhiteSpace(d)));
        if (cache is not null) caches.Insert(0, cache);
        foreach (string dir in caches)
            if (HubCache.FindSnapshot(dir, id, options.Revision) is string snapshot)
                return snapshot;

        if (options.Offline || cache is null)
        {
            var places = new List<string>();
            if (local is not null) places.Add(local);
            if (cache is not null) places.Add($"the HF cache {Path.Combine(cache, HubCache.RepoFolderName(id))}");
            places.AddRange(options.CacheDirectories.Where(d => !string.IsNullOrWhiteSpace(d))
                .Select(d => Path.Combine(Path.GetFullPath(d), HubCache.RepoFolderName(id))));
            string looked = places.Count == 0 ? "nowhere" : string.Join(", ", places);
            string fix = cache is null
                ? "Set HF_HUB_CACHE (or HubOptions.CacheDir, --cache-dir) to a folder downloads may go to"
                : $"Run once without --offline and with HF_HUB_OFFLINE unset to download it into {cache}";
            throw new HubException(
                (options.Offline
                    ? $"'{id}' is not on this machine and offline mode is on (--offline or HF_HUB_OFFLINE), so it was not downloaded. "
                    : $"'{id}' is not on this machine and there is no cache folder to download it into (no home folder). ") +
                $"Looked in {looked}. {fix}, or pass a local folder that holds {ModelFolder.FileListForHumans} with --model DIR.", id);
        }

        using var downloader = new HubDownloader(id, options, progress);
        return await downloader.DownloadAsync(cache, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The cache downloads go to: <see cref="HubOptions.CacheDir"/>, or the environment's default when it is empty.</summary>
    private static string? CacheDirectory(HubOptions options) =>
        (string.IsNullOrWhiteSpace(options.CacheDir) ? HubEnvironment.CacheDirectory(Environment.GetEnvironmentVariable) : options.CacheDir)
            is string dir ? Path.GetFullPath(dir) : null;

    /// <summary>huggingface_hub's repo id rule: <c>name</c> or <c>org/name</c>, parts of [A-Za-z0-9_.-], no "--" or "..",
    /// not starting or ending with '-' or '.', at most 96 characters.</summary>
    internal static bool IsHubId(string s) =>
        s.Length <= 96 && HubIdPattern().IsMatch(s) && !s.Contains("--", StringComparison.Ordinal) && !s.Contains("..", StringComparison.Ordinal);

    [GeneratedRegex(@"^(?:[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_])?/)?[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_])?$")]
    private static partial Regex HubIdPattern();

    private static bool LooksLikePath(string s) =>
        Path.IsPathRooted(s) || s.StartsWith('.') || s.Contains('\\') ||
        s.Count(c => c == '/') > 1 || s.EndsWith('/');

    private static void Validate(HubOptions o)
    {
        if (!Uri.TryCreate(o.Endpoint, UriKind.Absolute, out Uri? endpoint) || endpoint.Scheme is not ("http" or "https"))
            throw new ArgumentException($"Endpoint '{o.Endpoint}' is not an http(s) URL (check HF_ENDPOINT).", nameof(o.Endpoint));
        if (string.IsNullOrWhiteSpace(o.Revision) || o.Revision.Contains("..", StringComparison.Ordinal) || o.Revision.StartsWith('/') ||
            o.Revision.Contains('\\'))
            throw new ArgumentException($"Revision '{o.Revision}' is not a branch, tag or commit name.", nameof(o.Revision));
        if (o.ReadTimeout <= TimeSpan.Zero && o.ReadTimeout != Timeout.InfiniteTimeSpan)
            throw new ArgumentException($"ReadTimeout must be positive, got {o.ReadTimeout}.", nameof(o.ReadTimeout));
        if (o.MaxRetries < 0) throw new ArgumentException($"MaxRetries must not be negative, got {o.MaxRetries}.", nameof(o.MaxRetries));
        if (o.RetryDelay < TimeSpan.Zero) throw new ArgumentException($"RetryDelay must not be negative, got {o.RetryDelay}.", nameof(o.RetryDelay));
        if (o.MinimumBytesPerSecond < 0)
            throw new ArgumentException($"MinimumBytesPerSecond must not be negative, got {o.MinimumBytesPerSecond}.", nameof(o.MinimumBytesPerSecond));
        if (o.MinimumRateWindow <= TimeSpan.Zero)
            throw new ArgumentException($"MinimumRateWindow must be positive, got {o.MinimumRateWindow}.", nameof(o.MinimumRateWindow));
    }
}
