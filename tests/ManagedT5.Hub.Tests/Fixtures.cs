// Where the fixture models live (tests/fixtures in the repository, found by walking up) and a self-deleting temp folder.
namespace ManagedT5.Hub.Tests;

internal static class Fixtures
{
    /// <summary>tests/fixtures/models, found by walking up from the test binary.</summary>
    public static string Models { get; } = FindModels();

    public static string Model(string name) => Path.Combine(Models, name);

    /// <summary>The files a hub repo of this fixture holds (the reference.* files are the tests' own, not the model's).</summary>
    public static Dictionary<string, byte[]> RepoFiles(string name, params string[] except) =>
        Directory.GetFiles(Model(name))
            .Where(f => !Path.GetFileName(f).StartsWith("reference.", StringComparison.Ordinal) && !except.Contains(Path.GetFileName(f)))
            .ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes);

    private static string FindModels()
    {
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d != null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, "tests", "fixtures", "models");
            if (Directory.Exists(candidate)) return candidate;
        }
        throw new DirectoryNotFoundException("tests/fixtures/models not found above " + AppContext.BaseDirectory);
    }
}

/// <summary>A fresh folder under the system temp folder, deleted with everything in it on dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("managedt5-hub-").FullName;

    public string this[string relative] => System.IO.Path.Combine(Path, relative);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
