// A HuggingFace hub cache laid out as huggingface_hub writes it: models--{org}--{name}/blobs/{sha256} holds the bytes,
// snapshots/{commit}/ holds relative links into blobs/, refs/main holds the commit. Such a snapshot loads offline,
// directly and through ModelLocator, and generates exactly what the fixture folder and HF (reference.json) generate.
using System.Security.Cryptography;
using System.Text;
using ManagedT5.Generation;
using ManagedT5.Hub;
using ManagedT5.Kernels.Cpu;
using ManagedT5.Model;

namespace ManagedT5.Tests;

public sealed class HfCacheLayoutTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("mt5-hfcache-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    /// <summary>Puts fixture model <paramref name="fixture"/> into the cache folder <paramref name="cache"/> as hub id
    /// <paramref name="id"/> (each file a blob named by its sha256, linked from the snapshot by a relative path) and
    /// returns the snapshot folder.</summary>
    internal static string AddToCache(string cache, string id, string fixture)
    {
        string repo = Path.Combine(cache, "models--" + id.Replace("/", "--"));
        string blobs = Directory.CreateDirectory(Path.Combine(repo, "blobs")).FullName;
        string commit = Convert.ToHexStringLower(SHA1.HashData(Encoding.UTF8.GetBytes(id + "@" + fixture)));
        string snapshot = Directory.CreateDirectory(Path.Combine(repo, "snapshots", commit)).FullName;
        foreach (string file in Directory.GetFiles(Fixtures.Model(fixture)))
        {
            string name = Path.GetFileName(file);
            if (name.StartsWith("reference", StringComparison.Ordinal)) continue; // the test's expectations, not the model
            byte[] bytes = File.ReadAllBytes(file);
            string blob = Convert.ToHexStringLower(SHA256.HashData(bytes));
            File.WriteAllBytes(Path.Combine(blobs, blob), bytes);
            File.CreateSymbolicLink(Path.Combine(snapshot, name), Path.Combine("..", "..", "blobs", blob));
        }
        Directory.CreateDirectory(Path.Combine(repo, "refs"));
        File.WriteAllText(Path.Combine(repo, "refs", "main"), commit);
        return snapshot;
    }

    private static GenerationOutput Greedy(T5Model model, ReferenceJson reference) =>
        Generator.Generate(model, reference.InputIds,
            GenerationParityTests.OptionsFrom(reference.Cases.Single(c => c.Name == "greedy").Settings));

    /// <summary>The snapshot's files really are links whose own size is not the file's (the bug: the reader took
    /// the link's length), and the model loaded from it generates the fixture folder's and HF's tokens.</summary>
    [HostileFiles.FactNeeding(HostileFiles.Need.Symlinks)]
    public void SingleFileSnapshotLoadsAndGeneratesLikeTheFixture() => SnapshotGeneratesLikeTheFixture("tiny-flan-t5");

    /// <summary>The same for a sharded checkpoint: the index and both shards are links.</summary>
    [HostileFiles.FactNeeding(HostileFiles.Need.Symlinks)]
    public void ShardedSnapshotLoadsAndGeneratesLikeTheFixture() => SnapshotGeneratesLikeTheFixture("tiny-flan-t5-bf16-sharded");

    private void SnapshotGeneratesLikeTheFixture(string fixture)
    {
        string snapshot = AddToCache(_root, "org/name", fixture);
        string weights = Path.Combine(snapshot, File.Exists(Path.Combine(snapshot, "model.safetensors"))
            ? "model.safetensors" : "model.safetensors.index.json");
        Assert.NotNull(new FileInfo(weights).LinkTarget);

        ReferenceJson reference = ReferenceJson.Load(fixture);
        using T5Model fromCache = T5Model.Load(snapshot, new CpuBackend(), ownsBackend: true);
        using T5Model fromFixture = T5Model.Load(Fixtures.Model(fixture), new CpuBackend(), ownsBackend: true);
        GenerationOutput cached = Greedy(fromCache, reference), direct = Greedy(fromFixture, reference);

        GenerationParityTests.AssertSequences(reference.Cases.Single(c => c.Name == "greedy").Sequences, cached.Sequences,
            fromCache.Config.PadTokenId);
        GenerationParityTests.AssertSequences(direct.Sequences, cached.Sequences, fromCache.Config.PadTokenId);
    }

    /// <summary>T5TextGenerator.Load on a snapshot folder (tokenizer, config, generation_config and weights all
    /// through links) gives the same texts and tokens as on the fixture folder.</summary>
    [HostileFiles.FactNeeding(HostileFiles.Need.Symlinks)]
    public void TextGeneratorLoadsASnapshot()
    {
        const string fixture = "tiny-flan-t5";
        string snapshot = AddToCache(_root, "org/name", fixture);
        ReferenceJson reference = ReferenceJson.Load(fixture);
        using T5TextGenerator fromCache = T5TextGenerator.Load(snapshot);
        using T5TextGenerator fromFixture = T5TextGenerator.Load(Fixtures.Model(fixture));
        var options = new GenerationOptions { MaxNewTokens = 20 };

        Assert.Equal(fromFixture.Generate(reference.Texts, options).Select(r => r.Text),
            fromCache.Generate(reference.Texts, options).Select(r => r.Text));
        GenerationParityTests.AssertSequences(reference.Cases.Single(c => c.Name == "greedy").Sequences,
            fromCache.GenerateIds(reference.InputIds, options).Sequences, fromCache.Model.Config.PadTokenId);
    }

    /// <summary>A hub id resolves offline to the cached snapshot (refs/main -> snapshots/{commit}) when the weights
    /// folder is empty, and what it resolves to loads and generates HF's tokens, single-file and sharded.</summary>
    [HostileFiles.FactNeeding(HostileFiles.Need.Symlinks)]
    public void ModelLocatorResolvesTheCachedSnapshotOfflineAndItLoads()
    {
        string cache = Directory.CreateDirectory(Path.Combine(_root, "hub")).FullName;
        string emptyWeights = Directory.CreateDirectory(Path.Combine(_root, "weights")).FullName;
        var options = new HubOptions { Offline = true, CacheDirectories = [cache], WeightsDirectory = emptyWeights };
        foreach (var (id, fixture) in new[] { ("org/name", "tiny-flan-t5"), ("org/sharded", "tiny-flan-t5-bf16-sharded") })
        {
            string snapshot = AddToCache(cache, id, fixture);
            string resolved = ModelLocator.Resolve(id, options);
            Assert.Equal(snapshot, resolved);

            ReferenceJson reference = ReferenceJson.Load(fixture);
            using T5TextGenerator generator = T5TextGenerator.Load(resolved);
            GenerationParityTests.AssertSequences(reference.Cases.Single(c => c.Name == "greedy").Sequences,
                generator.GenerateIds(reference.InputIds, new GenerationOptions { MaxNewTokens = 20 }).Sequences,
                generator.Model.Config.PadTokenId);
        }
        Assert.Empty(Directory.EnumerateFileSystemEntries(emptyWeights));
    }
}
