// A tiny HTTP/1.1 server on 127.0.0.1 that answers like the HuggingFace hub's resolve endpoint (HEAD and GET, X-Repo-Commit,
// ETag = git blob sha1 or LFS sha256, X-Linked-Etag / X-Linked-Size), with switches for the failures the downloader must
// survive: a connection cut mid-file, wrong bytes, a stall, a trickle, Range ignored or answered with a wrong total, a body
// without Content-Length cut short, a gated repo, a reason phrase carrying terminal escapes.
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace ManagedT5.Hub.Tests;

/// <summary>One request as the server saw it.</summary>
internal sealed record HubRequest(string Method, string Path, IReadOnlyDictionary<string, string> Headers)
{
    public string? Range => Headers.GetValueOrDefault("range");
    public string? IfRange => Headers.GetValueOrDefault("if-range");
    public string? Authorization => Headers.GetValueOrDefault("authorization");
    public string File => Uri.UnescapeDataString(Path[(Path.LastIndexOf('/') + 1)..]);
    public bool IsGet => Method == "GET";
}

/// <summary>Serves <c>/{id}/resolve/{revision}/{file}</c> from in-memory repos; one request per connection.</summary>
internal sealed class FakeHub : IDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<string, Repo> _repos = new();
    private readonly ConcurrentDictionary<string, int> _cuts = new();
    private readonly Task _loop;

    private sealed record Repo(Dictionary<string, byte[]> Files, string Commit);

    /// <summary>Every request, in arrival order.</summary>
    public ConcurrentQueue<HubRequest> Requests { get; } = new();
    /// <summary>Gated repo: 401 unless <c>Authorization: Bearer {RequiredToken}</c>.</summary>
    public string? RequiredToken { get; set; }
    /// <summary>Files whose first GET sends half the body, then resets the connection.</summary>
    public HashSet<string> CutFirst { get; } = [];
    /// <summary>Files whose body has one byte flipped (the headers still name the true hashes).</summary>
    public HashSet<string> Corrupt { get; } = [];
    /// <summary>Files whose GET sends half the body and then waits until the server is disposed.</summary>
    public HashSet<string> Stall { get; } = [];
    /// <summary>Files whose GET sends one byte every 50 ms (a body that never stalls long enough for a read timeout).</summary>
    public HashSet<string> Trickle { get; } = [];
    /// <summary>Files answered without Content-Length (and without X-Linked-Size): the body ends when the connection closes.</summary>
    public HashSet<string> NoLength { get; } = [];
    /// <summary>Files whose GET sends half the body and then closes the connection cleanly, as if that were all.</summary>
    public HashSet<string> Truncate { get; } = [];
    /// <summary>Answer 200 with the whole file even when Range is asked for.</summary>
    public bool IgnoreRange { get; set; }
    /// <summary>Answer a Range request with 206 whose Content-Range claims a total 1000 bytes larger than the file.</summary>
    public bool WrongRangeTotal { get; set; }
    /// <summary>Send no X-Repo-Commit header (a plain file server, not a hub).</summary>
    public bool NoCommitHeader { get; set; }
    /// <summary>Answer every request with this status and reason phrase (e.g. one carrying escape sequences).</summary>
    public (int Status, string Reason)? FailWith { get; set; }
    /// <summary>Answer LFS files (safetensors, spiece.model) like huggingface.co does: a 302 carrying X-Linked-Etag and
    /// X-Linked-Size to a /cdn/ URL whose answer has neither.</summary>
    public bool RedirectLfsToCdn { get; set; }

    public FakeHub()
    {
        _listener.Start();
        Endpoint = $"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}";
        _loop = Task.Run(AcceptLoop);
    }

    public string Endpoint { get; }

    /// <summary>Adds (or replaces, as a new commit) a repo.</summary>
    public FakeHub Add(string id, Dictionary<string, byte[]> files)
    {
        string commit = Convert.ToHexStringLower(SHA1.HashData(Encoding.UTF8.GetBytes(id + "\n" + Guid.NewGuid())));
        _repos[id] = new Repo(new Dictionary<string, byte[]>(files), commit);
        return this;
    }

    /// <summary>The commit "main" points at.</summary>
    public string CommitOf(string id) => _repos[id].Commit;

    /// <summary>A new commit of <paramref name="id"/> in which <paramref name="file"/> holds <paramref name="content"/>.</summary>
    public void Replace(string id, string file, byte[] content)
    {
        var files = new Dictionary<string, byte[]>(_repos[id].Files) { [file] = content };
        Add(id, files);
    }

    /// <summary>GET requests for a file (HEADs only ask for its metadata).</summary>
    public int CountFor(string file) => Requests.Count(r => r.File == file && r.IsGet);

    public static bool IsLfs(string file) => file.EndsWith(".safetensors", StringComparison.Ordinal) || file == "spiece.model";

    /// <summary>The name huggingface_hub gives the file's blob: sha256 for LFS files, git's blob sha1 for the others.</summary>
    public static string BlobName(string file, byte[] content) => IsLfs(file) ? Sha256(content) : GitBlobSha1(content);

    public static string Sha256(byte[] content) => Convert.ToHexStringLower(SHA256.HashData(content));

    public static string GitBlobSha1(byte[] content) =>
        Convert.ToHexStringLower(SHA1.HashData([.. Encoding.ASCII.GetBytes($"blob {content.Length}\0"), .. content]));

    private async Task AcceptLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try { client = await _listener.AcceptTcpClientAsync(_stop.Token); }
            catch (Exception) { return; }
            _ = Task.Run(async () =>
            {
                using (client)
                {
                    try { await Handle(client); }
                    catch (Exception) { /* the client went away */ }
                }
            });
        }
    }

    private async Task Handle(TcpClient client)
    {
        NetworkStream stream = client.GetStream();
        HubRequest? request = await ReadRequest(stream);
        if (request is null) return;
        Requests.Enqueue(request);
        bool head = request.Method == "HEAD";

        if (FailWith is (int failStatus, string reason))
        {
            await Send(stream, failStatus, reason, [], head ? [] : "no"u8.ToArray());
            return;
        }
        string[] parts = request.Path.TrimStart('/').Split('/');
        bool cdn = parts.Length > 0 && parts[0] == "cdn";
        // /{org}/{name}/resolve/{rev}/{file} or /{name}/resolve/{rev}/{file}; /cdn/{org}/{name}/{file}
        int resolveAt = Array.IndexOf(parts, "resolve");
        string id = cdn ? string.Join('/', parts[1..^1]) : resolveAt > 0 ? string.Join('/', parts[..resolveAt]) : "";
        string file = request.File;

        if (!_repos.TryGetValue(id, out Repo? repo))
        {
            await Send(stream, 404, "Not Found", [("X-Error-Code", "RepoNotFound")], head ? [] : "Repository not found"u8.ToArray());
            return;
        }
        if (RequiredToken is not null && !cdn && request.Authorization != "Bearer " + RequiredToken)
        {
            await Send(stream, 401, "Unauthorized", [("X-Error-Code", "GatedRepo")], head ? [] : "Access to this model is restricted"u8.ToArray());
            return;
        }
        if (!cdn && (resolveAt < 0 || parts.Length != resolveAt + 3 || (parts[resolveAt + 1] != "main" && parts[resolveAt + 1] != repo.Commit)))
        {
            await Send(stream, 404, "Not Found", [("X-Error-Code", "RevisionNotFound")], []);
            return;
        }
        var headers = new List<(string, string)>();
        if (!cdn && !NoCommitHeader) headers.Add(("X-Repo-Commit", repo.Commit));
        if (!repo.Files.TryGetValue(file, out byte[]? content))
        {
            headers.Add(("X-Error-Code", "EntryNotFound"));
            await Send(stream, 404, "Not Found", headers, head ? [] : "Entry not found"u8.ToArray());
            return;
        }

        bool lfs = IsLfs(file);
        bool noLength = NoLength.Contains(file);
        string etag = $"\"{BlobName(file, content)}\"";
        if (lfs)
        {
            headers.Add(("X-Linked-Etag", etag));
            if (!noLength) headers.Add(("X-Linked-Size", content.Length.ToString()));
        }
        if (RedirectLfsToCdn && lfs && !cdn)
        {
            headers.Add(("Location", $"/cdn/{id}/{Uri.EscapeDataString(file)}"));
            await Send(stream, 302, "Found", headers, []);
            return;
        }
        // The hub's ETag: the sha256 for LFS files, the git blob sha1 for the others. The CDN's is a hash of its own.
        string servedEtag = cdn ? $"\"cdn-{Sha256(content)[..16]}\"" : etag;
        headers.Add(("ETag", servedEtag));
        headers.Add(("Accept-Ranges", "bytes"));

        byte[] body = content;
        if (Corrupt.Contains(file))
        {
            body = (byte[])content.Clone();
            body[body.Length / 2] ^= 0x5A;
        }
        long start = 0;
        bool rangeValid = request.IfRange is null || request.IfRange == servedEtag;   // RFC 9110 If-Range: else the whole file
        if (!head && request.Range is string range && !IgnoreRange && rangeValid &&
            range.StartsWith("bytes=", StringComparison.Ordinal) && range.EndsWith('-'))
        {
            start = long.Parse(range["bytes=".Length..^1]);
            if (start >= body.Length)
            {
                await Send(stream, 416, "Range Not Satisfiable", [("Content-Range", $"bytes */{body.Length}")], []);
                return;
            }
            long claimed = WrongRangeTotal ? body.Length + 1000 : body.Length;
            headers.Add(("Content-Range", $"bytes {start}-{body.Length - 1}/{claimed}"));
        }
        ReadOnlyMemory<byte> slice = body.AsMemory((int)start);
        int status = start > 0 ? 206 : 200;
        string statusText = status == 206 ? "Partial Content" : "OK";
        long? length = noLength ? null : slice.Length;

        if (head)
        {
            await SendHead(stream, status, statusText, headers, length);
            return;
        }
        bool cut = CutFirst.Contains(file) && _cuts.AddOrUpdate(file, 1, (_, n) => n + 1) == 1;
        if (cut || Stall.Contains(file))
        {
            await SendHead(stream, status, statusText, headers, length);
            await stream.WriteAsync(slice[..(slice.Length / 2)]);
            await stream.FlushAsync();
            if (Stall.Contains(file)) await Task.Delay(Timeout.Infinite, _stop.Token);
            client.Client.LingerClose(); // reset, not a clean close: the client sees the connection die mid-body
            return;
        }
        await SendHead(stream, status, statusText, headers, length);
        if (Truncate.Contains(file))
        {
            await stream.WriteAsync(slice[..(slice.Length / 2)]);
            client.Client.Shutdown(SocketShutdown.Send);   // a clean end: without a length the client cannot tell it is short
            return;
        }
        if (Trickle.Contains(file))
        {
            for (int i = 0; i < slice.Length; i++)
            {
                await stream.WriteAsync(slice.Slice(i, 1), _stop.Token);
                await Task.Delay(50, _stop.Token);
            }
            return;
        }
        await stream.WriteAsync(slice);
    }

    private static async Task<HubRequest?> ReadRequest(NetworkStream stream)
    {
        var buffer = new byte[16 * 1024];
        int length = 0;
        while (true)
        {
            int n = await stream.ReadAsync(buffer.AsMemory(length));
            if (n == 0) return null;
            length += n;
            int end = buffer.AsSpan(0, length).IndexOf("\r\n\r\n"u8);
            if (end >= 0)
            {
                string[] lines = Encoding.ASCII.GetString(buffer, 0, end).Split("\r\n");
                string[] first = lines[0].Split(' ');
                var headers = lines.Skip(1).Select(l => l.Split(':', 2))
                    .ToDictionary(kv => kv[0].Trim().ToLowerInvariant(), kv => kv[1].Trim());
                return new HubRequest(first[0], first[1], headers);
            }
            if (length == buffer.Length) return null;
        }
    }

    private static async Task Send(NetworkStream stream, int status, string reason, IEnumerable<(string, string)> headers, byte[] body)
    {
        await SendHead(stream, status, reason, headers, body.Length);
        await stream.WriteAsync(body);
    }

    private static async Task SendHead(NetworkStream stream, int status, string reason, IEnumerable<(string, string)> headers, long? length)
    {
        var head = new StringBuilder($"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n");
        if (length is long n) head.Append($"Content-Length: {n}\r\n");
        foreach ((string name, string value) in headers) head.Append(name).Append(": ").Append(value).Append("\r\n");
        head.Append("\r\n");
        await stream.WriteAsync(Encoding.Latin1.GetBytes(head.ToString()));
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        try { _loop.Wait(TimeSpan.FromSeconds(5)); }
        catch (AggregateException) { }
        _stop.Dispose();
    }
}

internal static class SocketExtensions
{
    /// <summary>Close with a TCP reset (linger 0) instead of a clean shutdown.</summary>
    public static void LingerClose(this Socket socket)
    {
        socket.LingerState = new LingerOption(true, 0);
        socket.Close();
    }
}
