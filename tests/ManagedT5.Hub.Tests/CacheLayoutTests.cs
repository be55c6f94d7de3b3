// What a download leaves in the HF cache, checked against huggingface_hub's documented layout
// (https://huggingface.co/docs/hub/local-cache): blobs named by etag, relative snapshot links, refs, plain files where
// links cannot be made, blobs shared between revisions, and no empty folders after a failure.
namespace ManagedT5.Hub.Tests;

public sealed class CacheLayoutTests : IDisposable
{
    private const string Id = "google/tiny-flan-t5";
    private const int Limit = 60_000;
    private static readonly string[] Model = ["config.json", "generation_config.json", "spiece.model", "model.safetensors"];
    private readonly TempDir _temp = new();
    private readonly FakeHub _hub = new();
    private readonly Dictionary<string, byte[]> _files = Fixtures.RepoFiles("tiny-flan-t5");

    public CacheLayoutTests()
    {
        _hub.Add(Id, _files);
    }

    public void Dispose()
    {
        _hub.Dispose();
        _temp.Dispose();
    }

    private string Cache => _temp["hf-cache"];
    private string Repo(string id = Id) => Path.Combine(Cache, "models--" + id.Replace("/", "--"));

    private HubOptions Options() => new()
    {
        Endpoint = _hub.Endpoint,
        Token = null,
        Offline = false,
        WeightsDirectory = _temp["weights"],
        CacheDir = Cache,
        CacheDirectories = [],
        MaxRetries = 0,
        RetryDelay = TimeSpan.Zero,
        ReadTimeout = TimeSpan.FromSeconds(20),
    };

    /// <summary>Every folder under the cache, relative, '/'-separated.</summary>
    private string[] Folders() => Directory.Exists(Cache)
        ? Directory.GetDirectories(Cache, "*", SearchOption.AllDirectories).Select(d => Path.GetRelativePath(Cache, d).Replace('\\', '/')).Order().ToArray()
        : [];

    [Fact(Timeout = Limit)]
    public async Task Download_LandsInHuggingfaceHubsLayout()
    {
        string commit = _hub.CommitOf(Id);

        string folder = await ModelLocator.ResolveAsync(Id, Options());

        Assert.Equal(Path.Combine(Repo(), "snapshots", commit), folder);
        Assert.Equal(commit, File.ReadAllText(Path.Combine(Repo(), "refs", "main")));   // the hash alone, as huggingface_hub writes it
        foreach (string name in Model)
        {
            string blobName = FakeHub.BlobName(name, _files[name]);   // sha256 for LFS files, git sha1 for the others
            var link = new FileInfo(Path.Combine(folder, name));
            Assert.Equal(Path.Combine("..", "..", "blobs", blobName), link.LinkTarget);
            Assert.Equal(_files[name], File.ReadAllBytes(Path.Combine(Repo(), "blobs", blobName)));
            Assert.Equal(_files[name], File.ReadAllBytes(link.FullName));
        }
        Assert.Equal(Model.Length, Directory.GetFiles(Path.Combine(Repo(), "blobs")).Length);   // no .incomplete left
        Assert.True(File.Exists(Path.Combine(Cache, ".locks", "models--google--tiny-flan-t5",
            FakeHub.Sha256(_files["model.safetensors"]) + ".lock")));
        Assert.False(Directory.Exists(_temp["weights"]));

        // Read back as huggingface_hub would, offline: refs/main -> snapshots/{commit}.
        Assert.Equal(folder, await ModelLocator.ResolveAsync(Id, Options() with { Offline = true }));
    }

    [Fact(Timeout = Limit)]
    public async Task Download_FetchesEveryFileByTheCommitOfTheFirst()
    {
        string commit = _hub.CommitOf(Id);
        await ModelLocator.ResolveAsync(Id, Options());
        HubRequest[] requests = _hub.Requests.ToArray();
        Assert.Contains("/resolve/main/config.json", requests[0].Path);
        Assert.All(requests.Where(r => r.File != "config.json"), r => Assert.Contains($"/resolve/{commit}/", r.Path));
    }

    [Fact(Timeout = Limit)]
    public async Task Download_OfACommit_WritesNoRef()
    {
        string commit = _hub.CommitOf(Id);
        string folder = await ModelLocator.ResolveAsync(Id, Options() with { Revision = commit });
        Assert.Equal(Path.Combine(Repo(), "snapshots", commit), folder);
        Assert.False(Directory.Exists(Path.Combine(Repo(), "refs")));
    }

    [Fact(Timeout = Limit)]
    public async Task Download_WithoutSymlinks_PutsTheFilesInTheSnapshot()
    {
        string folder = await ModelLocator.ResolveAsync(Id, Options() with { NoSymlinksForTests = true });
        foreach (string name in Model)
        {
            var file = new FileInfo(Path.Combine(folder, name));
            Assert.Null(file.LinkTarget);
            Assert.Equal(_files[name], File.ReadAllBytes(file.FullName));
        }
        Assert.Empty(Directory.GetFiles(Path.Combine(Repo(), "blobs")));   // moved, as huggingface_hub does on Windows
    }

    [Fact(Timeout = Limit)]
    public async Task Download_FromAServerWithoutCommits_UsesAStandInSnapshot()
    {
        _hub.NoCommitHeader = true;
        string folder = await ModelLocator.ResolveAsync(Id, Options());

        string commit = File.ReadAllText(Path.Combine(Repo(), "refs", "main"));
        Assert.Matches("^[0-9a-f]{40}$", commit);
        Assert.Equal(Path.Combine(Repo(), "snapshots", commit), folder);
        Assert.All(_hub.Requests, r => Assert.Contains("/resolve/main/", r.Path));
        Assert.Equal(folder, await ModelLocator.ResolveAsync(Id, Options() with { Offline = true }));
    }

    [Fact(Timeout = Limit)]
    public async Task NewRevision_SharesTheUnchangedBlobs()
    {
        string first = await ModelLocator.ResolveAsync(Id, Options());
        byte[] v2 = "{\"model_type\": \"t5\", \"note\": \"v2\"}"u8.ToArray();
        byte[] config = _files["config.json"];
        _hub.Replace(Id, "generation_config.json", v2);
        Directory.Delete(Path.Combine(Repo(), "refs"), recursive: true);   // as if main had moved: ask the hub again
        int before = _hub.Requests.Count;

        string second = await ModelLocator.ResolveAsync(Id, Options());

        Assert.NotEqual(first, second);
        Assert.Equal(v2, File.ReadAllBytes(Path.Combine(second, "generation_config.json")));
        Assert.Equal(config, File.ReadAllBytes(Path.Combine(second, "config.json")));
        HubRequest[] gets = _hub.Requests.Skip(before).Where(r => r.IsGet).ToArray();
        Assert.Equal(["generation_config.json"], gets.Select(r => r.File));   // the rest came from blobs/ by their etags
        Assert.Equal(Model.Length + 1, Directory.GetFiles(Path.Combine(Repo(), "blobs")).Length);
    }

    [Fact(Timeout = Limit)]
    public async Task Failure_AtTheFirstFile_LeavesNoFolders()
    {
        await Assert.ThrowsAsync<HubException>(() => ModelLocator.ResolveAsync("nobody/nothing", Options()));
        Assert.Empty(Folders());
        Assert.False(Directory.Exists(_temp["weights"]));   // no staging folder there either
    }

    [Fact(Timeout = Limit)]
    public async Task Failure_OfABadFile_LeavesNoEmptyFolderAndNoFile()
    {
        _hub.Add("org/bad", new Dictionary<string, byte[]>(_files) { ["config.json"] = "<html>oops</html>"u8.ToArray() });

        await Assert.ThrowsAsync<HubException>(() => ModelLocator.ResolveAsync("org/bad", Options()));

        // The lock folder stays (huggingface_hub's too: lock files are never deleted); nothing else does.
        Assert.Equal([".locks", ".locks/models--org--bad"], Folders());
    }

    [Fact(Timeout = Limit)]
    public async Task Failure_HalfWay_KeepsWhatIsGoodForTheNextRun_ButNoRef()
    {
        _hub.Corrupt.Add("model.safetensors");

        await Assert.ThrowsAsync<HubException>(() => ModelLocator.ResolveAsync(Id, Options()));

        string snapshot = Path.Combine(Repo(), "snapshots", _hub.CommitOf(Id));
        Assert.Equal(["config.json", "generation_config.json", "spiece.model"],
            Directory.GetFiles(snapshot).Select(Path.GetFileName).Order());
        Assert.False(Directory.Exists(Path.Combine(Repo(), "refs")));
        Assert.Empty(Directory.GetFiles(Path.Combine(Repo(), "blobs"), "*.incomplete"));
        Assert.Null(HubCache.FindSnapshot(Cache, Id, _hub.CommitOf(Id)));
    }
}
