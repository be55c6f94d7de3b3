// What a model folder must hold to be usable (each file checked, not just present), and the HF cache's layout
// (models--{org}--{name}/{blobs,refs,snapshots}/, .locks/ at the cache root) as huggingface_hub reads and writes it.
using System.Buffers.Binary;
using System.Text.Json;
using System.Text.RegularExpressions;
using ManagedT5.IO;

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

    /// <summary>The safetensors format's own cap on its JSON header.</summary>
    private const long MaxSafetensorsHeader = 100L << 20;

    /// <summary>What to fetch by hand, for error messages.</summary>
    public const string FileListForHumans =
        "config.json, generation_config.json, spiece.model (or tokenizer.json) and model.safetensors " +
        "(or model.safetensors.index.json and every shard it lists)";

    /// <summary>Complete = config.json + (model.safetensors, or the index and all its shards) + (spiece.model or
    /// tokenizer.json), each of them usable (<see cref="Problem"/>), and generation_config.json usable when present. A folder
    /// with an empty or unparsable file is not complete, so a broken download is fetched again instead of used.</summary>
    public static bool IsComplete(string directory)
    {
        if (!Directory.Exists(directory) || !Usable(directory, Config)) return false;
        if (Exists(directory, GenerationConfig) && !Usable(directory, GenerationConfig)) return false;
        if (!Usable(directory, SentencePiece) && !Usable(directory, TokenizerJson)) return false;
        if (Usable(directory, Weights)) return true;
        if (!Usable(directory, WeightsIndex)) return false;
        IReadOnlyList<string>? shards = ReadShardNames(Path.Combine(directory, WeightsIndex));
        return shards is { Count: > 0 } && shards.All(s => Usable(directory, s));
    }

    private static bool Exists(string directory, string name) => File.Exists(Path.Combine(directory, name));

    private static bool Usable(string directory, string name) => Problem(Path.Combine(directory, name), name) is null;

    /// <summary>Null when <paramref name="path"/>, holding the checkpoint file <paramref name="name"/>, is usable; else a
    /// sentence naming the file: missing, empty or not a regular file (InputFile's rules), JSON that does not parse or whose
    /// root is not an object, an index without a weight_map of plain shard names, a safetensors file whose header does not read.</summary>
    public static string? Problem(string path, string name)
    {
        long cap = name.EndsWith(".json", StringComparison.Ordinal)
            ? name == TokenizerJson ? InputFile.MaxTokenizerBytes : InputFile.MaxJsonBytes
            : name == SentencePiece ? InputFile.MaxTokenizerBytes : long.MaxValue;
        try
        {
            if (InputFile.Problem(path, cap) is string problem) return problem;
            string? content = ContentProblem(path, name);
            return content is null ? null : $"'{path}' {content}";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"'{path}' cannot be read: {e.Message}";
        }
    }

    /// <summary>What is wrong with the content of a regular, non-empty file named <paramref name="name"/>, as a phrase that
    /// follows the file's name ("is not JSON: ..."); null when it is fine. Files of other kinds (spiece.model) pass.</summary>
    public static string? ContentProblem(string path, string name)
    {
        if (name.EndsWith(".json", StringComparison.Ordinal))
        {
            byte[] bytes = InputFile.ReadAllBytes(path, name == TokenizerJson ? InputFile.MaxTokenizerBytes : InputFile.MaxJsonBytes,
                out string? problem);
            if (problem is not null) return "cannot be used: " + problem;
            string? json = JsonObjectProblem(bytes);
            if (json is not null) return json;
            if (name == WeightsIndex && ReadShardNames(bytes) is not { Count: > 0 })
                return "is not a safetensors index: it needs a weight_map naming shard files in the same folder (plain names of " +
                       "letters, digits, '.', '_' and '-')";
            return null;
        }
        if (name.EndsWith(".safetensors", StringComparison.Ordinal)) return SafetensorsHeaderProblem(path);
        return null;
    }

    private static string? JsonObjectProblem(byte[] bytes)
    {
        try
        {
            using JsonDocument doc = JsonDocument.Parse(bytes);
            return doc.RootElement.ValueKind == JsonValueKind.Object
                ? null
                : $"is JSON but its root is {doc.RootElement.ValueKind.ToString().ToLowerInvariant()}, not an object";
        }
        catch (JsonException e)
        {
            return $"is not JSON ({e.Message})";
        }
    }

    /// <summary>A safetensors file starts with a little-endian u64 n, then n bytes of JSON object header inside the file.</summary>
    private static string? SafetensorsHeaderProblem(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
        long length = stream.Length;
        if (length < 8) return $"is {length} bytes, too short for a safetensors header";
        Span<byte> prefix = stackalloc byte[8];
        stream.ReadExactly(prefix);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (n == 0 || n > (ulong)MaxSafetensorsHeader || (long)n > length - 8)
            return $"has a safetensors header length of {n} bytes, which does not fit in its {length} bytes";
        var header = new byte[n];
        stream.ReadExactly(header);
        string? json = JsonObjectProblem(header);
        return json is null ? null : "has a safetensors header that " + json;
    }

    /// <summary>The distinct shard files an index file's weight_map names, in order; null when it is not an index or names
    /// a file that breaks <see cref="InputFile.IsPlainFileName"/> (a path, "..", a control character).</summary>
    public static IReadOnlyList<string>? ReadShardNames(string indexPath)
    {
        byte[] bytes = InputFile.ReadAllBytes(indexPath, InputFile.MaxJsonBytes, out string? problem);
        return problem is null ? ReadShardNames(bytes) : null;
    }

    /// <summary>The same, from the index's bytes.</summary>
    public static IReadOnlyList<string>? ReadShardNames(byte[] indexJson)
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
                if (!InputFile.IsPlainFileName(name)) return null;
                if (!shards.Contains(name)) shards.Add(name);
            }
            return shards;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            return null;
        }
    }
}

/// <summary>HuggingFace's cache (shared with Python's huggingface_hub): <c>models--{org}--{name}/refs/{revision}</c> holds
/// the commit, <c>snapshots/{commit}/{file}</c> links to <c>blobs/{etag}</c>, <c>.locks/models--{org}--{name}/{etag}.lock</c>
/// guards a blob's download. See https://huggingface.co/docs/hub/local-cache.</summary>
internal static partial class HubCache
{
    [GeneratedRegex("^[0-9a-f]{40}$")]
    public static partial Regex CommitHash();

    /// <summary>The repo's folder name: models--{org}--{name}.</summary>
    public static string RepoFolderName(string id) => "models--" + id.Replace("/", "--");

    /// <summary>The snapshot folder for id at revision in one cache folder, if it is there and complete.</summary>
    public static string? FindSnapshot(string cacheDirectory, string id, string revision)
    {
        string repo = Path.Combine(cacheDirectory, RepoFolderName(id));
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
