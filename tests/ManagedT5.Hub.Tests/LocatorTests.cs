// Resolution without the network: folders, hub-id rules, the HF cache layout, environment defaults, the progress bar.
namespace ManagedT5.Hub.Tests;

public sealed class LocatorTests : IDisposable
{
    private const string Id = "google/tiny-flan-t5";
    private const string Commit = "0123456789abcdef0123456789abcdef01234567";
    private readonly TempDir _temp = new();

    public void Dispose() => _temp.Dispose();

    private HubOptions Offline() => new()
    {
        Endpoint = "http://127.0.0.1:9",   // never contacted: offline
        Token = null,
        Offline = true,
        WeightsDirectory = _temp["weights"],
        CacheDir = _temp["hf-cache"],
        CacheDirectories = [],
    };

    /// <summary>A cache like huggingface_hub leaves it: blobs/{sha256} files, snapshots/{commit}/{name} links to them,
    /// refs/main holding the commit.</summary>
    private string BuildCache(string id, string commit, params string[] files) => BuildCacheIn(_temp["hf-cache"], id, commit, files);

    private static string BuildCacheIn(string cache, string id, string commit, params string[] files)
    {
        string repo = Path.Combine(cache, "models--" + id.Replace("/", "--"));
        string snapshot = Path.Combine(repo, "snapshots", commit);
        Directory.CreateDirectory(Path.Combine(repo, "blobs"));
        Directory.CreateDirectory(Path.Combine(repo, "refs"));
        Directory.CreateDirectory(snapshot);
        File.WriteAllText(Path.Combine(repo, "refs", "main"), commit);
        foreach (string name in files)
        {
            byte[] bytes = File.ReadAllBytes(Path.Combine(Fixtures.Model("tiny-flan-t5"), name));
            string blob = Path.Combine(repo, "blobs", Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes)));
            File.WriteAllBytes(blob, bytes);
            File.CreateSymbolicLink(Path.Combine(snapshot, name), Path.Combine("..", "..", "blobs", Path.GetFileName(blob)));
        }
        return snapshot;
    }

    [Fact]
    public void ExistingFolder_IsReturnedAsItsFullPath()
    {
        string model = Fixtures.Model("tiny-flan-t5");
        Assert.Equal(Path.GetFullPath(model), ModelLocator.Resolve(model));
        Assert.Equal(_temp.Path, ModelLocator.Resolve(_temp.Path, Offline()));   // a folder is taken as given, complete or not
    }

    [Theory]
    [InlineData("./no/such/folder")]
    [InlineData("/no/such/folder")]
    [InlineData("a/b/c")]
    [InlineData(@"a\b")]
    public void MissingPath_IsDirectoryNotFound(string path)
    {
        var e = Assert.Throws<DirectoryNotFoundException>(() => ModelLocator.Resolve(path, Offline()));
        Assert.Contains(path, e.Message);
    }

    [Theory]
    [InlineData("")]
    [InlineData("  ")]
    [InlineData("org/na me")]
    [InlineData("org/-name")]
    [InlineData("org/a--b")]
    public void BadInput_IsArgumentException(string input) =>
        Assert.ThrowsAny<ArgumentException>(() => ModelLocator.Resolve(input, Offline()));

    [Theory]
    [InlineData("google/flan-t5-small", true)]
    [InlineData("t5-small", true)]
    [InlineData("org/model.v1_2", true)]
    [InlineData("org/..", false)]
    [InlineData("org/name.", false)]
    [InlineData("a/b/c", false)]
    public void HubIdRule(string id, bool valid) => Assert.Equal(valid, ModelLocator.IsHubId(id));

    [Fact]
    public void BadOptions_AreArgumentExceptions()
    {
        Assert.Throws<ArgumentException>(() => ModelLocator.Resolve(Id, Offline() with { Endpoint = "ftp://x" }));
        Assert.Throws<ArgumentException>(() => ModelLocator.Resolve(Id, Offline() with { Revision = "../x" }));
        Assert.Throws<ArgumentException>(() => ModelLocator.Resolve(Id, Offline() with { MaxRetries = -1 }));
        Assert.Throws<ArgumentException>(() => ModelLocator.Resolve(Id, Offline() with { MinimumBytesPerSecond = -1 }));
        Assert.Throws<ArgumentException>(() => ModelLocator.Resolve(Id, Offline() with { MinimumRateWindow = TimeSpan.Zero }));
    }

    [Fact]
    public void HfCache_Snapshot_IsFoundThroughRefs()
    {
        string snapshot = BuildCache(Id, Commit, "config.json", "spiece.model", "model.safetensors");
        Assert.Equal(snapshot, ModelLocator.Resolve(Id, Offline()));
        Assert.Equal(snapshot, ModelLocator.Resolve(Id, Offline() with { Revision = Commit }));   // a commit needs no ref
    }

    [Fact]
    public void HfCache_ExtraReadOnlyCaches_AreSearchedAfterCacheDir()
    {
        string shared = BuildCacheIn(_temp["shared-cache"], Id, Commit, "config.json", "spiece.model", "model.safetensors");
        Assert.Equal(shared, ModelLocator.Resolve(Id, Offline() with { CacheDirectories = [_temp["shared-cache"]] }));

        string own = BuildCache(Id, Commit, "config.json", "spiece.model", "model.safetensors");
        Assert.Equal(own, ModelLocator.Resolve(Id, Offline() with { CacheDirectories = [_temp["shared-cache"]] }));
    }

    [Fact]
    public void HfCache_OtherRevision_IsNotUsed()
    {
        BuildCache(Id, Commit, "config.json", "spiece.model", "model.safetensors");
        Assert.Throws<HubException>(() => ModelLocator.Resolve(Id, Offline() with { Revision = "v2" }));
    }

    [Fact]
    public void HfCache_IncompleteSnapshot_IsSkipped()
    {
        BuildCache(Id, Commit, "config.json", "spiece.model");   // no weights yet
        var e = Assert.Throws<HubException>(() => ModelLocator.Resolve(Id, Offline()));
        Assert.Contains("HF_HUB_OFFLINE", e.Message);
    }

    [Fact]
    public void HfCache_DanglingLink_CountsAsMissing()
    {
        string snapshot = BuildCache(Id, Commit, "config.json", "spiece.model", "model.safetensors");
        string repo = Path.GetFullPath(Path.Combine(snapshot, "..", ".."));
        foreach (string blob in Directory.GetFiles(Path.Combine(repo, "blobs"))) File.Delete(blob);
        Assert.Throws<HubException>(() => ModelLocator.Resolve(Id, Offline()));
    }

    [Fact]
    public void WeightsFolder_WinsOverTheCache()
    {
        BuildCache(Id, Commit, "config.json", "spiece.model", "model.safetensors");
        string local = Path.Combine(_temp["weights"], Id);
        Directory.CreateDirectory(local);
        foreach (string name in new[] { "config.json", "tokenizer.json", "model.safetensors" })
            File.Copy(Path.Combine(Fixtures.Model("tiny-flan-t5"), name), Path.Combine(local, name));
        Assert.Equal(local, ModelLocator.Resolve(Id, Offline()));
    }

    [Fact]
    public void ShardedFolder_NeedsEveryShard()
    {
        string local = Path.Combine(_temp["weights"], "org", "sharded");
        Directory.CreateDirectory(local);
        foreach (string f in Directory.GetFiles(Fixtures.Model("tiny-flan-t5-bf16-sharded")))
            if (!Path.GetFileName(f).StartsWith("reference.", StringComparison.Ordinal) && Path.GetFileName(f) != "model-00002-of-00002.safetensors")
                File.Copy(f, Path.Combine(local, Path.GetFileName(f)));
        Assert.Throws<HubException>(() => ModelLocator.Resolve("org/sharded", Offline()));

        File.Copy(Path.Combine(Fixtures.Model("tiny-flan-t5-bf16-sharded"), "model-00002-of-00002.safetensors"),
            Path.Combine(local, "model-00002-of-00002.safetensors"));
        Assert.Equal(local, ModelLocator.Resolve("org/sharded", Offline()));
    }

    [Fact]
    public void Environment_DefaultsFollowHuggingfaceHub()
    {
        static Func<string, string?> Env(params (string Key, string Value)[] vars) =>
            key => vars.FirstOrDefault(v => v.Key == key).Value;

        Assert.Equal("https://huggingface.co", HubEnvironment.Endpoint(Env()));
        Assert.Equal("http://mirror.local", HubEnvironment.Endpoint(Env(("HF_ENDPOINT", "http://mirror.local/"))));
        Assert.Null(HubEnvironment.Token(Env()));
        Assert.Equal("hf_x", HubEnvironment.Token(Env(("HF_TOKEN", "hf_x"))));
        Assert.False(HubEnvironment.Offline(Env()));
        Assert.False(HubEnvironment.Offline(Env(("HF_HUB_OFFLINE", "0"))));
        Assert.True(HubEnvironment.Offline(Env(("HF_HUB_OFFLINE", "1"))));
        Assert.True(HubEnvironment.Offline(Env(("HF_HUB_OFFLINE", "true"))));
        Assert.Equal("/c", HubEnvironment.CacheDirectory(Env(("HF_HUB_CACHE", "/c"), ("HF_HOME", "/h"), ("XDG_CACHE_HOME", "/x"))));
        Assert.Equal("/old", HubEnvironment.CacheDirectory(Env(("HUGGINGFACE_HUB_CACHE", "/old"), ("HF_HOME", "/h"))));
        Assert.Equal(Path.Combine("/h", "hub"), HubEnvironment.CacheDirectory(Env(("HF_HOME", "/h"), ("XDG_CACHE_HOME", "/x"))));
        Assert.Equal(Path.Combine("/x", "huggingface", "hub"), HubEnvironment.CacheDirectory(Env(("XDG_CACHE_HOME", "/x"))));
        string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        Assert.Equal(Path.Combine(home, ".cache", "huggingface", "hub"), HubEnvironment.CacheDirectory(Env()));
        Assert.Equal(Path.Combine(home + "/hf", "hub"), HubEnvironment.CacheDirectory(Env(("HF_HOME", "~/hf"))));
    }

    [Fact]
    public void ProgressBar_DrawsOneLinePerFile_WhenInteractive()
    {
        var output = new StringWriter();
        var bar = new ConsoleProgressBar(output, interactive: true, width: 80);
        bar.Report(new DownloadProgress(Id, "model.safetensors", 0, 1000, 0, null, false));
        bar.Report(new DownloadProgress(Id, "model.safetensors", 1000, 1000, 5000, TimeSpan.Zero, true));
        string text = output.ToString();
        Assert.StartsWith("\rmodel.safetensors [", text);
        Assert.Contains("100%", text);
        Assert.Contains("done", text);
        Assert.EndsWith(Environment.NewLine, text);
        Assert.All(text.Split('\r', '\n'), line => Assert.True(line.Length <= 79, line));
    }

    [Fact]
    public void ProgressBar_IsQuiet_WhenRedirected()
    {
        var output = new StringWriter();
        var bar = new ConsoleProgressBar(output, interactive: false);
        bar.Report(new DownloadProgress(Id, "model.safetensors", 10, 100, 1, TimeSpan.FromSeconds(90), false));
        Assert.Equal("", output.ToString());
    }

    [Theory]
    [InlineData(20)]
    [InlineData(40)]
    [InlineData(200)]
    public void ProgressBar_LineFitsTheWidth(int width)
    {
        var p = new DownloadProgress(Id, "model-00001-of-00002.safetensors", 3L << 30, 5L << 30, 12.5 * (1 << 20), TimeSpan.FromMinutes(75), false);
        string line = ConsoleProgressBar.Format(p, width);
        Assert.True(line.Length <= width, line);
        Assert.Contains("60%", line);
        Assert.Equal("model.safetensors 12 B", ConsoleProgressBar.Format(new DownloadProgress(Id, "model.safetensors", 12, null, 0, null, false), 80));
    }
}
