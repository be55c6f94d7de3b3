// What a download must not accept from a hub (issue 14): bodies cut short without a length, resumes spliced from two versions
// or answered with another file's range, files that are not what their name says, shard names that escape the folder or
// carry terminal escapes, bodies that trickle in forever; and local folders whose files are broken do not count as complete.
using System.Text;
using ManagedT5.IO;

namespace ManagedT5.Hub.Tests;

public sealed class IntegrityTests : IDisposable
{
    private const string Id = "google/tiny-flan-t5";
    private const int Limit = 60_000;
    private readonly TempDir _temp = new();
    private readonly FakeHub _hub = new();
    private readonly Dictionary<string, byte[]> _files = Fixtures.RepoFiles("tiny-flan-t5");

    public IntegrityTests()
    {
        _hub.Add(Id, _files);
    }

    public void Dispose()
    {
        _hub.Dispose();
        _temp.Dispose();
    }

    private HubOptions Options(int maxRetries = 0) => new()
    {
        Endpoint = _hub.Endpoint,
        Token = null,
        Offline = false,
        WeightsDirectory = _temp["weights"],
        CacheDir = _temp["hf-cache"],
        CacheDirectories = [],
        MaxRetries = maxRetries,
        RetryDelay = TimeSpan.FromMilliseconds(10),
        ReadTimeout = TimeSpan.FromSeconds(20),
    };

    /// <summary>Every file named <paramref name="name"/> anywhere under the test's folder (links followed by reading).</summary>
    private string[] Everywhere(string name) =>
        Directory.GetFiles(_temp.Path, name, SearchOption.AllDirectories);

    private static void AssertPrintable(string message)
    {
        foreach (char c in message)
            Assert.False(char.IsControl(c) || c is >= '\u2028' and <= '\u202E' or >= '\u2066' and <= '\u2069',
                $"message has control character U+{(int)c:X4}: {message.Replace("\u001b", "<ESC>")}");
    }

    [Fact(Timeout = Limit)]
    public async Task BodyWithoutLength_CutShort_IsNotPublished()
    {
        _hub.NoLength.Add("config.json");
        _hub.Truncate.Add("config.json");

        HubException e = await Assert.ThrowsAsync<HubException>(() => ModelLocator.ResolveAsync(Id, Options()));

        Assert.Equal("config.json", e.FileName);
        Assert.Contains("config.json", e.Message);
        Assert.Empty(Everywhere("config.json"));
    }

    [Fact(Timeout = Limit)]
    public async Task BodyWithoutLength_Whole_IsAcceptedByItsChecksum()
    {
        _hub.NoLength.Add("config.json");
        string folder = await ModelLocator.ResolveAsync(Id, Options());
        Assert.Equal(_files["config.json"], File.ReadAllBytes(Path.Combine(folder, "config.json")));
    }

    [Fact(Timeout = Limit)]
    public async Task Resume_OfAFileThatChangedOnTheHub_IsNotSplicedFromTwoVersions()
    {
        _hub.CutFirst.Add("config.json");
        await Assert.ThrowsAsync<HubException>(() => ModelLocator.ResolveAsync(Id, Options()));   // half of version 1 is kept

        // Version 2: the same length, different early on (a space turned into a tab), still valid JSON.
        byte[] v2 = (byte[])_files["config.json"].Clone();
        v2[Array.IndexOf(v2, (byte)' ')] = (byte)'\t';
        _hub.Replace(Id, "config.json", v2);

        string folder = await ModelLocator.ResolveAsync(Id, Options());

        Assert.Equal(v2, File.ReadAllBytes(Path.Combine(folder, "config.json")));
    }

    [Fact(Timeout = Limit)]
    public async Task Resume_SendsIfRange_WithTheETagItStartedWith()
    {
        _hub.CutFirst.Add("config.json");

        string folder = await ModelLocator.ResolveAsync(Id, Options(maxRetries: 1));

        Assert.Equal(_files["config.json"], File.ReadAllBytes(Path.Combine(folder, "config.json")));
        HubRequest resumed = _hub.Requests.Last(r => r.IsGet && r.File == "config.json");
        Assert.NotNull(resumed.Range);
        Assert.Equal($"\"{FakeHub.GitBlobSha1(_files["config.json"])}\"", resumed.IfRange);
    }

    [Fact(Timeout = Limit)]
    public async Task Resume_AnsweredWithAnotherTotal_StartsOverFromZero()
    {
        _hub.CutFirst.Add("model.safetensors");
        _hub.WrongRangeTotal = true;   // 206, but Content-Range says the file is 1000 bytes longer than the one begun

        string folder = await ModelLocator.ResolveAsync(Id, Options(maxRetries: 1));

        Assert.Equal(_files["model.safetensors"], File.ReadAllBytes(Path.Combine(folder, "model.safetensors")));
        HubRequest[] gets = _hub.Requests.Where(r => r.IsGet && r.File == "model.safetensors").ToArray();
        Assert.Equal(3, gets.Length);   // cut, resumed (wrong total: dropped), anew
        Assert.NotNull(gets[1].Range);
        Assert.Null(gets[2].Range);
    }

    [Fact(Timeout = Limit)]
    public async Task SlowBody_FailsOnTheMinimumRate_WithinSeconds()
    {
        _hub.Trickle.Add("config.json");   // 20 bytes/s: each read comes well within ReadTimeout, the whole would take 30 s
        var clock = System.Diagnostics.Stopwatch.StartNew();

        HubException e = await Assert.ThrowsAsync<HubException>(() => ModelLocator.ResolveAsync(Id, Options(maxRetries: 1) with
        {
            MinimumBytesPerSecond = 200,
            MinimumRateWindow = TimeSpan.FromSeconds(1),
        }));

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"took {clock.Elapsed}");
        Assert.Contains("config.json", e.Message);
        Assert.Contains("MinimumBytesPerSecond", e.Message);
        Assert.Contains("2 attempts", e.Message);
        Assert.Empty(Everywhere("config.json"));
    }

    [Theory(Timeout = Limit)]
    [InlineData("config.json", "<html>Bad gateway</html>", "JSON")]
    [InlineData("config.json", "[1, 2, 3]", "object")]
    [InlineData("model.safetensors", "\u00ff\u00ff\u00ff\u00ff\u00ff\u00ff\u00ff\u007fjunk", "header")]
    public async Task Download_OfAFileThatIsNotWhatItsNameSays_IsRefused(string file, string content, string expected)
    {
        _hub.Add("org/broken", new Dictionary<string, byte[]>(_files) { [file] = Encoding.Latin1.GetBytes(content) });

        HubException e = await Assert.ThrowsAsync<HubException>(() => ModelLocator.ResolveAsync("org/broken", Options()));

        Assert.Equal(file, e.FileName);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain(Everywhere(file), f => new FileInfo(f).Length == content.Length);
    }

    [Fact(Timeout = Limit)]
    public async Task Download_OfAHugeConfig_IsRefusedBeforeItsBody()
    {
        byte[] huge = new byte[InputFile.MaxJsonBytes + 1];   // a "config.json" larger than any real one
        huge.AsSpan().Fill((byte)' ');
        _hub.Add("org/huge", new Dictionary<string, byte[]>(_files) { ["config.json"] = huge });

        HubException e = await Assert.ThrowsAsync<HubException>(() => ModelLocator.ResolveAsync("org/huge", Options()));

        Assert.Contains("more than", e.Message);
        Assert.Contains("not downloaded", e.Message);   // refused on its stated size, not after 64 MB arrived
        Assert.Empty(Everywhere("config.json"));
        Assert.Empty(Directory.GetFiles(_temp.Path, "*.incomplete", SearchOption.AllDirectories));
    }

    [Theory]
    [InlineData("config.json", "")]
    [InlineData("config.json", "{\"d_model\": ")]
    [InlineData("spiece.model", "")]
    [InlineData("model.safetensors", "12345678")]
    public void LocalFolder_WithABrokenFile_IsNotComplete(string file, string content)
    {
        string local = Path.Combine(_temp["weights"], Id);
        Directory.CreateDirectory(local);
        foreach (string name in new[] { "config.json", "spiece.model", "model.safetensors" })
            File.Copy(Path.Combine(Fixtures.Model("tiny-flan-t5"), name), Path.Combine(local, name));
        Assert.Equal(local, ModelLocator.Resolve(Id, Options() with { Offline = true }));

        File.WriteAllText(Path.Combine(local, file), content);

        Assert.Throws<HubException>(() => ModelLocator.Resolve(Id, Options() with { Offline = true }));
    }

    [Theory(Timeout = Limit)]
    [InlineData("../../evil.safetensors")]
    [InlineData("model\u001b]0;pwned\u0007.safetensors")]
    [InlineData("model\u001b[2J.safetensors")]
    [InlineData("sub/model.safetensors")]
    public async Task ShardName_OutsideTheRule_IsRefused_AndNotEchoedRaw(string shard)
    {
        Dictionary<string, byte[]> files = Fixtures.RepoFiles("tiny-flan-t5", except: "model.safetensors");
        string json = System.Text.Json.JsonSerializer.Serialize(new { weight_map = new Dictionary<string, string> { ["shared.weight"] = shard } });
        files["model.safetensors.index.json"] = Encoding.UTF8.GetBytes(json);
        _hub.Add("org/evil", files);

        HubException e = await Assert.ThrowsAsync<HubException>(() => ModelLocator.ResolveAsync("org/evil", Options()));

        Assert.Contains("model.safetensors.index.json", e.Message);
        AssertPrintable(e.Message);
        Assert.DoesNotContain(_hub.Requests, r => r.File == shard || r.File == Path.GetFileName(shard) && r.File != "model.safetensors" ||
                                                  r.Path.Contains("evil.safetensors", StringComparison.Ordinal));
        Assert.Empty(Everywhere("model.safetensors.index.json"));
    }

    [Fact(Timeout = Limit)]
    public async Task ErrorFromTheServer_WithEscapes_IsNotEchoedRaw()
    {
        _hub.FailWith = (418, "I am a teapot \u001b[2J\u001b]0;pwned\u0007 \u202Etxt.exe");

        HubException e = await Assert.ThrowsAsync<HubException>(() => ModelLocator.ResolveAsync(Id, Options()));

        AssertPrintable(e.Message);
        Assert.Contains("418", e.Message);
    }
}
