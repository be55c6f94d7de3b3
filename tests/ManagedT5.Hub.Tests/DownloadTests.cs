// Downloads from the fake hub on 127.0.0.1 into an HF cache: whole and sharded models, resume, checksums, errors, offline,
// cancellation, the blob lock.
namespace ManagedT5.Hub.Tests;

public sealed class DownloadTests : IDisposable
{
    private const string Id = "google/tiny-flan-t5";
    private const string ShardedId = "google/tiny-flan-t5-sharded";
    private const int Limit = 60_000;   // ms per test: nothing here should take more than a few seconds
    private readonly TempDir _temp = new();
    private readonly FakeHub _hub = new();
    private readonly Dictionary<string, byte[]> _files = Fixtures.RepoFiles("tiny-flan-t5");

    public DownloadTests()
    {
        _hub.Add(Id, _files);
    }

    public void Dispose()
    {
        _hub.Dispose();
        _temp.Dispose();
    }

    private string Weights => _temp["weights"];
    private string Cache => _temp["hf-cache"];
    private string Repo(string id = Id) => Path.Combine(Cache, "models--" + id.Replace("/", "--"));
    private string Blobs(string id = Id) => Path.Combine(Repo(id), "blobs");
    private string Snapshot(string id = Id) => Path.Combine(Repo(id), "snapshots", _hub.CommitOf(id));
    private string Part(string file, string id = Id) => Path.Combine(Blobs(id), FakeHub.BlobName(file, _files[file]) + ".incomplete");
    private string[] Parts(string id = Id) => Directory.Exists(Blobs(id)) ? Directory.GetFiles(Blobs(id), "*.incomplete") : [];

    /// <summary>Options that read nothing from the environment and retry quickly.</summary>
    private HubOptions Options(int maxRetries = 0) => new()
    {
        Endpoint = _hub.Endpoint,
        Token = null,
        Offline = false,
        WeightsDirectory = Weights,
        CacheDir = Cache,
        CacheDirectories = [],
        MaxRetries = maxRetries,
        RetryDelay = TimeSpan.FromMilliseconds(10),
        ReadTimeout = TimeSpan.FromSeconds(20),
    };

    private static void AssertSameFiles(IReadOnlyDictionary<string, byte[]> expected, string directory)
    {
        Assert.Equal(expected.Keys.Order(), Directory.GetFiles(directory).Select(Path.GetFileName).Order());
        foreach ((string name, byte[] bytes) in expected)
            Assert.True(bytes.AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(directory, name))), name + " differs");
    }

    private Dictionary<string, byte[]> Expected(params string[] names) => names.ToDictionary(n => n, n => _files[n]);

    [Fact(Timeout = Limit)]
    public async Task Download_GivesByteIdenticalFiles_AndReportsProgress()
    {
        var reports = new List<DownloadProgress>();
        var progress = new SyncProgress(reports.Add);
        string folder = await ModelLocator.ResolveAsync(Id, Options(), progress);

        Assert.Equal(Snapshot(), folder);
        // spiece.model is there, so tokenizer.json is not fetched.
        AssertSameFiles(Expected("config.json", "generation_config.json", "spiece.model", "model.safetensors"), folder);
        Assert.Empty(Parts());
        Assert.False(Directory.Exists(Weights));   // nothing is downloaded into weights/
        Assert.Equal(0, _hub.CountFor("tokenizer.json"));

        DownloadProgress done = Assert.Single(reports, r => r.FileName == "model.safetensors" && r.IsComplete);
        Assert.Equal(_files["model.safetensors"].Length, done.BytesReceived);
        var weights = reports.Where(r => r.FileName == "model.safetensors").ToList();
        Assert.All(weights, r => Assert.Equal(_files["model.safetensors"].Length, r.TotalBytes));
        Assert.True(weights.Zip(weights.Skip(1)).All(p => p.First.BytesReceived <= p.Second.BytesReceived), "progress went backwards");
    }

    [Fact(Timeout = Limit)]
    public async Task Download_SyncResolve_Works()
    {
        string folder = await Task.Run(() => ModelLocator.Resolve(Id, Options()));
        Assert.True(File.Exists(Path.Combine(folder, "model.safetensors")));
    }

    [Fact(Timeout = Limit)]
    public async Task Download_Sharded_FetchesIndexAndEveryShard()
    {
        Dictionary<string, byte[]> sharded = Fixtures.RepoFiles("tiny-flan-t5-bf16-sharded");
        _hub.Add(ShardedId, sharded);

        string folder = await ModelLocator.ResolveAsync(ShardedId, Options());

        string[] names = ["config.json", "generation_config.json", "spiece.model", "model.safetensors.index.json",
            "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
        AssertSameFiles(names.ToDictionary(n => n, n => sharded[n]), folder);
        Assert.Equal(0, _hub.CountFor("model.safetensors"));   // HEAD once, 404, then the index
        Assert.Single(_hub.Requests, r => r.File == "model.safetensors");
    }

    [Fact(Timeout = Limit)]
    public async Task Download_IndexNamingAFileOutsideTheFolder_IsRefused()
    {
        Dictionary<string, byte[]> files = Fixtures.RepoFiles("tiny-flan-t5", except: "model.safetensors");
        files["model.safetensors.index.json"] = """{"weight_map": {"shared.weight": "../../evil.safetensors"}}"""u8.ToArray();
        _hub.Add("org/evil", files);

        HubException e = await Assert.ThrowsAsync<HubException>(() => ModelLocator.ResolveAsync("org/evil", Options()));

        Assert.Contains("index", e.Message);
        Assert.DoesNotContain(_hub.Requests, r => r.Path.Contains("evil.safetensors", StringComparison.Ordinal));
        Assert.False(File.Exists(Path.Combine(Snapshot("org/evil"), "model.safetensors.index.json")));
        Assert.Null(HubCache.FindSnapshot(Cache, "org/evil", "main"));
    }

    [Fact(Timeout = Limit)]
    public async Task Download_TokenizerJson_WhenThereIsNoSpieceModel()
    {
        _hub.Add("org/no-spiece", Fixtures.RepoFiles("tiny-flan-t5", except: "spiece.model"));
        string folder = await ModelLocator.ResolveAsync("org/no-spiece", Options());
        AssertSameFiles(Expected("config.json", "generation_config.json", "tokenizer.json", "model.safetensors"), folder);
    }

    [Fact(Timeout = Limit)]
    public async Task Download_WithoutGenerationConfig_IsFine()
    {
        _hub.Add("org/no-genconfig", Fixtures.RepoFiles("tiny-flan-t5", except: "generation_config.json"));
        string folder = await ModelLocator.ResolveAsync("org/no-genconfig", Options());
        AssertSameFiles(Expected("config.json", "spiece.model", "model.safetensors"), folder);
        // Like huggingface_hub: an empty marker says the commit has no such file.
        string marker = Path.Combine(Repo("org/no-genconfig"), ".no_exist", _hub.CommitOf("org/no-genconfig"), "generation_config.json");
        Assert.Equal(0, new FileInfo(marker).Length);
    }

    [Fact(Timeout = Limit)]
    public async Task Resume_AfterConnectionCut_RetriesWithRange()
    {
        _hub.CutFirst.Add("model.safetensors");

        string folder = await ModelLocator.ResolveAsync(Id, Options(maxRetries: 2));

        AssertSameFiles(Expected("config.json", "generation_config.json", "spiece.model", "model.safetensors"), folder);
        HubRequest[] gets = _hub.Requests.Where(r => r.IsGet && r.File == "model.safetensors").ToArray();
        Assert.Equal(2, gets.Length);
        Assert.Null(gets[0].Range);
        Assert.Matches(@"^bytes=[1-9][0-9]*-$", gets[1].Range);
        Assert.Equal($"\"{FakeHub.Sha256(_files["model.safetensors"])}\"", gets[1].IfRange);
    }

    [Fact(Timeout = Limit)]
    public async Task Resume_NextRun_ContinuesThePartFile()
    {
        _hub.CutFirst.Add("model.safetensors");

        HubException e = await Assert.ThrowsAsync<HubException>(() => ModelLocator.ResolveAsync(Id, Options(maxRetries: 0)));
        Assert.Contains("model.safetensors", e.Message);
        Assert.Contains(Blobs(), e.Message);                   // says where the part is kept
        Assert.False(File.Exists(Path.Combine(Snapshot(), "model.safetensors")));   // nothing half-made in the snapshot
        Assert.Null(HubCache.FindSnapshot(Cache, Id, "main"));
        Assert.False(File.Exists(Path.Combine(Repo(), "refs", "main")));
        string part = Part("model.safetensors");
        long partLength = new FileInfo(part).Length;
        Assert.InRange(partLength, 1, _files["model.safetensors"].Length - 1);

        string folder = await ModelLocator.ResolveAsync(Id, Options(maxRetries: 0));

        AssertSameFiles(Expected("config.json", "generation_config.json", "spiece.model", "model.safetensors"), folder);
        Assert.Equal($"bytes={partLength}-", _hub.Requests.Last(r => r.IsGet && r.File == "model.safetensors").Range);
        Assert.Equal(1, _hub.CountFor("config.json"));         // finished files are not fetched again
        Assert.Empty(Parts());
    }

    [Fact(Timeout = Limit)]
    public async Task Resume_ServerIgnoringRange_StartsOver()
    {
        _hub.CutFirst.Add("model.safetensors");
        _hub.IgnoreRange = true;

        string folder = await ModelLocator.ResolveAsync(Id, Options(maxRetries: 1));

        AssertSameFiles(Expected("config.json", "generation_config.json", "spiece.model", "model.safetensors"), folder);
        Assert.NotNull(_hub.Requests.Last(r => r.IsGet && r.File == "model.safetensors").Range);
    }

    [Fact(Timeout = Limit)]
    public async Task Resume_StalePartWithWrongBytes_StartsOverOnce()
    {
        Directory.CreateDirectory(Blobs());
        byte[] stale = new byte[_files["model.safetensors"].Length / 3];   // e.g. bytes a crashed disk or process left
        stale.AsSpan().Fill(0xAB);
        File.WriteAllBytes(Part("model.safetensors"), stale);

        string folder = await ModelLocator.ResolveAsync(Id, Options());

        AssertSameFiles(Expected("config.json", "generation_config.json", "spiece.model", "model.safetensors"), folder);
        HubRequest[] gets = _hub.Requests.Where(r => r.IsGet && r.File == "model.safetensors").ToArray();
        Assert.Equal(2, gets.Length);
        Assert.Equal($"bytes={stale.Length}-", gets[0].Range);
        Assert.Null(gets[1].Range);
    }

    [Fact(Timeout = Limit)]
    public async Task Checksum_CorruptBytes_AreCaughtAndDeleted()
    {
        _hub.Corrupt.Add("model.safetensors");

        HubException e = await Assert.ThrowsAsync<HubException>(() => ModelLocator.ResolveAsync(Id, Options()));

        string expected = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(_files["model.safetensors"]));
        Assert.Contains("model.safetensors", e.Message);
        Assert.Contains(expected, e.Message);
        Assert.Contains("corrupt", e.Message);
        Assert.Equal("model.safetensors", e.FileName);
        Assert.Empty(Parts());
        Assert.False(File.Exists(Path.Combine(Blobs(), expected)));
        Assert.False(File.Exists(Path.Combine(Snapshot(), "model.safetensors")));
        Assert.Null(HubCache.FindSnapshot(Cache, Id, "main"));
    }

    [Fact(Timeout = Limit)]
    public async Task Checksum_FromTheHubsRedirect_IsUsedForTheCdnBody()
    {
        _hub.RedirectLfsToCdn = true;
        string folder = await ModelLocator.ResolveAsync(Id, Options());
        AssertSameFiles(Expected("config.json", "generation_config.json", "spiece.model", "model.safetensors"), folder);
        Assert.Contains(_hub.Requests, r => r.Path.StartsWith("/cdn/", StringComparison.Ordinal));

        using var again = new TempDir();
        _hub.Corrupt.Add("model.safetensors");   // the CDN answer has no hash; only the 302's X-Linked-Etag can catch this
        await Assert.ThrowsAsync<HubException>(() => ModelLocator.ResolveAsync(Id, Options() with { CacheDir = again.Path }));
    }

    [Fact(Timeout = Limit)]
    public async Task NotFound_ModelId_SaysSo()
    {
        HubException e = await Assert.ThrowsAsync<HubException>(() => ModelLocator.ResolveAsync("nobody/no-such-model", Options()));
        Assert.Contains("not found", e.Message);
        Assert.Contains("nobody/no-such-model", e.Message);
        Assert.Equal(404, e.StatusCode);
        Assert.Equal("config.json", e.FileName);
        Assert.False(Directory.Exists(Repo("nobody/no-such-model")));
        Assert.False(Directory.Exists(Path.Combine(Cache, ".locks", "models--nobody--no-such-model")));
    }

    [Fact(Timeout = Limit)]
    public async Task Gated_WithoutToken_SaysSetHfToken_WithTokenDownloads()
    {
        _hub.RequiredToken = "hf_secret";

        HubException e = await Assert.ThrowsAsync<HubException>(() => ModelLocator.ResolveAsync(Id, Options()));
        Assert.Equal(401, e.StatusCode);
        Assert.Contains("HF_TOKEN", e.Message);
        Assert.Contains("gated", e.Message);
        Assert.All(_hub.Requests, r => Assert.Null(r.Authorization));

        string folder = await ModelLocator.ResolveAsync(Id, Options() with { Token = "hf_secret" });
        Assert.True(File.Exists(Path.Combine(folder, "model.safetensors")));
        Assert.Contains(_hub.Requests, r => r.Authorization == "Bearer hf_secret");
    }

    [Fact(Timeout = Limit)]
    public async Task Offline_WithoutLocalCopy_SaysWhatToDownloadAndWhere()
    {
        HubException e = await Assert.ThrowsAsync<HubException>(() => ModelLocator.ResolveAsync(Id, Options() with { Offline = true }));
        Assert.Contains(Id, e.Message);
        Assert.Contains(Repo(), e.Message);                  // the cache folder it looked in
        Assert.Contains(Path.Combine(Weights, Id), e.Message);
        Assert.Contains("model.safetensors", e.Message);
        Assert.Contains("HF_HUB_OFFLINE", e.Message);
        Assert.Contains("--offline", e.Message);
        Assert.Contains("--model DIR", e.Message);
        Assert.Empty(_hub.Requests);
        Assert.False(Directory.Exists(Cache));
    }

    [Fact(Timeout = Limit)]
    public async Task Offline_WithLocalCopy_UsesIt()
    {
        string placed = Path.Combine(Weights, Id);   // a checkpoint a user placed in weights/
        Directory.CreateDirectory(placed);
        foreach (string name in new[] { "config.json", "spiece.model", "model.safetensors" })
            File.Copy(Path.Combine(Fixtures.Model("tiny-flan-t5"), name), Path.Combine(placed, name));

        Assert.Equal(placed, await ModelLocator.ResolveAsync(Id, Options() with { Offline = true }));
        Assert.Equal(placed, await ModelLocator.ResolveAsync(Id, Options()));
        Assert.Empty(_hub.Requests);

        // The first download lands in the cache; offline, the cache then answers.
        string downloaded = await ModelLocator.ResolveAsync(Id, Options() with { WeightsDirectory = null });
        int requests = _hub.Requests.Count;
        Assert.Equal(downloaded, await ModelLocator.ResolveAsync(Id, Options() with { WeightsDirectory = null, Offline = true }));
        Assert.Equal(requests, _hub.Requests.Count);
    }

    [Fact(Timeout = Limit)]
    public async Task SecondRun_DownloadsNothing()
    {
        string first = await ModelLocator.ResolveAsync(Id, Options());
        int requests = _hub.Requests.Count;
        Assert.True(requests >= 4);

        string second = await ModelLocator.ResolveAsync(Id, Options());

        Assert.Equal(first, second);
        Assert.Equal(requests, _hub.Requests.Count);
    }

    [Fact(Timeout = Limit)]
    public async Task IncompleteLocalCopy_IsLeftAlone_AndTheModelComesToTheCache()
    {
        string placed = Path.Combine(Weights, Id);
        Directory.CreateDirectory(placed);
        File.WriteAllText(Path.Combine(placed, "config.json"), "{}");   // a stale or partial copy made by hand
        File.WriteAllText(Path.Combine(placed, "notes.txt"), "mine");

        string folder = await ModelLocator.ResolveAsync(Id, Options());

        Assert.Equal(Snapshot(), folder);
        Assert.Equal(_files["config.json"], File.ReadAllBytes(Path.Combine(folder, "config.json")));
        Assert.Equal(_files["model.safetensors"], File.ReadAllBytes(Path.Combine(folder, "model.safetensors")));
        Assert.Equal(["config.json", "notes.txt"], Directory.GetFiles(placed).Select(Path.GetFileName).Order());
        Assert.Equal("{}", File.ReadAllText(Path.Combine(placed, "config.json")));
    }

    [Fact(Timeout = Limit)]
    public async Task Cancellation_StopsADownload_AndKeepsThePart()
    {
        _hub.Stall.Add("model.safetensors");
        using var cts = new CancellationTokenSource();
        // The body stalls half-way; cancel a moment after the weights' download has started.
        var progress = new SyncProgress(p =>
        {
            if (p.FileName == "model.safetensors") cts.CancelAfter(300);
        });

        var clock = System.Diagnostics.Stopwatch.StartNew();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => ModelLocator.ResolveAsync(Id, Options(), progress, cts.Token));

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(15), $"cancellation took {clock.Elapsed}");
        Assert.Null(HubCache.FindSnapshot(Cache, Id, "main"));
        Assert.True(File.Exists(Part("model.safetensors")));
    }

    [Fact(Timeout = Limit)]
    public async Task Cancellation_BeforeStart_Throws()
    {
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => ModelLocator.ResolveAsync(Id, Options(), null, cts.Token));
        Assert.Empty(_hub.Requests);
    }

    [Fact(Timeout = Limit)]
    public async Task ReadTimeout_OnAStalledBody_IsANetworkError()
    {
        _hub.Stall.Add("model.safetensors");
        HubException e = await Assert.ThrowsAsync<HubException>(
            () => ModelLocator.ResolveAsync(Id, Options() with { ReadTimeout = TimeSpan.FromMilliseconds(500) }));
        Assert.Contains("no data", e.Message);
        Assert.Contains("model.safetensors", e.Message);
        Assert.True(File.Exists(Part("model.safetensors")));
    }

    [Fact(Timeout = Limit)]
    public async Task NetworkFailure_SaysWhatToDownloadAndWhere()
    {
        var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        int port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();   // nothing listens there now: connections are refused

        HubException e = await Assert.ThrowsAsync<HubException>(
            () => ModelLocator.ResolveAsync(Id, Options(maxRetries: 1) with { Endpoint = $"http://127.0.0.1:{port}" }));

        Assert.Contains("config.json", e.Message);
        Assert.Contains("model.safetensors", e.Message);
        Assert.Contains($"http://127.0.0.1:{port}/{Id}", e.Message);   // where to get the files by hand
        Assert.Contains("2 attempts", e.Message);
        Assert.False(Directory.Exists(Cache));
    }

    [Fact(Timeout = Limit)]
    public async Task AnotherDownloadInProgress_IsRefused()
    {
        // huggingface_hub's lock for config.json's blob: {cache}/.locks/models--{org}--{name}/{etag}.lock
        string locks = Path.Combine(Cache, ".locks", "models--google--tiny-flan-t5");
        Directory.CreateDirectory(locks);
        string lockFile = Path.Combine(locks, FakeHub.GitBlobSha1(_files["config.json"]) + ".lock");
        using var held = new FileStream(lockFile, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        IOException e = await Assert.ThrowsAnyAsync<IOException>(() => ModelLocator.ResolveAsync(Id, Options()));
        Assert.Contains("Another process", e.Message);
        Assert.Contains(lockFile, e.Message);
        Assert.Equal(0, _hub.CountFor("config.json"));
    }

    /// <summary>IProgress that calls back on the reporting thread (Progress&lt;T&gt; would post to the thread pool).</summary>
    private sealed class SyncProgress(Action<DownloadProgress> report) : IProgress<DownloadProgress>
    {
        private readonly Lock _lock = new();
        public void Report(DownloadProgress value)
        {
            lock (_lock) report(value);
        }
    }
}
