// A tiny HTTP/1.1 server on 127.0.0.1 that answers like the HuggingFace hub's resolve endpoint, with switches for the
// failures the downloader must survive: a connection cut mid-file, wrong bytes, a stall, Range ignored, a gated repo.
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
    public string? Authorization => Headers.GetValueOrDefault("authorization");
    public string File => Uri.UnescapeDataString(Path[(Path.LastIndexOf('/') + 1)..]);
}

/// <summary>Serves <c>/{id}/resolve/{revision}/{file}</c> from in-memory repos; one request per connection.</summary>
internal sealed class FakeHub : IDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Dictionary<string, Dictionary<string, byte[]>> _repos = new();
    private readonly ConcurrentDictionary<string, int> _cuts = new();
    private readonly Task _loop;

    /// <summary>Every request, in arrival order.</summary>
    public ConcurrentQueue<HubRequest> Requests { get; } = new();
    /// <summary>Gated repo: 401 unless <c>Authorization: Bearer {RequiredToken}</c>.</summary>
    public string? RequiredToken { get; set; }
    /// <summary>Files whose first GET sends half the body, then resets the connection.</summary>
    public HashSet<string> CutFirst { get; } = [];
    /// <summary>Files whose body has one byte flipped (the headers still name the true sha256).</summary>
    public HashSet<string> Corrupt { get; } = [];
    /// <summary>Files whose GET sends half the body and then waits until the server is disposed.</summary>
    public HashSet<string> Stall { get; } = [];
    /// <summary>Answer 200 with the whole file even when Range is asked for.</summary>
    public bool IgnoreRange { get; set; }
    /// <summary>Answer LFS files (safetensors, spiece.model) like huggingface.co does: a 302 carrying X-Linked-Etag to a
    /// /cdn/ URL whose answer has no sha256.</summary>
    public bool RedirectLfsToCdn { get; set; }

    public FakeHub()
    {
        _listener.Start();
        Endpoint = $"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}";
        _loop = Task.Run(AcceptLoop);
    }

    public string Endpoint { get; }

    public FakeHub Add(string id, Dictionary<string, byte[]> files)
    {
        _repos[id] = files;
        return this;
    }

    public int CountFor(string file) => Requests.Count(r => r.File == file);

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

        string[] parts = request.Path.TrimStart('/').Split('/');
        bool cdn = parts.Length > 0 && parts[0] == "cdn";
        // /{org}/{name}/resolve/{rev}/{file} or /{name}/resolve/{rev}/{file}; /cdn/{org}/{name}/{file}
        int resolveAt = Array.IndexOf(parts, "resolve");
        string id = cdn ? string.Join('/', parts[1..^1]) : resolveAt > 0 ? string.Join('/', parts[..resolveAt]) : "";
        string file = request.File;

        if (!_repos.TryGetValue(id, out Dictionary<string, byte[]>? repo))
        {
            await Send(stream, 404, "Not Found", [("X-Error-Code", "RepoNotFound")], "Repository not found"u8.ToArray());
            return;
        }
        if (RequiredToken is not null && !cdn && request.Authorization != "Bearer " + RequiredToken)
        {
            await Send(stream, 401, "Unauthorized", [("X-Error-Code", "GatedRepo")], "Access to this model is restricted"u8.ToArray());
            return;
        }
        if (!cdn && (resolveAt < 0 || parts.Length != resolveAt + 3 || parts[resolveAt + 1] != "main"))
        {
            await Send(stream, 404, "Not Found", [("X-Error-Code", "RevisionNotFound")], []);
            return;
        }
        if (!repo.TryGetValue(file, out byte[]? content))
        {
            await Send(stream, 404, "Not Found", [("X-Error-Code", "EntryNotFound")], "Entry not found"u8.ToArray());
            return;
        }

        bool lfs = file.EndsWith(".safetensors", StringComparison.Ordinal) || file == "spiece.model";
        string sha256 = Convert.ToHexStringLower(SHA256.HashData(content));
        var headers = new List<(string, string)>();
        if (lfs) headers.Add(("X-Linked-Etag", $"\"{sha256}\""));
        if (RedirectLfsToCdn && lfs && !cdn)
        {
            headers.Add(("Location", $"/cdn/{id}/{Uri.EscapeDataString(file)}"));
            await Send(stream, 302, "Found", headers, []);
            return;
        }
        if (!cdn)   // the hub's ETag: the sha256 for LFS files, a git blob sha1 (40 hex, not a sha256) for the others
            headers.Add(("ETag", lfs ? $"\"{sha256}\"" : $"\"{Convert.ToHexStringLower(SHA1.HashData(content))}\""));
        headers.Add(("Accept-Ranges", "bytes"));

        byte[] body = content;
        if (Corrupt.Contains(file))
        {
            body = (byte[])content.Clone();
            body[body.Length / 2] ^= 0x5A;
        }
        long start = 0;
        if (request.Range is string range && !IgnoreRange && range.StartsWith("bytes=", StringComparison.Ordinal) && range.EndsWith('-'))
        {
            start = long.Parse(range["bytes=".Length..^1]);
            if (start >= body.Length)
            {
                await Send(stream, 416, "Range Not Satisfiable", [("Content-Range", $"bytes */{body.Length}")], []);
                return;
            }
            headers.Add(("Content-Range", $"bytes {start}-{body.Length - 1}/{body.Length}"));
        }
        ReadOnlyMemory<byte> slice = body.AsMemory((int)start);
        int status = start > 0 ? 206 : 200;

        bool cut = CutFirst.Contains(file) && _cuts.AddOrUpdate(file, 1, (_, n) => n + 1) == 1;
        if (cut || Stall.Contains(file))
        {
            await SendHead(stream, status, status == 206 ? "Partial Content" : "OK", headers, slice.Length);
            await stream.WriteAsync(slice[..(slice.Length / 2)]);
            await stream.FlushAsync();
            if (Stall.Contains(file)) await Task.Delay(Timeout.Infinite, _stop.Token);
            client.Client.LingerClose(); // reset, not a clean close: the client sees the connection die mid-body
            return;
        }
        await SendHead(stream, status, status == 206 ? "Partial Content" : "OK", headers, slice.Length);
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

    private static async Task SendHead(NetworkStream stream, int status, string reason, IEnumerable<(string, string)> headers, long length)
    {
        var head = new StringBuilder($"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Length: {length}\r\n");
        foreach ((string name, string value) in headers) head.Append(name).Append(": ").Append(value).Append("\r\n");
        head.Append("\r\n");
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head.ToString()));
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
