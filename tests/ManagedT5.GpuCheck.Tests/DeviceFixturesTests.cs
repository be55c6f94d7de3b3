// What a device run gets: the fixtures bench/gpu-check.sh --prepare sends (device-fixtures.txt) cover every case the
// runner runs, a case whose model folder is absent skips naming it, and the script's slim/restore round trip leaves
// a clean, byte-identical tree (on a small throwaway git repository, never this one).
using System.Diagnostics;
using ManagedT5.Bench.GpuCheck;
using Runner = ManagedT5.Bench.GpuCheck.GpuCheck;
using Xunit.Abstractions;

namespace ManagedT5.GpuCheck.Tests;

[Collection("environment")] // the runner sets MANAGEDT5_PARITY_BACKEND, these tests MANAGEDT5_FIXTURES
public sealed class DeviceFixturesTests(ITestOutputHelper output) : IDisposable
{
    private const string RootVariable = "MANAGEDT5_FIXTURES";   // tests/ManagedT5.Tests/Fixtures.cs
    private readonly string _temp = Directory.CreateTempSubdirectory("gpucheck-fixtures-").FullName;

    public void Dispose()
    {
        Environment.SetEnvironmentVariable(RootVariable, null);
        Environment.SetEnvironmentVariable(ManagedT5.Tests.Backends.Variable, null);
        Directory.Delete(_temp, recursive: true);
    }

    /// <summary>The repository: the folder above this binary holding bench/gpu-check.sh.</summary>
    private static string Repo { get; } = FindRepo();

    private static string FindRepo()
    {
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "bench", "gpu-check.sh"))) return d.FullName;
        throw new DirectoryNotFoundException("bench/gpu-check.sh not found above " + AppContext.BaseDirectory);
    }

    private static string ListFile => Path.Combine(Repo, "bench", "ManagedT5.Bench.GpuCheck", "device-fixtures.txt");

    /// <summary>device-fixtures.txt as gpu-check.sh reads it: paths under tests/fixtures, comments left out.</summary>
    private static List<string> Listed() => File.ReadAllLines(ListFile)
        .Select(l => (l.Contains('#') ? l[..l.IndexOf('#')] : l).TrimEnd()).Where(l => l.Length > 0).ToList();

    /// <summary>A fixture root holding the listed paths (links to this tree's), less <paramref name="leaveOut"/>.</summary>
    private string SentRoot(string? leaveOut)
    {
        string root = Path.Combine(_temp, "fixtures");
        foreach (string path in Listed().Where(p => p != "models/" + leaveOut))
        {
            string source = Path.Combine(Repo, "tests", "fixtures", path), link = Path.Combine(root, path);
            Directory.CreateDirectory(Path.GetDirectoryName(link)!);
            Directory.CreateSymbolicLink(link, source);
        }
        return root;
    }

    private (GpuCheckSummary Summary, string Log) RunCpu(string root)
    {
        Environment.SetEnvironmentVariable(RootVariable, root);
        var log = new StringWriter();
        GpuCheckSummary s = Runner.Run("cpu", quick: false, log);
        output.WriteLine(log.ToString().Split('\n')[^2]);
        return (s, log.ToString());
    }

    [Fact]
    public void TheListNamesFixturesThatExist()
    {
        List<string> listed = Listed();
        Assert.Contains("models/tiny-flan-t5", listed);
        Assert.Contains("configs", listed);
        foreach (string path in listed)
            Assert.True(Path.Exists(Path.Combine(Repo, "tests", "fixtures", path)), $"{ListFile} names tests/fixtures/{path}, which does not exist");
    }

    [Fact]
    public void TheSentFixturesCoverEveryCase()
    {
        var (s, log) = RunCpu(SentRoot(leaveOut: null));
        Assert.True(s.Failed == 0, log);
        // A case may skip only for a model folder the list leaves out (none today: the list has every one).
        Assert.All(s.SkipReasons, r => Assert.StartsWith("fixture tests/fixtures/models/", r));
        Assert.True(s.Passed >= 20, $"{s.Passed} of {s.Total} passed");
    }

    public static TheoryData<string> ListedModels => new(Listed().Where(p => p.StartsWith("models/")).Select(p => p["models/".Length..]));

    /// <summary>Each listed model left out: its cases, and only those, skip naming its folder (so every folder the
    /// list sends is read by some case, and the skip path works for each).</summary>
    [Theory]
    [MemberData(nameof(ListedModels))]
    public void AMissingModelFolderSkipsItsCasesNamingIt(string model)
    {
        var (s, log) = RunCpu(SentRoot(leaveOut: model));
        Assert.True(s.Failed == 0, log);
        string reason = $"fixture tests/fixtures/models/{model} not in this tree (gpu-check --prepare sends a subset)";
        Assert.Equal(reason, Assert.Single(s.SkipReasons));
        string[] skipped = log.Split('\n').Where(l => l.StartsWith("SKIP")).ToArray();
        Assert.NotEmpty(skipped);
        Assert.All(skipped, l => Assert.EndsWith(reason, l.TrimEnd()));
        Assert.DoesNotContain(log.Split('\n'), l => l.StartsWith("PASS") && l.Contains($"\"{model}\""));
        Assert.True(s.Passed >= 5 && s.Passed + s.Skipped == s.Total, $"{s.Passed} passed, {s.Skipped} skipped of {s.Total}");
    }

    // --- the script: slim, refuse, restore, on a throwaway repository with the real script and list ------------------

    private (int Code, string Text) Sh(string dir, string command)
    {
        var psi = new ProcessStartInfo("bash", ["-c", command]) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true };
        using Process p = Process.Start(psi)!;
        Task<string> err = p.StandardError.ReadToEndAsync();
        string text = p.StandardOutput.ReadToEnd() + err.Result;
        p.WaitForExit();
        output.WriteLine($"$ {command} -> {p.ExitCode}\n{text}");
        return (p.ExitCode, text);
    }

    private static bool Has(string tool) => Environment.GetEnvironmentVariable("PATH")!.Split(Path.PathSeparator)
        .Any(d => File.Exists(Path.Combine(d, tool)));

    [SkippableFact]
    public void SlimThenRestoreLeavesTheTreeAsItWas()
    {
        Skip.IfNot(Has("git") && Has("xz") && Has("tar") && Has("bash"), "needs bash, git, tar and xz on PATH");
        string repo = Path.Combine(_temp, "repo");
        foreach (string f in new[] { "bench/gpu-check.sh", "bench/ManagedT5.Bench.GpuCheck/device-fixtures.txt" })
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(repo, f))!);
            File.Copy(Path.Combine(Repo, f), Path.Combine(repo, f));
        }
        // Every listed path, as a folder of two small files, and what is not sent (a tokenizer folder, a loose file).
        string fixtures = Path.Combine(repo, "tests", "fixtures");
        foreach (string path in Listed().Append("tokenizer").Append("models/tiny-byt5"))
        {
            Directory.CreateDirectory(Path.Combine(fixtures, path));
            File.WriteAllText(Path.Combine(fixtures, path, "a.json"), path);
            File.WriteAllBytes(Path.Combine(fixtures, path, "b.bin"), Enumerable.Range(0, 5000).Select(i => (byte)(i * 7 + path.Length)).ToArray());
        }
        File.WriteAllText(Path.Combine(fixtures, "README.md"), "fixtures\n");
        File.WriteAllText(Path.Combine(fixtures, "loose.json"), "{}\n");
        File.WriteAllText(Path.Combine(repo, ".gitignore"), "/.device/\n");
        const string git = "git -c user.name=t -c user.email=t@example.com";
        Assert.Equal(0, Sh(repo, $"git init -q && git add -A && {git} commit -qm fixtures").Code);

        var (code, text) = Sh(repo, "bash bench/gpu-check.sh --slim");
        Assert.True(code == 0, text);
        Assert.Contains("moved tests/fixtures/models", text);
        Assert.Contains("moved tests/fixtures/loose.json", text);
        Assert.Contains("bash bench/gpu-check.sh --restore", text);
        Assert.Matches(@"sizes: working tree [0-9.]+ MiB .*carried [0-9.]+ MiB \(\.device/fixtures\.tar\.xz\)", text);
        Assert.Equal(["README.md"], Directory.EnumerateFileSystemEntries(fixtures).Select(Path.GetFileName));
        Assert.True(File.Exists(Path.Combine(repo, ".device", "fixtures.tar.xz")));

        // Twice: refused, and nothing changes.
        (code, text) = Sh(repo, "bash bench/gpu-check.sh --slim");
        Assert.Equal(1, code);
        Assert.Contains("already slimmed", text);

        // The device side: the archive unpacks to exactly the listed paths; --restore accepts them (identical).
        Assert.Equal(0, Sh(repo, "tar -xJf .device/fixtures.tar.xz -C tests/fixtures").Code);
        foreach (string path in Listed()) Assert.True(Path.Exists(Path.Combine(fixtures, path)), path);
        Assert.False(Directory.Exists(Path.Combine(fixtures, "tokenizer")));
        // A changed file there is refused, naming it, and kept.
        string changed = Path.Combine(fixtures, "configs", "a.json");
        File.WriteAllText(changed, "edited on the device");
        (code, text) = Sh(repo, "bash bench/gpu-check.sh --restore");
        Assert.Equal(1, code);
        Assert.Contains("tests/fixtures/configs differs", text);
        File.Delete(changed);

        (code, text) = Sh(repo, "bash bench/gpu-check.sh --restore");
        Assert.True(code == 0, text);
        Assert.Contains("clean", text);
        Assert.Equal("", Sh(repo, "git status --porcelain --untracked-files=all --ignored=no && git diff --stat").Text);

        // Changes under tests/fixtures: refused before anything moves.
        File.WriteAllText(Path.Combine(fixtures, "loose.json"), "changed\n");
        (code, text) = Sh(repo, "bash bench/gpu-check.sh --slim");
        Assert.Equal(1, code);
        Assert.Contains("refusing to slim", text);
        Assert.Contains("loose.json", text);
        Assert.True(Directory.Exists(Path.Combine(fixtures, "models")));
    }
}
