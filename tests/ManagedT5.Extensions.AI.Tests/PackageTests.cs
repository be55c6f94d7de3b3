// The packages are honest: each packable project declares a real description and has a README showing its use, the
// declared Apache-2.0 license has its LICENSE text, no placeholder URL; the Slow test packs them and opens each .nupkg.
using System.IO.Compression;
using System.Diagnostics;
using System.Xml.Linq;

namespace ManagedT5.Extensions.AI.Tests;

public sealed class PackageTests
{
    private static string RepoRoot => Path.GetFullPath(Path.Combine(TinyModel.Folder, "..", "..", "..", ".."));

    /// <summary>The packable projects: every project under engine/, kernels/ and tokenizer/ (tests and benchmarks are not).</summary>
    private static string[] PackableProjects() =>
        new[] { "engine", "kernels", "tokenizer" }
            .SelectMany(d => Directory.GetFiles(Path.Combine(RepoRoot, d), "*.csproj", SearchOption.AllDirectories))
            .Where(p => !p.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}"))
            .Order(StringComparer.Ordinal).ToArray();

    [Fact]
    public void License_IsTheApacheTextTheProjectDeclares()
    {
        XDocument props = XDocument.Load(Path.Combine(RepoRoot, "Directory.Build.props"));
        Assert.Equal("Apache-2.0", props.Descendants("PackageLicenseExpression").Single().Value);
        string license = File.ReadAllText(Path.Combine(RepoRoot, "LICENSE"));
        Assert.StartsWith("Apache License\nVersion 2.0, January 2004", string.Join("\n", license.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0)));
        Assert.Contains("TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION", license);
        Assert.Contains("END OF TERMS AND CONDITIONS", license);
        Assert.True(File.Exists(Path.Combine(RepoRoot, "CHANGELOG.md")), "CHANGELOG.md is missing");
    }

    [Fact]
    public void EveryPackableProject_HasADescriptionAndAReadmeThatShowsItsUse()
    {
        string[] projects = PackableProjects();
        Assert.Equal(11, projects.Length);   // a new package must come with its description and PACKAGE.md
        foreach (string project in projects)
        {
            string name = Path.GetFileNameWithoutExtension(project);
            string? description = XDocument.Load(project).Descendants("Description").SingleOrDefault()?.Value;
            Assert.False(string.IsNullOrWhiteSpace(description), $"{name}: no <Description> (NuGet would say \"Package Description\")");
            string readme = Path.Combine(Path.GetDirectoryName(project)!, "PACKAGE.md");
            Assert.True(File.Exists(readme), $"{name}: no PACKAGE.md (packed as the package's README.md)");
            string text = File.ReadAllText(readme);
            Assert.StartsWith($"# {name}", text);
            Assert.True(text.Contains("```csharp\nusing ManagedT5", StringComparison.Ordinal) || text.Contains("```bash\ndotnet tool install", StringComparison.Ordinal),
                $"{name}: PACKAGE.md shows no use");
        }
    }

    [Fact]
    public void NoPlaceholderUrls()
    {
        foreach (string file in PackableProjects().Append(Path.Combine(RepoRoot, "Directory.Build.props")))
            Assert.DoesNotContain("example.invalid", File.ReadAllText(file));
    }

    /// <summary>Packs every packable project (minutes) and opens each package.</summary>
    [Fact, Trait("Category", "Slow")]
    public void Packages_CarryTheirReadmeLicenseAndDescription()
    {
        string output = Directory.CreateTempSubdirectory("managedt5-pack-").FullName;
        try
        {
            foreach (string project in PackableProjects())
            {
                var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet",
                    ["pack", project, "-c", "Release", "-o", output, "-nologo", "-v", "q"]) { RedirectStandardOutput = true, RedirectStandardError = true };
                using Process pack = Process.Start(start)!;
                Task<string> stdout = pack.StandardOutput.ReadToEndAsync(), stderr = pack.StandardError.ReadToEndAsync();
                Assert.True(pack.WaitForExit(TimeSpan.FromMinutes(10)), $"dotnet pack {project} did not finish");
                Assert.True(pack.ExitCode == 0, $"dotnet pack {project} failed:\n{stdout.Result}\n{stderr.Result}");
            }
            string license = File.ReadAllText(Path.Combine(RepoRoot, "LICENSE"));
            string[] packages = Directory.GetFiles(output, "*.nupkg");
            Assert.Equal(PackableProjects().Length, packages.Length);
            foreach (string package in packages)
            {
                using ZipArchive zip = ZipFile.OpenRead(package);
                string Read(string entry)
                {
                    using var reader = new StreamReader(zip.GetEntry(entry)?.Open() ?? throw new Xunit.Sdk.XunitException($"{package} lacks {entry}"));
                    return reader.ReadToEnd();
                }
                XElement nuspec = XDocument.Parse(Read(zip.Entries.Single(e => e.FullName.EndsWith(".nuspec")).FullName)).Root!;
                XNamespace ns = nuspec.Name.Namespace;
                XElement metadata = nuspec.Element(ns + "metadata")!;
                string id = metadata.Element(ns + "id")!.Value;
                Assert.Equal("Apache-2.0", metadata.Element(ns + "license")?.Value);
                Assert.Equal("README.md", metadata.Element(ns + "readme")?.Value);
                string description = metadata.Element(ns + "description")!.Value;
                Assert.NotEqual("Package Description", description);
                Assert.DoesNotContain("example.invalid", metadata.ToString());
                Assert.StartsWith($"# {id}", Read("README.md"));
                Assert.Equal(license, Read("LICENSE"));
            }
        }
        finally
        {
            Directory.Delete(output, recursive: true);
        }
    }
}
