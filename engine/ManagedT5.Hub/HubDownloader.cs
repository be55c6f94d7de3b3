// Downloads one hub repo's checkpoint files over HttpClient into weights/{id}/: staging folder, resume, sha256, retries.
//
// On disk, while it runs:  weights/{id}.partial/.lock              held (exclusive) by the downloading process
//                          weights/{id}.partial/{file}.incomplete  bytes so far; a later run resumes it with Range
//                          weights/{id}.partial/{file}             finished and checked
// At the end the staging folder is renamed to weights/{id}/ in one step, so weights/{id}/ only ever appears complete.
// (When weights/{id}/ already existed but was incomplete, the finished files are moved into it one by one instead.)
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text.RegularExpressions;

namespace ManagedT5.Hub;

/// <summary>Fetches config, tokenizer and safetensors weights for one hub id.</summary>
internal sealed partial class HubDownloader : IDisposable
{
    private const int MaxRedirects = 10;
    private readonly string _id;
    private readonly HubOptions _options;
    private readonly IProgress<DownloadProgress>? _progress;
    private readonly Uri _endpoint;
    private readonly HttpClient _client;
    private readonly bool _ownsClient;
    private string _finalDirectory = "";
    private string _staging = "";

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

    /// <summary>Downloads everything into a staging folder next to <paramref name="finalDirectory"/>, then moves it there.</summary>
    public async Task<string> DownloadAsync(string finalDirectory, CancellationToken cancellationToken)
    {
        _finalDirectory = finalDirectory;
        _staging = finalDirectory + ".partial";
        Directory.CreateDirectory(_staging);
        var files = new List<string>();
        using (FileStream lockFile = AcquireLock())
        {
            await FetchAsync(ModelFolder.Config, optional: false, cancellationToken).ConfigureAwait(false);
            files.Add(ModelFolder.Config);
            if (await FetchAsync(ModelFolder.GenerationConfig, optional: true, cancellationToken).ConfigureAwait(false))
                files.Add(ModelFolder.GenerationConfig);

            if (await FetchAsync(ModelFolder.SentencePiece, optional: true, cancellationToken).ConfigureAwait(false))
                files.Add(ModelFolder.SentencePiece);
            else if (await FetchAsync(ModelFolder.TokenizerJson, optional: true, cancellationToken).ConfigureAwait(false))
                files.Add(ModelFolder.TokenizerJson);
            else
                throw new HubException(
                    $"'{_id}' has neither {ModelFolder.SentencePiece} nor {ModelFolder.TokenizerJson} at {RepoPage()}; ManagedT5 needs one of " +
                    "them. Put a T5 spiece.model into " + _finalDirectory + " by hand, or pick a T5 / Flan-T5 model.", _id, ModelFolder.SentencePiece);

            if (await FetchAsync(ModelFolder.Weights, optional: true, cancellationToken).ConfigureAwait(false))
            {
                files.Add(ModelFolder.Weights);
            }
            else if (await FetchAsync(ModelFolder.WeightsIndex, optional: true, cancellationToken).ConfigureAwait(false))
            {
                files.Add(ModelFolder.WeightsIndex);
                string indexPath = Path.Combine(_staging, ModelFolder.WeightsIndex);
                IReadOnlyList<string>? shards = ModelFolder.ReadShardNames(
                    await File.ReadAllTextAsync(indexPath, cancellationToken).ConfigureAwait(false));
                if (shards is not { Count: > 0 })
                {
                    File.Delete(indexPath);   // not kept: the next run fetches it anew
                    throw Fail($"{ModelFolder.WeightsIndex} of '{_id}' at {FileUrl(ModelFolder.WeightsIndex)} is not a safetensors " +
                               "index (it needs a weight_map naming shard files in the same folder). Report it to the model's " +
                               $"authors, or put model.safetensors into {_finalDirectory}/ by hand.", ModelFolder.WeightsIndex);
                }
                foreach (string shard in shards)
                {
                    await FetchAsync(shard, optional: false, cancellationToken).ConfigureAwait(false);
                    files.Add(shard);
                }
            }
            else
            {
                throw new HubException(
                    $"'{_id}' has no {ModelFolder.Weights} (nor {ModelFolder.WeightsIndex}) at {RepoPage()}. ManagedT5 reads safetensors only; " +
                    "convert pytorch_model.bin with transformers (model.save_pretrained(dir, safe_serialization=True)) and pass that folder.",
                    _id, ModelFolder.Weights);
            }
        }
        return Publish(files);
    }

    /// <summary>Moves the finished files from the staging folder to the final one.</summary>
    private string Publish(List<string> files)
    {
        // Nothing but the files of this model goes along: stale parts and the lock stay behind and are deleted.
        foreach (string path in Directory.EnumerateFileSystemEntries(_staging))
        {
            if (files.Contains(Path.GetFileName(path))) continue;
            if (Directory.Exists(path)) Directory.Delete(path, recursive: true);
            else File.Delete(path);
        }
        if (!Directory.Exists(_finalDirectory))
        {
            Directory.CreateDirectory(Path.GetDirectoryName(_finalDirectory)!);
            Directory.Move(_staging, _finalDirectory);   // one rename: the folder appears complete
        }
        else
        {
            foreach (string file in files)
                File.Move(Path.Combine(_staging, file), Path.Combine(_finalDirectory, file), overwrite: true);
            Directory.Delete(_staging, recursive: true);
        }
        return _finalDirectory;
    }

    private FileStream AcquireLock()
    {
        string path = Path.Combine(_staging, ".lock");
        try
        {
            return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e)
        {
            throw new IOException(
                $"Another process is downloading '{_id}' into {_staging} (its lock file {path} is held). Wait for it to finish and " +
                "run again.", e);
        }
    }

    /// <summary>Fetches one file into the staging folder, retrying network failures; false when optional and absent (404).</summary>
    private async Task<bool> FetchAsync(string file, bool optional, CancellationToken cancellationToken)
    {
        if (File.Exists(Path.Combine(_staging, file))) return true;   // finished by an earlier, interrupted run
        Uri url = FileUrl(file);
        bool restarted = false;
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                return await AttemptAsync(file, url, optional, allowResume: !restarted, cancellationToken).ConfigureAwait(false);
            }
            catch (RestartException e)
            {
                if (restarted)   // a fresh GET (no Range) was answered as if it were resumed: a broken server or proxy
                    throw Fail($"The server sent a byte range nobody asked for when {file} of '{_id}' was downloaded anew from {url}. " +
                               $"Download {ModelFolder.FileListForHumans} from {RepoPage()} into {_finalDirectory}/ by hand.",
                        file, url.ToString(), e.StatusCode, null);
                restarted = true;
                attempt--;
            }
            catch (TransientException e)
            {
                if (attempt >= _options.MaxRetries)
                    throw Fail($"Could not download {file} of '{_id}' from {url} ({AttemptsText(attempt + 1)}): {e.Message}. " +
                               $"Check the network (and HF_ENDPOINT, now {_options.Endpoint}), then run again: the part already " +
                               $"downloaded is kept in {_staging} and resumed. Or download {ModelFolder.FileListForHumans} from " +
                               $"{RepoPage()} into {_finalDirectory}/ by hand.", file, url.ToString(), e.StatusCode, e.InnerException);
                TimeSpan delay = _options.RetryDelay * Math.Pow(2, Math.Min(attempt, 6));
                if (delay > TimeSpan.Zero) await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private static string AttemptsText(int n) => n == 1 ? "1 attempt" : $"{n} attempts";

    /// <summary>One GET of one file, resuming <c>{file}.incomplete</c> when it exists.</summary>
    private async Task<bool> AttemptAsync(string file, Uri url, bool optional, bool allowResume, CancellationToken cancellationToken)
    {
        string part = Path.Combine(_staging, file + ".incomplete");
        long offset = allowResume && File.Exists(part) ? new FileInfo(part).Length : 0;

        using var attemptCts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        (HttpResponseMessage response, HubHeaders headers, Uri finalUrl) = await SendAsync(url, offset, attemptCts, cancellationToken).ConfigureAwait(false);
        using HttpResponseMessage _ = response;

        int status = (int)response.StatusCode;
        long? total;
        switch (status)
        {
            case 200:
                offset = 0;                                             // no Range sent, or the server ignored it: start over
                total = response.Content.Headers.ContentLength;
                break;
            case 206:
                ContentRangeHeaderValue? range = response.Content.Headers.ContentRange;
                if (range?.From != offset)
                {
                    File.Delete(part);                                   // an answer for other bytes: start over, once
                    throw new RestartException(status);
                }
                total = range.Length;
                break;
            case 416:
                File.Delete(part);                                       // the part is as long as the file or longer
                throw new RestartException(status);
            case 404 when optional:
                return false;
            case 404:
                throw NotFound(file, finalUrl, headers);
            case 401 or 403:
                throw Refused(file, finalUrl, status, headers);
            case 429 or >= 500:
                throw new TransientException($"the server answered {status} {response.ReasonPhrase}", status);
            default:
                throw Fail($"The hub answered {status} {response.ReasonPhrase} for {file} of '{_id}' at {finalUrl}. " +
                           $"Download {ModelFolder.FileListForHumans} from {RepoPage()} into {_finalDirectory}/ by hand.",
                    file, finalUrl.ToString(), status, null);
        }

        string? expectedSha = headers.Sha256;
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var output = new FileStream(part, offset > 0 ? FileMode.Open : FileMode.Create, FileAccess.ReadWrite,
            FileShare.None, bufferSize: 1, FileOptions.Asynchronous);
        await using (output.ConfigureAwait(false))
        {
            if (offset > 0) await HashPrefixAsync(output, offset, hash, cancellationToken).ConfigureAwait(false);
            output.SetLength(offset);
            output.Position = offset;
            await CopyBodyAsync(response, output, hash, file, offset, total, attemptCts, cancellationToken).ConfigureAwait(false);
        }

        long length = new FileInfo(part).Length;
        if (total is long expectedLength && length != expectedLength)
            throw new TransientException($"the connection ended after {length} of {expectedLength} bytes", null);
        string actualSha = Convert.ToHexStringLower(hash.GetHashAndReset());
        if (expectedSha is not null && actualSha != expectedSha)
        {
            File.Delete(part);
            if (offset > 0 && allowResume) throw new RestartException(status);   // the older part may be of another version: once anew
            throw Fail($"{file} of '{_id}' from {finalUrl} is corrupt: its sha256 is {actualSha} but the hub says {expectedSha}. " +
                       "The download was deleted; run again to fetch it anew, and if it repeats, check any proxy in between.",
                file, finalUrl.ToString(), status, null);
        }
        File.Move(part, Path.Combine(_staging, file), overwrite: true);
        _progress?.Report(new DownloadProgress(_id, file, length, length, 0, TimeSpan.Zero, IsComplete: true));
        return true;
    }

    /// <summary>GET with Range from <paramref name="offset"/>, following redirects by hand and keeping the hub's headers.</summary>
    private async Task<(HttpResponseMessage, HubHeaders, Uri)> SendAsync(Uri url, long offset, CancellationTokenSource attemptCts,
        CancellationToken cancellationToken)
    {
        var headers = new HubHeaders();
        for (int hop = 0; ; hop++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, url);
            request.Headers.UserAgent.ParseAdd("ManagedT5.Hub/0.1");
            if (offset > 0) request.Headers.Range = new RangeHeaderValue(offset, null);
            if (_options.Token is string token && SameOrigin(url, _endpoint))   // the token stays with the hub
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);

            HttpResponseMessage response;
            attemptCts.CancelAfter(_options.ReadTimeout);
            try
            {
                response = await _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, attemptCts.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException e) when (!cancellationToken.IsCancellationRequested)
            {
                throw new TransientException($"no answer within {_options.ReadTimeout.TotalSeconds:0.#} s", null, e);
            }
            catch (HttpRequestException e)
            {
                throw new TransientException(e.Message, null, e);
            }
            headers.Collect(response, fromHub: SameOrigin(url, _endpoint));
            int status = (int)response.StatusCode;
            if (status is 301 or 302 or 303 or 307 or 308 && response.Headers.Location is Uri location)
            {
                response.Dispose();
                if (hop >= MaxRedirects)
                    throw Fail($"Too many redirects for {url} ({MaxRedirects}).", Path.GetFileName(url.AbsolutePath), url.ToString(), status, null);
                url = location.IsAbsoluteUri ? location : new Uri(url, location);
                continue;
            }
            return (response, headers, url);
        }
    }

    /// <summary>Streams the body to the file, hashing as it goes; each read waits at most ReadTimeout. Only failures of the
    /// network are retried; a failing disk surfaces as its IOException.</summary>
    private async Task CopyBodyAsync(HttpResponseMessage response, FileStream output, IncrementalHash hash, string file,
        long offset, long? total, CancellationTokenSource attemptCts, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        long received = 0;
        long lastReport = 0;
        var buffer = new byte[1 << 16];
        Report(0);
        attemptCts.CancelAfter(_options.ReadTimeout);
        Stream body = await Network(() => response.Content.ReadAsStreamAsync(attemptCts.Token)).ConfigureAwait(false);
        await using (body.ConfigureAwait(false))
        {
            while (true)
            {
                attemptCts.CancelAfter(_options.ReadTimeout);
                int n = await Network(() => body.ReadAsync(buffer, attemptCts.Token).AsTask()).ConfigureAwait(false);
                if (n == 0) break;
                hash.AppendData(buffer, 0, n);
                await output.WriteAsync(buffer.AsMemory(0, n), cancellationToken).ConfigureAwait(false);
                received += n;
                if (clock.ElapsedMilliseconds - lastReport >= 100) Report(clock.ElapsedMilliseconds);
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
        return Fail($"{file} of '{_id}' was not found at {url} (404), though the model lists it. Download it by hand into " +
                    $"{_finalDirectory}/ or report the broken repo to its authors.", file, url.ToString(), 404, null);
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

    private HubException Fail(string message, string file, string? url = null, int? status = null, Exception? inner = null) =>
        new(message, _id, file, url, status, inner);

    private Uri FileUrl(string file) =>
        new(_endpoint, $"{_id}/resolve/{Uri.EscapeDataString(_options.Revision)}/{Uri.EscapeDataString(file)}");

    private string RepoPage() => $"{_options.Endpoint.TrimEnd('/')}/{_id}";

    private static bool SameOrigin(Uri a, Uri b) =>
        string.Equals(a.Host, b.Host, StringComparison.OrdinalIgnoreCase) && a.Port == b.Port && a.Scheme == b.Scheme;

    public void Dispose()
    {
        if (_ownsClient) _client.Dispose();
    }

    /// <summary>The hub's headers gathered over redirects. The sha256 of an LFS file is X-Linked-Etag on the hub's own
    /// answer (a redirect to the CDN); an ETag counts only on the hub's origin, since a CDN's ETag may be another hash.</summary>
    private sealed partial class HubHeaders
    {
        private string? _linked;
        private string? _etag;

        public string? Sha256 => _linked ?? _etag;
        public string? ErrorCode { get; private set; }

        [GeneratedRegex("^[0-9a-fA-F]{64}$")]
        private static partial Regex Hex64();

        public void Collect(HttpResponseMessage response, bool fromHub)
        {
            HttpResponseHeaders h = response.Headers;
            if (_linked is null && h.NonValidated.TryGetValues("X-Linked-Etag", out HeaderStringValues linked))
                _linked = AsSha256(linked.FirstOrDefault());
            if (fromHub && _etag is null && h.NonValidated.TryGetValues("ETag", out HeaderStringValues etag))
                _etag = AsSha256(etag.FirstOrDefault());
            if (h.NonValidated.TryGetValues("X-Error-Code", out HeaderStringValues code)) ErrorCode = code.FirstOrDefault();
        }

        /// <summary>"abc…" or W/"abc…" holding 64 hex digits, lower-cased; anything else is not a sha256.</summary>
        internal static string? AsSha256(string? value)
        {
            if (value is null) return null;
            string v = value.Trim();
            if (v.StartsWith("W/", StringComparison.Ordinal)) v = v[2..];
            v = v.Trim('"');
            return Hex64().IsMatch(v) ? v.ToLowerInvariant() : null;
        }
    }

    /// <summary>A failure worth retrying (network, timeout, 5xx); the part downloaded is kept.</summary>
    private sealed class TransientException(string message, int? statusCode, Exception? inner = null) : Exception(message, inner)
    {
        public int? StatusCode { get; } = statusCode;
    }

    /// <summary>The part on disk cannot be resumed; the attempt starts over from byte 0 (at most once per file).</summary>
    private sealed class RestartException(int statusCode) : Exception
    {
        public int StatusCode { get; } = statusCode;
    }
}
