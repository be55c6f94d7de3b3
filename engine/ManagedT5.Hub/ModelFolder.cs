// What a model folder must hold to be usable, and the HF cache's layout (models--{org}--{name}/snapshots/{commit}/).
using System.Text.Json;
using System.Text.RegularExpressions;

namespace ManagedT5.Hub;

/// <summary>The files of a T5 checkpoint folder and the check that one is complete.</summary>
internal static class ModelFolder
{
    public const string Config = "config.json";
    public const string GenerationConfig = "generation_config.json";
    public const string SentencePiece = "spiece.model";
    public const string TokenizerJson = "tokenizer.json";
    public const string Weights = "model.safetensors";
    public const string WeightsIndex = "model.safetensors.index.json";

    /// <summary>What to fetch by hand, for error messages.</summary>
    public const string FileListForHumans =
        "config.json, generation_config.json, spiece.model (or tokenizer.json) and model.safetensors " +
        "(or model.safetensors.index.json and every shard it lists)";

    /// <summary>Complete = config.json + (model.safetensors, or the index and all its shards) + (spiece.model or tokenizer.json).</summary>
    public static bool IsComplete(string directory)
    {
        if (!Directory.Exists(directory) || !FileExists(Path.Combine(directory, Config))) return false;
        if (!FileExists(Path.Combine(directory, SentencePiece)) && !FileExists(Path.Combine(directory, TokenizerJson))) return false;
        if (FileExists(Path.Combine(directory, Weights))) return true;
        string index = Path.Combine(directory, WeightsIndex);
        if (!FileExists(index)) return false;
        IReadOnlyList<string>? shards;
        try { shards = ReadShardNames(File.ReadAllText(index)); }
        catch (IOException) { return false; }
        return shards is { Count: > 0 } && shards.All(s => FileExists(Path.Combine(directory, s)));
    }

    /// <summary>The distinct shard files an index's weight_map names, in order; null when the JSON is not an index or
    /// names a file outside the folder.</summary>
    public static IReadOnlyList<string>? ReadShardNames(string indexJson)
    {
        try
        {
            using JsonDocument doc = JsonDocument.Parse(indexJson);
            if (doc.RootElement.ValueKind != JsonValueKind.Object ||
                !doc.RootElement.TryGetProperty("weight_map", out JsonElement map) || map.ValueKind != JsonValueKind.Object)
                return null;
            var shards = new List<string>();
            foreach (JsonProperty entry in map.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.String) return null;
                string name = entry.Value.GetString()!;
                if (!IsPlainFileName(name)) return null;
                if (!shards.Contains(name)) shards.Add(name);
            }
            return shards;
        }
        catch (JsonException) { return null; }
    }

    /// <summary>A name that stays inside its folder: no separators, not "." or "..".</summary>
    public static bool IsPlainFileName(string name) =>
        name.Length is > 0 and <= 255 && name is not "." and not ".." && name.IndexOfAny(['/', '\\', '\0', ':']) < 0;

    /// <summary>File.Exists that follows symbolic links (HF cache snapshots link into blobs/): a dangling link is missing.</summary>
    public static bool FileExists(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists) return false;
        if (info.LinkTarget is null) return true;
        try { return info.ResolveLinkTarget(returnFinalTarget: true) is { Exists: true }; }
        catch (IOException) { return false; }
    }
}

/// <summary>Looks a hub id up in HuggingFace's cache: <c>models--{org}--{name}/refs/{revision}</c> holds the commit,
/// <c>snapshots/{commit}/</c> the files (usually links into <c>blobs/</c>).</summary>
internal static partial class HubCache
{
    [GeneratedRegex("^[0-9a-f]{40}$")]
    private static partial Regex CommitHash();

    /// <summary>The snapshot folder for id at revision in one cache folder, if it is there and complete.</summary>
    public static string? FindSnapshot(string cacheDirectory, string id, string revision)
    {
        string repo = Path.Combine(cacheDirectory, "models--" + id.Replace("/", "--"));
        if (!Directory.Exists(repo)) return null;
        string? commit = CommitHash().IsMatch(revision) ? revision : ReadRef(repo, revision);
        if (commit is null || !CommitHash().IsMatch(commit)) return null;
        string snapshot = Path.Combine(repo, "snapshots", commit);
        return ModelFolder.IsComplete(snapshot) ? Path.GetFullPath(snapshot) : null;
    }

    private static string? ReadRef(string repo, string revision)
    {
        string path = Path.Combine(repo, "refs", revision);
        try { return File.Exists(path) ? File.ReadAllText(path).Trim() : null; }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }
}
