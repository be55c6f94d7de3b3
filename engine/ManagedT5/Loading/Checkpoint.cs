// A model folder's weights: one model.safetensors, or shards listed by model.safetensors.index.json.
using System.Text.Json;
using ManagedT5.IO;
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
                        $"Tensor {SafeTensorsFile.Quote(t.Name)} is stored twice: in '{_byName[t.Name].Path}' and in '{f.Path}'. Remove the stale shard.", f.Path);
    }

    /// <summary>Opens the weights of a model folder (single file or sharded). Whatever stands at the weights' names
    /// must be (or link to) a regular file: a folder, a FIFO, a device or a dangling link is an error naming it.</summary>
    public static Checkpoint Open(string directory)
    {
        string single = Path.Combine(directory, SingleFileName);
        string index = Path.Combine(directory, IndexFileName);
        if (IsThere(index)) return OpenSharded(index);
        if (IsThere(single)) return OpenFiles([single]);
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

    /// <summary>True when anything stands at <paramref name="path"/>: a file, a folder, a FIFO, or a link (even a
    /// dangling one or a loop), so that what is not a usable file is reported as such rather than as missing.</summary>
    private static bool IsThere(string path) =>
        File.Exists(path) || Directory.Exists(path) || new FileInfo(path).LinkTarget is not null;

    private static Checkpoint OpenSharded(string indexPath)
    {
        string directory = Path.GetDirectoryName(Path.GetFullPath(indexPath))!;
        Dictionary<string, string> weightMap = ReadWeightMap(indexPath);

        var shardNames = weightMap.Values.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        foreach (string shard in shardNames)
        {
            if (!InputFile.IsPlainFileName(shard))
                throw new ModelLoadException(
                    $"'{indexPath}' names shard {InputFile.Escaped(shard)}, which is not a plain file name (letters, digits, '.', " +
                    "'_' and '-', without '..'); the index is corrupt or was not written for this folder.", indexPath);
            string full = Path.Combine(directory, shard);
            if (!IsThere(full))
                throw new ModelLoadException(
                    $"Shard '{shard}' listed in '{indexPath}' is missing from '{directory}'. Download every shard the index lists.", full);
        }

        Checkpoint checkpoint = OpenFiles(shardNames.Select(s => Path.Combine(directory, s)));
        foreach (var (name, shard) in weightMap)
        {
            if (!checkpoint._byName.TryGetValue(name, out SafeTensorsFile? file))
            {
                checkpoint.Dispose();
                throw new ModelLoadException($"'{indexPath}' lists tensor {SafeTensorsFile.Quote(name)} in '{shard}', but that shard does not hold it.", indexPath);
            }
            if (!string.Equals(Path.GetFileName(file.Path), shard, StringComparison.Ordinal))
            {
                checkpoint.Dispose();
                throw new ModelLoadException($"'{indexPath}' lists tensor {SafeTensorsFile.Quote(name)} in '{shard}', but it is in '{file.Path}'.", indexPath);
            }
        }
        return checkpoint;
    }

    /// <summary>The index's weight_map (tensor name -> shard file name), read through <see cref="InputFile"/> (a
    /// regular file of at most <see cref="InputFile.MaxJsonBytes"/>); anything else is one error naming the index.</summary>
    private static Dictionary<string, string> ReadWeightMap(string indexPath)
    {
        byte[] bytes = InputFile.ReadAllBytes(indexPath, InputFile.MaxJsonBytes, out string? problem);
        if (problem is not null) throw new ModelLoadException(problem, indexPath);
        try
        {
            using JsonDocument doc = JsonDocument.Parse(bytes);
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new ModelLoadException($"'{indexPath}' is not a JSON object; a checkpoint index is {{\"weight_map\": {{tensor: shard file}}}}.", indexPath);
            if (!doc.RootElement.TryGetProperty("weight_map", out JsonElement map) || map.ValueKind != JsonValueKind.Object)
                throw new ModelLoadException($"'{indexPath}' has no 'weight_map' object.", indexPath);
            var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (JsonProperty p in map.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw new ModelLoadException($"'{indexPath}': weight_map entry {SafeTensorsFile.Quote(p.Name)} is not a file name.", indexPath);
                weightMap[p.Name] = p.Value.GetString()!;
            }
            if (weightMap.Count == 0)
                throw new ModelLoadException($"'{indexPath}' lists no tensors in its weight_map; the index is incomplete. Fetch it again.", indexPath);
            return weightMap;
        }
        catch (JsonException e)
        {
            throw new ModelLoadException($"'{indexPath}' is not valid JSON: {e.Message}", indexPath, e);
        }
        catch (InvalidOperationException e) // System.Text.Json cannot make a string of a lone surrogate escape (\ud800)
        {
            throw new ModelLoadException(
                $"'{indexPath}': weight_map holds a tensor or file name that is not valid Unicode (a lone surrogate escape such as " +
                "\\ud800); the index is corrupt. Fetch it again.", indexPath, e);
        }
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
