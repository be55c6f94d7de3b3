// A sentence-transformers model folder read the way SentenceTransformer(path) reads it: modules.json lists the modules
// in order (Transformer, then Pooling, Dense, Normalize), each in its own folder; the Transformer's folder holds
// sentence_bert_config.json (max_seq_length, do_lower_case). A folder without modules.json is a plain T5 model:
// the encoder followed by mean pooling.
using System.Text.Json;
using ManagedT5.IO;

namespace ManagedT5.Embeddings;

/// <summary>Module kinds of a sentence-transformers pipeline that the embedder runs.</summary>
public enum SentenceModuleKind
{
    /// <summary>sentence_transformers.models.Transformer: the T5 encoder (last hidden state per token).</summary>
    Transformer,
    /// <summary>sentence_transformers.models.Pooling: token vectors to one vector (1_Pooling/config.json).</summary>
    Pooling,
    /// <summary>sentence_transformers.models.Dense: linear layer and activation (2_Dense/config.json + weights).</summary>
    Dense,
    /// <summary>sentence_transformers.models.Normalize: L2 normalization (no files).</summary>
    Normalize,
}

/// <summary>One entry of modules.json.</summary>
/// <param name="Index">Its position in modules.json (0-based).</param>
/// <param name="Kind">What it computes.</param>
/// <param name="Folder">The module's folder (the model folder itself for path "").</param>
/// <param name="Path">"path" as written in modules.json.</param>
public sealed record SentenceModule(int Index, SentenceModuleKind Kind, string Folder, string Path);

/// <summary>The parsed layout of a sentence-transformers (or plain T5) folder.</summary>
public sealed class SentenceTransformerFolder
{
    /// <summary>File name of the module list.</summary>
    public const string ModulesFile = "modules.json";
    /// <summary>File name of the Transformer module's settings.</summary>
    public const string SentenceBertConfigFile = "sentence_bert_config.json";
    /// <summary>max_seq_length of a plain T5 folder (no sentence_bert_config.json): T5's tokenizer model_max_length.</summary>
    public const int DefaultMaxSeqLength = 512;

    private static readonly Dictionary<string, SentenceModuleKind> s_types = new(StringComparer.Ordinal)
    {
        ["sentence_transformers.models.Transformer"] = SentenceModuleKind.Transformer,
        ["sentence_transformers.models.Pooling"] = SentenceModuleKind.Pooling,
        ["sentence_transformers.models.Dense"] = SentenceModuleKind.Dense,
        ["sentence_transformers.models.Normalize"] = SentenceModuleKind.Normalize,
    };

    /// <summary>The folder given.</summary>
    public string Root { get; }
    /// <summary>Whether modules.json was there (false: a plain T5 folder, encoder + mean pooling).</summary>
    public bool IsSentenceTransformers { get; }
    /// <summary>The modules after the Transformer, in order.</summary>
    public IReadOnlyList<SentenceModule> Modules { get; }
    /// <summary>The folder holding config.json, the weights and the tokenizer.</summary>
    public string TransformerFolder { get; }
    /// <summary>sentence_bert_config.json max_seq_length (null: none given).</summary>
    public int? MaxSeqLength { get; }
    /// <summary>sentence_bert_config.json do_lower_case.</summary>
    public bool DoLowerCase { get; }

    private SentenceTransformerFolder(string root, bool isSentenceTransformers, IReadOnlyList<SentenceModule> modules,
        string transformerFolder, int? maxSeqLength, bool doLowerCase)
    {
        Root = root;
        IsSentenceTransformers = isSentenceTransformers;
        Modules = modules;
        TransformerFolder = transformerFolder;
        MaxSeqLength = maxSeqLength;
        DoLowerCase = doLowerCase;
    }

    /// <summary>Reads modules.json (if any) and the Transformer's sentence_bert_config.json.</summary>
    /// <exception cref="ModelLoadException">A bad modules.json: not a list of modules, an unknown type, a path that
    /// leaves the folder or names a missing folder, no Transformer first; or a bad sentence_bert_config.json.</exception>
    public static SentenceTransformerFolder Open(string root)
    {
        string modulesPath = System.IO.Path.Combine(root, ModulesFile);
        if (!File.Exists(modulesPath) && new FileInfo(modulesPath).LinkTarget is null)
        {
            var (plainMax, plainLower) = ReadBertConfig(root);
            return new SentenceTransformerFolder(root, false, [new SentenceModule(1, SentenceModuleKind.Pooling, root, "")], root,
                plainMax, plainLower);
        }

        using JsonDocument doc = ReadJson(modulesPath);
        if (doc.RootElement.ValueKind != JsonValueKind.Array || doc.RootElement.GetArrayLength() == 0)
            throw new ModelLoadException($"'{modulesPath}' must be a JSON list of modules ({{\"idx\", \"name\", \"path\", \"type\"}}), " +
                                         "as sentence-transformers writes it; fetch the model's modules.json again.", modulesPath);
        var modules = new List<SentenceModule>();
        string? transformer = null;
        int i = 0;
        foreach (JsonElement e in doc.RootElement.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Object)
                throw new ModelLoadException($"'{modulesPath}': entry {i} is not an object with \"path\" and \"type\".", modulesPath);
            string type = StringField(e, "type", modulesPath, i);
            string path = e.TryGetProperty("path", out JsonElement p) && p.ValueKind == JsonValueKind.String ? p.GetString()! : "";
            if (!s_types.TryGetValue(type, out SentenceModuleKind kind))
                throw new ModelLoadException(
                    $"'{modulesPath}': entry {i} has \"type\" {InputFile.Escaped(type)}, which ManagedT5 does not run; the supported " +
                    $"module types are {string.Join(", ", s_types.Keys)}.", modulesPath);
            string folder = ModuleFolder(root, path, modulesPath, i, kind);
            if (kind == SentenceModuleKind.Transformer)
            {
                if (i != 0)
                    throw new ModelLoadException($"'{modulesPath}': entry {i} is a Transformer; the Transformer must be the first module " +
                                                 "(and the only one).", modulesPath);
                transformer = folder;
            }
            else
            {
                if (transformer is null)
                    throw new ModelLoadException($"'{modulesPath}': the first module is {InputFile.Escaped(type)}; a sentence-transformers " +
                                                 "T5 model starts with sentence_transformers.models.Transformer.", modulesPath);
                modules.Add(new SentenceModule(i, kind, folder, path));
            }
            i++;
        }
        if (!modules.Any(m => m.Kind == SentenceModuleKind.Pooling))
            throw new ModelLoadException($"'{modulesPath}' has no sentence_transformers.models.Pooling module; T5 gives one vector per " +
                                         "token and needs a Pooling module to make one per text.", modulesPath);
        if (modules.First().Kind != SentenceModuleKind.Pooling)
            throw new ModelLoadException($"'{modulesPath}': entry {modules[0].Index} ({modules[0].Kind}) comes before the Pooling module; " +
                                         "the module after the Transformer must be the Pooling.", modulesPath);
        var (max, lower) = ReadBertConfig(transformer!);
        return new SentenceTransformerFolder(root, true, modules, transformer!, max, lower);
    }

    /// <summary>The folder of a module's "path": "" is the model folder; otherwise plain names below it (no "..", no
    /// absolute paths). Pooling and Dense keep files there and must exist; Normalize keeps none (the hub cannot even
    /// hold its empty folder), so its folder may be absent.</summary>
    private static string ModuleFolder(string root, string path, string modulesPath, int index, SentenceModuleKind kind)
    {
        if (path.Length == 0) return root;
        string[] parts = path.Replace('\\', '/').Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0 || path.StartsWith('/') || !parts.All(InputFile.IsPlainFileName))
            throw new ModelLoadException($"'{modulesPath}': entry {index} has \"path\" {InputFile.Escaped(path)}, which is not a folder " +
                                         "inside the model folder (plain names only, no '..').", modulesPath);
        string folder = System.IO.Path.Combine([root, .. parts]);
        if (!Directory.Exists(folder) && kind != SentenceModuleKind.Normalize)
            throw new ModelLoadException($"'{modulesPath}': entry {index} ({kind}) has \"path\" {InputFile.Escaped(path)}, but the folder " +
                                         $"'{folder}' does not exist. Download the whole model repository (every module folder) into '{root}'.",
                                         folder);
        return folder;
    }

    private static string StringField(JsonElement e, string name, string file, int index) =>
        e.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.String ? v.GetString()!
            : throw new ModelLoadException($"'{file}': entry {index} has no string \"{name}\".", file);

    private static (int? Max, bool Lower) ReadBertConfig(string folder)
    {
        string path = System.IO.Path.Combine(folder, SentenceBertConfigFile);
        if (!File.Exists(path) && new FileInfo(path).LinkTarget is null) return (null, false);
        using JsonDocument doc = ReadJson(path);
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
            throw new ModelLoadException($"'{path}' must be a JSON object such as {{\"max_seq_length\": 256}}.", path);
        int? max = null;
        if (doc.RootElement.TryGetProperty("max_seq_length", out JsonElement m) && m.ValueKind != JsonValueKind.Null)
        {
            if (m.ValueKind != JsonValueKind.Number || !m.TryGetInt32(out int v) || v < 1)
                throw new ModelLoadException($"'{path}': max_seq_length is {m.GetRawText()}; it must be a whole number of tokens, at least 1.", path);
            max = v;
        }
        bool lower = doc.RootElement.TryGetProperty("do_lower_case", out JsonElement l) && l.ValueKind == JsonValueKind.True;
        return (max, lower);
    }

    /// <summary>A small JSON file of the folder (bounded read, links followed), or the error naming it.</summary>
    internal static JsonDocument ReadJson(string path)
    {
        byte[] bytes = InputFile.ReadAllBytes(path, InputFile.MaxJsonBytes, out string? problem);
        if (problem is not null) throw new ModelLoadException(problem, path);
        try
        {
            return JsonDocument.Parse(bytes);
        }
        catch (JsonException e)
        {
            throw new ModelLoadException($"'{path}' is not valid JSON ({e.Message}); fetch the file again.", path, e);
        }
    }
}
