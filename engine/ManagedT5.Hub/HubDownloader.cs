// Downloads one hub repo's checkpoint files over HttpClient into the HuggingFace cache, in huggingface_hub's layout, so
// Python reads what we write and we read what it writes (https://huggingface.co/docs/hub/local-cache):
//
//   {cache}/models--{org}--{name}/blobs/{etag}              a finished, checked file (etag: sha256 for LFS, git sha1 otherwise)
//   {cache}/models--{org}--{name}/blobs/{etag}.incomplete   bytes so far; a later attempt or run resumes it (Range + If-Range)
//   {cache}/models--{org}--{name}/snapshots/{commit}/{file} a relative link ../../blobs/{etag} (a copy where links fail)
//   {cache}/models--{org}--{name}/refs/{revision}           the commit, written once the snapshot is complete
//   {cache}/models--{org}--{name}/.no_exist/{commit}/{file} an empty marker for an optional file the repo lacks
//   {cache}/.locks/models--{org}--{name}/{etag}.lock        held while a blob downloads (also by huggingface_hub)
//
// Each file: HEAD the resolve URL for its commit, etag and size; take the blob's lock; GET the body (resuming the
// .incomplete), check its size and hash, check its content (JSON parses, safetensors header reads), then rename it to the
// blob and link it into the snapshot. Nothing half-made is ever a blob or a snapshot file.
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using ManagedT5.IO;

namespace ManagedT5.Hub;

/// <summary>Fetches config, tokenizer and safetensors weights for one hub id into the HF cache.</summary>
internal sealed partial class HubDownloader : IDisposable
{
    private const int MaxRedirects = 10;
    /// <summary>The largest weights file taken (1 TiB); JSON and tokenizer files have InputFile's caps.</summary>
    private const long MaxWeightsBytes = 1L << 40;

    private readonly string _id;
    private readonly HubOptions _options;
    private readonly IProgress<DownloadProgress>? _progress;
    private readonly Uri _endpoint;
    private readonly HttpClient _client;
    private readonly bool _ownsClient;
    /// <summary>Per file, the validator (host and strong ETag) of the server that began its .incomplete in this process.</summary>
    private readonly Dictionary<string, (string Authority, string ETag)> _started = new();
    private string _cache = "";
    private string _repo = "";
    private string? _commit;
    private bool _commitIsStandIn;

    public HubDownloader(string id, HubOptions options, IProgress<DownloadProgress>? progress)
    {
        _id = id;
        _options = options;
        _progress = progress;
        _endpoint = new Uri(options.Endpoint.TrimEnd('/') + "/");
        if (options.HttpClient is not null)
        {
            _client = options.HttpClient;
        }
        else
        {
            // Redirects are followed by hand: the hub's first answer carries the sha256 (X-Linked-Etag) and the CDN's does not,
            // and the token must not travel to another host.
            HttpMessageHandler handler = options.HttpMessageHandler ?? new SocketsHttpHandler
            {
                AllowAutoRedirect = false,
                AutomaticDecompression = DecompressionMethods.None,
                ConnectTimeout = options.ReadTimeout,
                UseCookies = false,
            };
            _client = new HttpClient(handler, disposeHandler: options.HttpMessageHandler is null) { Timeout = Timeout.InfiniteTimeSpan };
            _ownsClient = true;
        }
    }

    private string Blobs => Path.Combine(_repo, "blobs");
    private string Snapshot => Path.Combine(_repo, "snapshots", _commit!);
    private string Locks => Path.Combine(_cache, ".locks", HubCache.RepoFolderName(_id));

    /// <summary>Downloads everything into <paramref name="cacheDirectory"/> and returns the complete snapshot folder. On failure
    /// the folders this run left empty are removed; finished blobs and resumable .incomplete files stay.</summary>
    public async Task<string> DownloadAsync(string cacheDirectory, CancellationToken cancellationToken)
    {
        _cache = cacheDirectory;
        _repo = Path.Combine(cacheDirectory, HubCache.RepoFolderName(_id));
        try
        {
            await FetchAsync(ModelFolder.Config, optional: false, cancellationToken).ConfigureAwait(false);
            await FetchAsync(ModelFolder.GenerationConfig, optional: true, cancellationToken).ConfigureAwait(false);

            if (!await FetchAsync(ModelFolder.SentencePiece, optional: true, cancellationToken).ConfigureAwait(false) &&
                !await FetchAsync(ModelFolder.TokenizerJson, optional: true, cancellationToken).ConfigureAwait(false))
                throw Fail($"'{_id}' has neither {ModelFolder.SentencePiece} nor {ModelFolder.TokenizerJson} at {RepoPage()}; ManagedT5 " +
                           "needs one of them. Pick a T5 / Flan-T5 model, or put the model's files with a T5 spiece.model into a " +
                           "folder of your own and pass that folder.", ModelFolder.SentencePiece);

            if (!await FetchAsync(ModelFolder.Weights, optional: true, cancellationToken).ConfigureAwait(false))
            {
                if (!await FetchAsync(ModelFolder.WeightsIndex, optional: true, cancellationToken).ConfigureAwait(false))
                    throw Fail($"'{_id}' has no {ModelFolder.Weights} (nor {ModelFolder.WeightsIndex}) at {RepoPage()}. ManagedT5 reads " +
                               "safetensors only; convert pytorch_model.bin with transformers (model.save_pretrained(dir, " +
                               "safe_serialization=True)) and pass that folder.", ModelFolder.Weights);
                // The index passed ModelFolder.Problem before it was published: its shard names are plain file names.
                IReadOnlyList<string> shards = ModelFolder.ReadShardNames(Path.Combine(Snapshot, ModelFolder.WeightsIndex))!;
                foreach (string shard in shards)
                    await FetchAsync(shard, optional: false, cancellationToken).ConfigureAwait(false);
            }

            if (!ModelFolder.IsComplete(Snapshot))   // every file was checked as it came; this would be a bug or a meddling process
                throw Fail($"The files of '{_id}' in {Snapshot} do not form a complete model after the download. Run again.", ModelFolder.Config);
            WriteRef();
            return Path.GetFullPath(Snapshot);
        }
        catch
        {
            PruneEmptyFolders();
            throw;
        }
    }

    /// <summary>refs/{revision} holds the commit (not for a revision that is itself the commit, as huggingface_hub does).</summary>
    private void WriteRef()
    {
        if (_options.Revision == _commit) return;
        string path = Path.Combine(_repo, "refs", _options.Revision);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        string temp = path + ".tmp-" + Environment.ProcessId;
        File.WriteAllText(temp, _commit);
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>Removes the folders of this repo that are empty (made by this run before it failed); files are never touched.</summary>
    private void PruneEmptyFolders()
    {
        string[] candidates =
        [
            .. _commit is null ? Array.Empty<string>() : [Snapshot, Path.Combine(_repo, ".no_exist", _commit)],
            Path.Combine(_repo, "snapshots"), Path.Combine(_repo, ".no_exist"), Path.Combine(_repo, "refs"), Blobs, _repo, Locks,
        ];
        foreach (string dir in candidates)
        {
            try
            {
                if (Directory.Exists(dir) && !Directory.EnumerateFileSystemEntries(dir).Any()) Directory.Delete(dir);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { /* someone else's now: leave it */ }
        }
    }

    /// <summary>Makes <c>snapshots/{commit}/{file}</c> present and checked, downloading it unless it or its blob is already
    /// there; retries network failures. False when optional and the repo does not have it (404).</summary>
    private async Task<bool> FetchAsync(string file, bool optional, CancellationToken cancellationToken)
    {
        if (_commit is not null && ModelFolder.Problem(Path.Combine(Snapshot, file), file) is null) return true;   // an earlier run
        bool restarted = false;
        for (int attempt = 0; ; attempt++)
        {
            Uri url = FileUrl(file);
            try
            {
                FileMeta? meta = await HeadAsync(file, url, optional, cancellationToken).ConfigureAwait(false);
                if (meta is null)
                {
                    MarkMissing(file);
                    return false;
                }
                if (ModelFolder.Problem(Path.Combine(Snapshot, file), file) is null) return true;   // known now that the commit is
                await DownloadFileAsync(file, url, meta, allowResume: !restarted, cancellationToken).ConfigureAwait(false);
                return true;
            }
            catch (RestartException e)
            {
                if (restarted)   // a fresh GET (no Range) was answered as if it were resumed, twice: a broken server or proxy
                    throw Fail($"The server sent a byte range nobody asked for when {file} of '{_id}' was downloaded anew from {url}. " +
                               $"Check any proxy in between, or download {ModelFolder.FileListForHumans} from {RepoPage()} into a " +
                               "folder and pass that folder.", file, url.ToString(), e.StatusCode, null);
                restarted = true;
                attempt--;
            }
            catch (TransientException e)
            {
                if (attempt >= _options.MaxRetries)
                    throw Fail($"Could not download {file} of '{_id}' from {url} ({AttemptsText(attempt + 1)}): {e.Message}. " +
                               $"Check the network (and HF_ENDPOINT, now {_options.Endpoint}), then run again: the part already " +
                               $"downloaded is kept in {Blobs} and resumed. Or download {ModelFolder.FileListForHumans} from " +
                               $"{RepoPage()} into a folder and pass that folder.", file, url.ToString(), e.StatusCode, e.InnerException);
                TimeSpan delay = _options.RetryDelay * Math.Pow(2, Math.Min(attempt, 6));
                if (delay > TimeSpan.Zero) await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private static string AttemptsText(int n) => n == 1 ? "1 attempt" : $"{n} attempts";

    /// <summary>What the hub says about a file before its body is fetched.</summary>
    /// <param name="Etag">The normalized ETag (X-Linked-Etag or ETag, quotes and W/ dropped) when it is a plain file name.</param>
    /// <param name="HubETag">The hub's own strong ETag header, as sent (the If-Range validator for bytes the hub serves).</param>
    /// <param name="Size">X-Linked-Size, else the Content-Length of a 200 answer.</param>
    private sealed record FileMeta(string? Etag, string? HubETag, long? Size)
    {
        public string? Sha256 => Etag is { Length: 64 } e && HexDigits().IsMatch(e) ? e : null;
        public string? GitSha1 => Etag is { Length: 40 } e && HexDigits().IsMatch(e) ? e : null;
    }

    /// <summary>HEAD the file, following the hub's own redirects (renamed repos) but not the one to a CDN: that redirect is
    /// where an LFS file's X-Linked-Etag and X-Linked-Size are. Learns the commit from the first answer. Null: optional, 404.</summary>
    private async Task<FileMeta?> HeadAsync(string file, Uri url, bool optional, CancellationToken cancellationToken)
    {
        (HttpResponseMessage response, HubHeaders headers, Uri finalUrl) =
            await SendAsync(HttpMethod.Head, url, file, null, cancellationToken).ConfigureAwait(false);
        using HttpResponseMessage _ = response;
        int status = (int)response.StatusCode;
        bool redirect = status is >= 300 and < 400;
        if (!redirect && status != 200) ThrowForStatus(file, finalUrl, response, headers, optional);
        if (status == 404) return null;   // optional and absent (ThrowForStatus threw otherwise)
        LearnCommit(headers.Commit);
        long? size = headers.LinkedSize ?? (status == 200 ? response.Content.Headers.ContentLength : null);
        return new FileMeta(headers.Etag, headers.HubStrongETag, size);
    }

    /// <summary>Takes the commit from X-Repo-Commit once (later files are fetched by that commit, so every file comes from
    /// the same one even if the branch moves meanwhile). A server that does not send it: the revision when it is a commit
    /// hash, else a stand-in, the SHA-1 of "{endpoint}\n{id}\n{revision}", so the files still form one snapshot.</summary>
    private void LearnCommit(string? commit)
    {
        if (_commit is not null) return;
        if (commit is not null && HubCache.CommitHash().IsMatch(commit))
        {
            _commit = commit;
        }
        else if (HubCache.CommitHash().IsMatch(_options.Revision))
        {
            _commit = _options.Revision;
        }
        else
        {
            _commit = Convert.ToHexStringLower(SHA1.HashData(Encoding.UTF8.GetBytes($"{_options.Endpoint.TrimEnd('/')}\n{_id}\n{_options.Revision}")));
            _commitIsStandIn = true;
        }
    }

    /// <summary>An empty .no_exist/{commit}/{file}, as huggingface_hub leaves for a file the repo does not have.</summary>
    private void MarkMissing(string file)
    {
        if (_commit is null || _commitIsStandIn) return;
        try
        {
            string marker = Path.Combine(_repo, ".no_exist", _commit, file);
            Directory.CreateDirectory(Path.GetDirectoryName(marker)!);
            using (File.Create(marker)) { }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { /* only a hint for Python */ }
    }

    /// <summary>Under the blob's lock: links an existing good blob, or downloads one and links it.</summary>
    private async Task DownloadFileAsync(string file, Uri url, FileMeta meta, bool allowResume, CancellationToken cancellationToken)
    {
        // The blob's name is the hub's etag; a server without one gets a name from the URL for the part, and the blob is then
        // named by the sha256 of what arrived.
        string key = meta.Etag ?? "managedt5-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(url.AbsoluteUri)))[..40];
        Directory.CreateDirectory(Blobs);
        using FileStream held = AcquireLock(file, key);

        if (meta.Etag is not null)
        {
            string blob = Path.Combine(Blobs, meta.Etag);
            if (File.Exists(blob) && (meta.Size is null || new FileInfo(blob).Length == meta.Size) && ModelFolder.Problem(blob, file) is null)
            {
                Link(file, blob, newBlob: false);   // already downloaded, by us or by Python, for another revision perhaps
                return;
            }
        }
        string part = Path.Combine(Blobs, key + ".incomplete");
        if (meta.Etag is null && File.Exists(part)) File.Delete(part);   // nothing says which version it holds: never resumed
        string done = await GetAsync(file, url, meta, part, allowResume, cancellationToken).ConfigureAwait(false);
        Link(file, done, newBlob: true);
    }

    private FileStream AcquireLock(string file, string key)
    {
        Directory.CreateDirectory(Locks);
        string path = Path.Combine(Locks, key + ".lock");
        try
        {
            return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e)
        {
            throw new IOException(
                $"Another process is downloading {file} of '{_id}' into {Blobs} (its lock file {path} is held). Wait for it to " +
                "finish and run again.", e);
        }
    }

    /// <summary>snapshots/{commit}/{file} -> ../../blobs/{name}; where links cannot be made, the file itself, as
    /// huggingface_hub does (a new blob is moved there, an existing one copied).</summary>
    private void Link(string file, string blob, bool newBlob)
    {
        Directory.CreateDirectory(Snapshot);
        string link = Path.Combine(Snapshot, file);
        if (File.Exists(link) || new FileInfo(link).LinkTarget is not null) File.Delete(link);
        try
        {
            if (_options.NoSymlinksForTests) throw new UnauthorizedAccessException("symbolic links are off for this test");
            File.CreateSymbolicLink(link, Path.Combine("..", "..", "blobs", Path.GetFileName(blob)));
        }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException or PlatformNotSupportedException)
        {
            if (newBlob) File.Move(blob, link);
            else File.Copy(blob, link);
        }
        long length = new FileInfo(blob).Exists ? new FileInfo(blob).Length : new FileInfo(link).Length;
        _progress?.Report(new DownloadProgress(_id, file, length, length, 0, TimeSpan.Zero, IsComplete: true));
    }

    /// <summary>GETs the body into <paramref name="part"/> (resuming it when allowed and safe), checks it, and renames it to its
    /// blob. Returns the blob's path.</summary>
    private async Task<string> GetAsync(string file, Uri url, FileMeta meta, string part, bool allowResume, CancellationToken cancellationToken)
    {
        long offset = allowResume && File.Exists(part) ? new FileInfo(part).Length : 0;
        if (meta.Size is long size && offset > size) offset = 0;   // longer than the file: not a prefix of it

        (HttpResponseMessage response, HubHeaders headers, Uri finalUrl) =
            await SendAsync(HttpMethod.Get, url, file, offset > 0 ? (offset, meta) : null, cancellationToken).ConfigureAwait(false);
        using HttpResponseMessage _ = response;

        int status = (int)response.StatusCode;
        if (status is 200 or 206 && headers.Etag is string servedEtag && meta.Etag is string expected && servedEtag != expected)
            throw new TransientException("the file changed on the hub while it was being downloaded", status);
        long? total;
        switch (status)
        {
            case 200:
                offset = 0;   // no Range sent, the server ignored it, or If-Range found the file changed: start over
                total = response.Content.Headers.ContentLength;
                if (meta.Size is long s200 && total is long t200 && s200 != t200)
                    throw new TransientException($"the hub said {s200} bytes but the body is {t200}", status);
                if (response.Headers.ETag is { IsWeak: false } started)
                    _started[file] = (finalUrl.Authority, started.Tag);
                break;
            case 206:
                ContentRangeHeaderValue? range = response.Content.Headers.ContentRange;
                long? claimed = range?.Length;
                // Resume only an answer for exactly the bytes asked for, of a file of the size we started on.
                if (range?.From != offset || ((claimed ?? meta.Size) is null && meta.Sha256 is null) ||
                    (meta.Size is long s206 && claimed is long c206 && c206 != s206))
                {
                    File.Delete(part);
                    throw new RestartException(status);
                }
                total = claimed;
                break;
            case 416:
                File.Delete(part);   // the part is as long as the file or longer
                throw new RestartException(status);
            default:
                ThrowForStatus(file, finalUrl, response, headers, optional: false);
                throw new InvalidOperationException("unreachable");
        }
        long? expectedLength = meta.Size ?? total;
        long cap = KindCap(file);
        if (expectedLength > cap)
            throw Fail($"{file} of '{_id}' at {finalUrl} is {expectedLength:N0} bytes, more than the {cap:N0} bytes any real {file} " +
                       "has; it was not downloaded. Check the model id, or report the repo to its authors.", file, finalUrl.ToString(), status, null);
        cap = expectedLength ?? cap;

        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var output = new FileStream(part, offset > 0 ? FileMode.Open : FileMode.Create, FileAccess.ReadWrite,
            FileShare.None, bufferSize: 1, FileOptions.Asynchronous);
        try
        {
            await using (output.ConfigureAwait(false))
            {
                if (offset > 0) await HashPrefixAsync(output, offset, hash, cancellationToken).ConfigureAwait(false);
                output.SetLength(offset);
                output.Position = offset;
                await CopyBodyAsync(response, output, hash, file, offset, expectedLength, cap, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (TooLongException e)
        {
            File.Delete(part);
            throw Fail(expectedLength is long t
                ? $"The server sent more than the {t} bytes {file} of '{_id}' has, from {finalUrl}; the download was deleted. Run again."
                : $"The server at {finalUrl} sent more than {e.Cap:N0} bytes for {file} of '{_id}' without saying its size; no real " +
                  $"{file} is that large. The download was deleted.", file, finalUrl.ToString(), status, null);
        }

        long length = new FileInfo(part).Length;
        if (expectedLength is long want && length != want)
            throw new TransientException($"the connection ended after {length} of {want} bytes", null);
        string actualSha = Convert.ToHexStringLower(hash.GetHashAndReset());
        if (meta.Sha256 is string expectedSha && actualSha != expectedSha)
        {
            File.Delete(part);
            if (offset > 0) throw new RestartException(status);   // the older part may be of another version: once anew
            throw Fail($"{file} of '{_id}' from {finalUrl} is corrupt: its sha256 is {actualSha} but the hub says {expectedSha}. " +
                       "The download was deleted; run again to fetch it anew, and if it repeats, check any proxy in between.",
                file, finalUrl.ToString(), status, null);
        }
        if (expectedLength is null && meta.Sha256 is null)
        {
            // No size from anyone: only a checksum can tell a whole body from one whose connection closed early.
            string? problem = meta.GitSha1 is null ? "the server sent neither its size nor a checksum"
                : GitBlobSha1(part) is var sha1 && sha1 != meta.GitSha1 ? $"its git sha1 is {sha1} but the hub says {meta.GitSha1} (was it cut short?)"
                : null;
            if (problem is not null)
            {
                File.Delete(part);
                throw Fail($"{file} of '{_id}' from {finalUrl} came without a Content-Length and cannot be checked: {problem}. " +
                           "It was deleted; run again, and if it repeats, check any proxy in between (it may strip Content-Length).",
                    file, finalUrl.ToString(), status, null);
            }
        }
        if (ModelFolder.ContentProblem(part, file) is string content)
        {
            File.Delete(part);
            throw Fail($"{file} of '{_id}' from {finalUrl} is not a usable {file}: it {content}. It was deleted and nothing was " +
                       "kept; if the hub really holds this file, report it to the model's authors.", file, finalUrl.ToString(), status, null);
        }
        string blob = Path.Combine(Blobs, meta.Etag ?? actualSha);
        File.Move(part, blob, overwrite: true);
        _started.Remove(file);
        return blob;
    }

    /// <summary>The most bytes a file of this kind may have, stated or not.</summary>
    private static long KindCap(string file) =>
        file == ModelFolder.TokenizerJson || file == ModelFolder.SentencePiece ? InputFile.MaxTokenizerBytes
        : file.EndsWith(".json", StringComparison.Ordinal) ? InputFile.MaxJsonBytes
        : MaxWeightsBytes;

    /// <summary>git's object id of a file: sha1("blob {length}\0" + bytes), which the hub sends as the ETag of non-LFS files.</summary>
    private static string GitBlobSha1(string path)
    {
        using var sha1 = IncrementalHash.CreateHash(HashAlgorithmName.SHA1);
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        sha1.AppendData(Encoding.ASCII.GetBytes($"blob {stream.Length}\0"));
        var buffer = new byte[1 << 16];
        for (int n; (n = stream.Read(buffer)) > 0;) sha1.AppendData(buffer, 0, n);
        return Convert.ToHexStringLower(sha1.GetHashAndReset());
    }

    /// <summary>
    /// A request following redirects by hand, keeping the hub's headers. A HEAD stops at a redirect to another host (the
    /// CDN). A resumed GET (<paramref name="resume"/>) sends <c>Range: bytes={offset}-</c> with <c>If-Range</c>: the hub's
    /// ETag for the hub, the ETag of the server that began the part for that server; to a server for which no validator is
    /// known, Range is sent only when the sha256 will check the result, else the whole file is asked for.
    /// </summary>
    private async Task<(HttpResponseMessage, HubHeaders, Uri)> SendAsync(HttpMethod method, Uri url, string file,
        (long Offset, FileMeta Meta)? resume, CancellationToken cancellationToken)
    {
        var headers = new HubHeaders();
        for (int hop = 0; ; hop++)
        {
            bool hub = SameOrigin(url, _endpoint);
            using var request = new HttpRequestMessage(method, url);
            request.Headers.UserAgent.ParseAdd("ManagedT5.Hub/0.1");
            if (resume is (long offset, FileMeta meta))
            {
                string? validator = hub ? meta.HubETag
                    : _started.TryGetValue(file, out var s) && s.Authority == url.Authority ? s.ETag : null;
                if (validator is not null || meta.Sha256 is not null)
                {
                    request.Headers.Range = new RangeHeaderValue(offset, null);
                    if (validator is not null) request.Headers.TryAddWithoutValidation("If-Range", validator);
                }
            }
            if (_options.Token is string token && hub)   // the token stays with the hub
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);

            HttpResponseMessage response;
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(_options.ReadTimeout);
            try
            {
                response = await _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException e) when (!cancellationToken.IsCancellationRequested)
            {
                throw new TransientException($"no answer within {_options.ReadTimeout.TotalSeconds:0.#} s", null, e);
            }
            catch (HttpRequestException e)
            {
                throw new TransientException(e.Message, null, e);
            }
            headers.Collect(response, fromHub: hub);
            int status = (int)response.StatusCode;
            if (status is 301 or 302 or 303 or 307 or 308 && response.Headers.Location is Uri location)
            {
                Uri next = location.IsAbsoluteUri ? location : new Uri(url, location);
                if (method == HttpMethod.Head && !SameOrigin(next, _endpoint)) return (response, headers, url);   // the CDN: stop
                response.Dispose();
                if (hop >= MaxRedirects)
                    throw Fail($"Too many redirects for {url} ({MaxRedirects}).", file, url.ToString(), status, null);
                url = next;
                continue;
            }
            return (response, headers, url);
        }
    }

    /// <summary>
    /// Streams the body to the file, hashing as it goes. Each read waits at most ReadTimeout; the body as a whole must
    /// average MinimumBytesPerSecond over each MinimumRateWindow; it may not grow past <paramref name="cap"/>. Only failures
    /// of the network are retried; a failing disk surfaces as its IOException.
    /// </summary>
    private async Task CopyBodyAsync(HttpResponseMessage response, FileStream output, IncrementalHash hash, string file,
        long offset, long? total, long cap, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        long received = 0;
        long lastReport = 0;
        long windowStartMs = 0, windowStartBytes = 0;
        long windowMs = (long)_options.MinimumRateWindow.TotalMilliseconds;
        var buffer = new byte[1 << 16];
        Report(0);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.ReadTimeout);
        Stream body = await Network(() => response.Content.ReadAsStreamAsync(timeout.Token)).ConfigureAwait(false);
        await using (body.ConfigureAwait(false))
        {
            while (true)
            {
                timeout.CancelAfter(_options.ReadTimeout);
                int n = await Network(() => body.ReadAsync(buffer, timeout.Token).AsTask()).ConfigureAwait(false);
                if (n == 0) break;
                if (offset + received + n > cap) throw new TooLongException(cap);
                hash.AppendData(buffer, 0, n);
                await output.WriteAsync(buffer.AsMemory(0, n), cancellationToken).ConfigureAwait(false);
                received += n;
                long now = clock.ElapsedMilliseconds;
                if (now - lastReport >= 100) Report(now);
                if (_options.MinimumBytesPerSecond > 0 && now - windowStartMs >= windowMs)
                {
                    double rate = (received - windowStartBytes) * 1000.0 / (now - windowStartMs);
                    if (rate < _options.MinimumBytesPerSecond)
                        throw new TransientException(
                            $"the body came at {rate:0} bytes/s over {(now - windowStartMs) / 1000.0:0.#} s after {offset + received} bytes, " +
                            $"slower than the minimum of {_options.MinimumBytesPerSecond} bytes/s (HubOptions.MinimumBytesPerSecond)", null);
                    windowStartMs = now;
                    windowStartBytes = received;
                }
            }
        }

        async Task<T> Network<T>(Func<Task<T>> read)
        {
            try
            {
                return await read().ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or IOException or HttpRequestException)
            {
                cancellationToken.ThrowIfCancellationRequested();
                throw new TransientException(e is OperationCanceledException
                    ? $"no data for {_options.ReadTimeout.TotalSeconds:0.#} s after {offset + received} bytes"
                    : $"the connection failed after {offset + received} bytes ({e.Message})", null, e);
            }
        }

        void Report(long elapsedMs)
        {
            lastReport = elapsedMs;
            if (_progress is null) return;
            double speed = elapsedMs > 0 ? received * 1000.0 / elapsedMs : 0;
            TimeSpan? eta = total is long t && speed > 0 ? TimeSpan.FromSeconds(Math.Max(0, t - offset - received) / speed) : null;
            _progress.Report(new DownloadProgress(_id, file, offset + received, total, speed, eta, IsComplete: false));
        }
    }

    private static async Task HashPrefixAsync(FileStream file, long length, IncrementalHash hash, CancellationToken cancellationToken)
    {
        var buffer = new byte[1 << 16];
        file.Position = 0;
        long left = length;
        while (left > 0)
        {
            int n = await file.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, left)), cancellationToken).ConfigureAwait(false);
            if (n == 0) throw new IOException($"{file.Name} shrank while it was being resumed.");
            hash.AppendData(buffer, 0, n);
            left -= n;
        }
    }

    /// <summary>Throws the error for a status that is not a success (404 optional excepted: returns).</summary>
    private void ThrowForStatus(string file, Uri url, HttpResponseMessage response, HubHeaders headers, bool optional)
    {
        int status = (int)response.StatusCode;
        switch (status)
        {
            case 404 when optional:
                return;
            case 404:
                throw NotFound(file, url, headers);
            case 401 or 403:
                throw Refused(file, url, status, headers);
            case 429 or >= 500:
                throw new TransientException($"the server answered {status} {response.ReasonPhrase}", status);
            default:
                throw Fail($"The hub answered {status} {response.ReasonPhrase} for {file} of '{_id}' at {url}. " +
                           $"Download {ModelFolder.FileListForHumans} from {RepoPage()} into a folder and pass that folder.",
                    file, url.ToString(), status, null);
        }
    }

    private HubException NotFound(string file, Uri url, HubHeaders headers)
    {
        if (file == ModelFolder.Config)
        {
            string what = headers.ErrorCode == "RevisionNotFound"
                ? $"Revision '{_options.Revision}' of '{_id}' was not found"
                : headers.ErrorCode == "EntryNotFound"
                    ? $"'{_id}' has no {ModelFolder.Config}: it is not a transformers model"
                    : $"Model id '{_id}' was not found";
            return Fail($"{what} on {_options.Endpoint} (404 for {url}). Check the spelling (hub ids look like google/flan-t5-small) " +
                        "and the revision, or pass a local folder that holds the model.", file, url.ToString(), 404, null);
        }
        return Fail($"{file} of '{_id}' was not found at {url} (404), though the model lists it. Report the broken repo to its " +
                    "authors, or download the model by hand into a folder and pass that folder.", file, url.ToString(), 404, null);
    }

    private HubException Refused(string file, Uri url, int status, HubHeaders headers)
    {
        string token = _options.Token is null
            ? "set HF_TOKEN (or HubOptions.Token) to an access token from https://huggingface.co/settings/tokens"
            : "check that the token in HF_TOKEN is valid and has read access (it was sent and refused)";
        string why = headers.ErrorCode == "GatedRepo" ? "the repo is gated" : "the repo may be gated or private, or the id may not exist";
        return Fail($"The hub refused {file} of '{_id}' ({status} at {url}): {why}. Accept the model's terms on {RepoPage()} while " +
                    $"logged in, {token}, and run again.", file, url.ToString(), status, null);
    }

    /// <summary>Every HubException of a download is made here (HubException itself makes the text printable).</summary>
    private HubException Fail(string message, string file, string? url = null, int? status = null, Exception? inner = null) =>
        new(message, _id, file, url, status, inner);

    /// <summary>{endpoint}/{id}/resolve/{commit, once known, else the revision}/{file}.</summary>
    private Uri FileUrl(string file)
    {
        string revision = _commit is not null && !_commitIsStandIn ? _commit : _options.Revision;
        return new Uri(_endpoint, $"{_id}/resolve/{Uri.EscapeDataString(revision)}/{Uri.EscapeDataString(file)}");
    }

    private string RepoPage() => $"{_options.Endpoint.TrimEnd('/')}/{_id}";

    private static bool SameOrigin(Uri a, Uri b) =>
        string.Equals(a.Host, b.Host, StringComparison.OrdinalIgnoreCase) && a.Port == b.Port && a.Scheme == b.Scheme;

    [GeneratedRegex("^[0-9a-f]+$")]
    private static partial Regex HexDigits();

    public void Dispose()
    {
        if (_ownsClient) _client.Dispose();
    }

    /// <summary>The hub's headers gathered over redirects: X-Repo-Commit, the etag (X-Linked-Etag, which for an LFS file is
    /// on the hub's redirect to the CDN, else the hub's ETag; a CDN's ETag is a hash of its own and does not count),
    /// X-Linked-Size, X-Error-Code. All of it is the server's word: the etag is used only when it is a plain file name.</summary>
    private sealed class HubHeaders
    {
        private string? _linked;
        private string? _etag;

        public string? Etag => _linked ?? _etag;
        public string? HubStrongETag { get; private set; }
        public string? Commit { get; private set; }
        public long? LinkedSize { get; private set; }
        public string? ErrorCode { get; private set; }

        public void Collect(HttpResponseMessage response, bool fromHub)
        {
            HttpResponseHeaders h = response.Headers;
            if (_linked is null && First(h, "X-Linked-Etag") is string linked) _linked = Normalize(linked);
            if (LinkedSize is null && First(h, "X-Linked-Size") is string size && long.TryParse(size, out long n) && n >= 0) LinkedSize = n;
            if (!fromHub) return;
            if (First(h, "ETag") is string etag)
            {
                _etag ??= Normalize(etag);
                string raw = etag.Trim();
                if (raw.StartsWith('"') && raw.EndsWith('"') && raw.Length > 2) HubStrongETag ??= raw;
            }
            if (First(h, "X-Repo-Commit") is string commit) Commit ??= commit.Trim();
            if (First(h, "X-Error-Code") is string code) ErrorCode = code;
        }

        private static string? First(HttpResponseHeaders h, string name) =>
            h.NonValidated.TryGetValues(name, out HeaderStringValues values) ? values.FirstOrDefault() : null;

        /// <summary>huggingface_hub's normalization ("abc" or W/"abc" -> abc), kept only when it can name a blob file.</summary>
        internal static string? Normalize(string value)
        {
            string v = value.Trim();
            if (v.StartsWith("W/", StringComparison.Ordinal)) v = v[2..];
            v = v.Trim('"');
            return InputFile.IsPlainFileName(v) ? v : null;
        }
    }

    /// <summary>A failure worth retrying (network, timeout, too slow, 5xx); the part downloaded is kept.</summary>
    private sealed class TransientException(string message, int? statusCode, Exception? inner = null) : Exception(message, inner)
    {
        public int? StatusCode { get; } = statusCode;
    }

    /// <summary>The body went past the file's size (or the cap for its kind); the part is deleted.</summary>
    private sealed class TooLongException(long cap) : Exception
    {
        public long Cap { get; } = cap;
    }

    /// <summary>The part on disk cannot be resumed; the attempt starts over from byte 0 (at most once per file).</summary>
    private sealed class RestartException(int statusCode) : Exception
    {
        public int StatusCode { get; } = statusCode;
    }
}
