// A model folder's weights: one model.safetensors, or shards listed by model.safetensors.index.json.
using System.Text.Json;
using ManagedT5.Kernels;

namespace ManagedT5.Loading;

/// <summary>All safetensors files of a checkpoint, looked up by tensor name.</summary>
public sealed class Checkpoint : IDisposable
{
    /// <summary>File name of a single-file checkpoint.</summary>
    public const string SingleFileName = "model.safetensors";
    /// <summary>File name of a sharded checkpoint's index.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly List<SafeTensorsFile> _files;
    private readonly Dictionary<string, SafeTensorsFile> _byName = new(StringComparer.Ordinal);

    /// <summary>The files, in load order.</summary>
    public IReadOnlyList<SafeTensorsFile> Files => _files;

    /// <summary>Every tensor name.</summary>
    public IEnumerable<string> Names => _byName.Keys;

    private Checkpoint(List<SafeTensorsFile> files)
    {
        _files = files;
        foreach (SafeTensorsFile f in files)
            foreach (SafeTensorInfo t in f.Tensors)
                if (!_byName.TryAdd(t.Name, f))
                    throw new ModelLoadException(
                        $"Tensor '{t.Name}' is stored twice: in '{_byName[t.Name].Path}' and in '{f.Path}'. Remove the stale shard.", f.Path);
    }

    /// <summary>Opens the weights of a model folder (single file or sharded).</summary>
    public static Checkpoint Open(string directory)
    {
        string single = Path.Combine(directory, SingleFileName);
        string index = Path.Combine(directory, IndexFileName);
        if (File.Exists(index)) return OpenSharded(index);
        if (File.Exists(single)) return OpenFiles([single]);
        throw new ModelLoadException(
            $"No weights in '{directory}': expected '{SingleFileName}' or '{IndexFileName}' with its shards. " +
            "Download the model's safetensors files into that folder (PyTorch .bin checkpoints are not read).", directory);
    }

    /// <summary>Opens the given files as one checkpoint.</summary>
    public static Checkpoint OpenFiles(IEnumerable<string> paths)
    {
        var files = new List<SafeTensorsFile>();
        try
        {
            foreach (string p in paths) files.Add(SafeTensorsFile.Open(p));
            return new Checkpoint(files);
        }
        catch
        {
            foreach (SafeTensorsFile f in files) f.Dispose();
            throw;
        }
    }

    private static Checkpoint OpenSharded(string indexPath)
    {
        string directory = Path.GetDirectoryName(Path.GetFullPath(indexPath))!;
        Dictionary<string, string> weightMap;
        try
        {
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(indexPath));
            if (!doc.RootElement.TryGetProperty("weight_map", out JsonElement map) || map.ValueKind != JsonValueKind.Object)
                throw new ModelLoadException($"'{indexPath}' has no 'weight_map' object.", indexPath);
            weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (JsonProperty p in map.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw new ModelLoadException($"'{indexPath}': weight_map entry '{p.Name}' is not a file name.", indexPath);
                weightMap[p.Name] = p.Value.GetString()!;
            }
        }
        catch (JsonException e)
        {
            throw new ModelLoadException($"'{indexPath}' is not valid JSON: {e.Message}", indexPath, e);
        }

        var shardNames = weightMap.Values.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        foreach (string shard in shardNames)
        {
            if (shard.Contains('/') || shard.Contains('\\') || shard.Contains(".."))
                throw new ModelLoadException($"'{indexPath}' names shard '{shard}', which is not a plain file name.", indexPath);
            string full = Path.Combine(directory, shard);
            if (!File.Exists(full))
                throw new ModelLoadException(
                    $"Shard '{shard}' listed in '{indexPath}' is missing from '{directory}'. Download every shard the index lists.", full);
        }

        Checkpoint checkpoint = OpenFiles(shardNames.Select(s => Path.Combine(directory, s)));
        foreach (var (name, shard) in weightMap)
        {
            if (!checkpoint._byName.TryGetValue(name, out SafeTensorsFile? file))
            {
                checkpoint.Dispose();
                throw new ModelLoadException($"'{indexPath}' lists tensor '{name}' in '{shard}', but that shard does not hold it.", indexPath);
            }
            if (!string.Equals(Path.GetFileName(file.Path), shard, StringComparison.Ordinal))
            {
                checkpoint.Dispose();
                throw new ModelLoadException($"'{indexPath}' lists tensor '{name}' in '{shard}', but it is in '{file.Path}'.", indexPath);
            }
        }
        return checkpoint;
    }

    /// <summary>True when the checkpoint holds <paramref name="name"/>.</summary>
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>The header entry of <paramref name="name"/>, or null.</summary>
    public SafeTensorInfo? Find(string name) => _byName.TryGetValue(name, out SafeTensorsFile? f) ? f.Find(name) : null;

    /// <summary>A view of <paramref name="name"/>'s data.</summary>
    public HostTensor GetTensor(string name) =>
        _byName.TryGetValue(name, out SafeTensorsFile? f)
            ? f.GetTensor(name)
            : throw new ModelLoadException($"Tensor '{name}' is not in the checkpoint.");

    /// <summary>Tensor <paramref name="name"/> read into <paramref name="destination"/> (see
    /// <see cref="SafeTensorsFile.ReadTensor"/>).</summary>
    internal unsafe HostTensor ReadTensor(string name, byte* destination, long capacity) =>
        _byName.TryGetValue(name, out SafeTensorsFile? f)
            ? f.ReadTensor(name, destination, capacity)
            : throw new ModelLoadException($"Tensor '{name}' is not in the checkpoint.");

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (SafeTensorsFile f in _files) f.Dispose();
    }
}
