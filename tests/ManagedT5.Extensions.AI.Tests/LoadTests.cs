// Loading by hub id from library code: T5TextGenerator.Load / LoadAsync and T5ChatClient.Load resolve a folder or a hub id
// the same way (through ManagedT5.Hub.ModelLocator), here from an HF cache built in a temp folder, offline.
using ManagedT5.Hub;
using Microsoft.Extensions.AI;

namespace ManagedT5.Extensions.AI.Tests;

/// <summary>Tests that change the current directory run alone.</summary>
[CollectionDefinition(nameof(CurrentDirectory), DisableParallelization = true)]
public sealed class CurrentDirectory;

[Collection(nameof(CurrentDirectory))]
public sealed class LoadTests : IDisposable
{
    private const string Id = "test-org/tiny-flan-t5";
    private const string Commit = "0123456789abcdef0123456789abcdef01234567";
    private const string Prompt = "Hello world";
    private readonly string _temp = Directory.CreateTempSubdirectory("managedt5-load-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_temp, recursive: true); }
        catch (IOException) { }
    }

    /// <summary>Offline hub options that look only in this test's folders (never the user's cache or weights/).</summary>
    private T5LoadOptions Offline() => new()
    {
        Hub = new HubOptions
        {
            Endpoint = "http://127.0.0.1:9",   // never contacted: offline
            Token = null,
            Offline = true,
            WeightsDirectory = Path.Combine(_temp, "weights"),
            CacheDir = Path.Combine(_temp, "hf-cache"),
            CacheDirectories = [Path.Combine(_temp, "hf-cache")],
        },
    };

    /// <summary>An HF cache holding <see cref="Id"/>: models--org--name/snapshots/{commit}/ with copies of the fixture's
    /// files, and refs/main naming the commit.</summary>
    private string BuildCache()
    {
        string repo = Path.Combine(_temp, "hf-cache", "models--" + Id.Replace("/", "--"));
        string snapshot = Path.Combine(repo, "snapshots", Commit);
        Directory.CreateDirectory(snapshot);
        Directory.CreateDirectory(Path.Combine(repo, "refs"));
        File.WriteAllText(Path.Combine(repo, "refs", "main"), Commit);
        foreach (string name in new[] { "config.json", "generation_config.json", "spiece.model", "model.safetensors" })
            File.Copy(Path.Combine(TinyModel.Folder, name), Path.Combine(snapshot, name));
        return snapshot;
    }

    private static string Expected()
    {
        using var t5 = T5TextGenerator.Load(TinyModel.Folder);
        return t5.Generate(Prompt, t5.DefaultOptions with { MaxNewTokens = 8 }).Text;
    }

    [Fact]
    public void Generator_LoadsAHubIdFromTheHfCache_Offline()
    {
        BuildCache();
        using var t5 = T5TextGenerator.Load(Id, Offline());
        Assert.Equal(Expected(), t5.Generate(Prompt, t5.DefaultOptions with { MaxNewTokens = 8 }).Text);
    }

    [Fact]
    public async Task Generator_LoadAsync_LoadsAHubIdFromTheHfCache_Offline()
    {
        BuildCache();
        using var t5 = await T5TextGenerator.LoadAsync(Id, Offline());
        Assert.Equal(Expected(), t5.Generate(Prompt, t5.DefaultOptions with { MaxNewTokens = 8 }).Text);
    }

    [Fact]
    public async Task ChatClient_LoadsAHubIdTheSameWay()
    {
        BuildCache();
        using T5ChatClient client = T5ChatClient.Load(Id, Offline());
        Assert.Equal(Id, client.ModelId);
        Assert.Equal(Expected(), (await client.GetResponseAsync(Prompt, new ChatOptions { MaxOutputTokens = 8 })).Text);

        using T5ChatClient viaAsync = await T5ChatClient.LoadAsync(Id, Offline());
        Assert.Equal(Id, viaAsync.ModelId);
    }

    [Fact]
    public async Task AHubIdNotOnThisMachine_Offline_IsAHubExceptionNamingIt()
    {
        BuildCache();
        const string missing = "test-org/not-here";
        var e = Assert.Throws<HubException>(() => T5TextGenerator.Load(missing, Offline()));
        Assert.Equal(missing, e.ModelId);
        Assert.Contains(missing, e.Message);
        var e2 = await Assert.ThrowsAsync<HubException>(() => T5TextGenerator.LoadAsync(missing, Offline()));
        Assert.Contains(missing, e2.Message);
        Assert.Throws<HubException>(() => T5ChatClient.Load(missing, Offline()));
    }

    [Fact]
    public async Task AFile_IsNotAModelFolder()
    {
        string file = Path.Combine(TinyModel.Folder, "model.safetensors");
        var e = Assert.Throws<ModelLoadException>(() => T5TextGenerator.Load(file, Offline()));
        Assert.StartsWith($"'{file}' is a file, not a model folder.", e.Message);
        Assert.Equal(file, e.FilePath);
        await Assert.ThrowsAsync<ModelLoadException>(() => T5TextGenerator.LoadAsync(file, Offline()));
        Assert.Throws<ModelLoadException>(() => T5ChatClient.Load(file, Offline()));

        // A bare file name in the current folder would otherwise pass for a hub id.
        string previous = Environment.CurrentDirectory;
        try
        {
            Environment.CurrentDirectory = TinyModel.Folder;
            Assert.StartsWith("'config.json' is a file, not a model folder.",
                Assert.Throws<ModelLoadException>(() => T5TextGenerator.Load("config.json", Offline())).Message);
        }
        finally { Environment.CurrentDirectory = previous; }
    }

    [Fact]
    public void AMissingFolder_IsAModelLoadExceptionNamingIt()
    {
        string missing = Path.Combine(_temp, "no", "such", "model");
        var e = Assert.Throws<ModelLoadException>(() => T5TextGenerator.Load(missing, Offline()));
        Assert.StartsWith($"Model folder '{missing}' does not exist.", e.Message);
    }

    [Fact]
    public void AFolder_IsLoadedAsGiven()
    {
        using var t5 = T5TextGenerator.Load(TinyModel.Folder, Offline());
        Assert.Equal(Expected(), t5.Generate(Prompt, t5.DefaultOptions with { MaxNewTokens = 8 }).Text);
    }
}
