// Writes a fully fine-tuned model as a HF model folder, as save_pretrained does: config.json (torch_dtype float32),
// generation_config.json, model.safetensors with HF's parameter names in float32 (a tied model stores shared.weight
// only: no lm_head.weight and no embed_tokens copies; an untied one adds lm_head.weight) and the tokenizer files copied.
using System.Text.Json;
using System.Text.Json.Nodes;
using ManagedT5.Loading;
using ManagedT5.Model;

namespace ManagedT5.Training;

/// <summary>The HF model folder writer for full fine-tuning.</summary>
public static class HfModelFolder
{
    /// <summary>Tokenizer files copied from the base model when present.</summary>
    public static readonly string[] TokenizerFiles = ["spiece.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"];

    /// <summary>Writes <paramref name="parameters"/> (HF names, every parameter the model's module map lists, nothing
    /// else) with the configuration and tokenizer of <paramref name="baseModelDirectory"/> into
    /// <paramref name="directory"/>.</summary>
    /// <exception cref="ArgumentException">A parameter is missing, unexpected or of the wrong shape (named).</exception>
    public static void Write(string directory, string baseModelDirectory, T5Config config, IReadOnlyList<TrainedTensor> parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        var modules = new T5Modules(config);
        var byName = new Dictionary<string, TrainedTensor>(StringComparer.Ordinal);
        foreach (TrainedTensor p in parameters)
            if (!byName.TryAdd(p.Name, p)) throw new ArgumentException($"Parameter '{p.Name}' is listed twice.", nameof(parameters));
        var expected = modules.Parameters.ToList();
        var missing = expected.Where(p => !byName.ContainsKey(p.Name)).Select(p => p.Name).ToList();
        if (missing.Count > 0) throw new ArgumentException($"The model to save lacks {string.Join(", ", missing)}.", nameof(parameters));
        var unexpected = byName.Keys.Except(expected.Select(p => p.Name)).ToList();
        if (unexpected.Count > 0)
            throw new ArgumentException($"The model to save has parameters the module map does not: {string.Join(", ", unexpected)}" +
                                        (config.TieWordEmbeddings ? " (a tied model stores shared.weight only)." : "."), nameof(parameters));

        Directory.CreateDirectory(directory);
        var writer = new SafeTensorsWriter();
        foreach (TrainedTensor p in parameters)
        {
            int[] shape = expected.First(e => e.Name == p.Name).Shape;
            if (!shape.SequenceEqual(p.Shape) || p.Value.Length != shape.Aggregate(1, (a, d) => a * d))
                throw new ArgumentException($"Parameter '{p.Name}' is [{string.Join(", ", p.Shape)}] with {p.Value.Length} values; config.json makes it [{string.Join(", ", shape)}].", nameof(parameters));
            writer.Add(p.Name, p.Value, shape);
        }
        // transformers refuses a safetensors file without format "pt" metadata.
        writer.Save(Path.Combine(directory, Checkpoint.SingleFileName), new Dictionary<string, string> { ["format"] = "pt" });

        var options = new JsonSerializerOptions { WriteIndented = true };
        string baseConfig = Path.Combine(baseModelDirectory, "config.json");
        JsonNode configJson = (File.Exists(baseConfig) ? JsonNode.Parse(File.ReadAllText(baseConfig)) : null) ?? new JsonObject();
        configJson["torch_dtype"] = "float32";
        configJson["dropout_rate"] = config.DropoutRate;   // the rate the run trained with (--dropout-rate), as HF saves model.config
        File.WriteAllText(Path.Combine(directory, "config.json"), configJson.ToJsonString(options));

        string baseGeneration = Path.Combine(baseModelDirectory, "generation_config.json");
        if (!SameFile(baseGeneration, Path.Combine(directory, "generation_config.json")))
        {
            if (File.Exists(baseGeneration)) File.Copy(baseGeneration, Path.Combine(directory, "generation_config.json"), overwrite: true);
            else
                File.WriteAllText(Path.Combine(directory, "generation_config.json"), new JsonObject
                {
                    ["decoder_start_token_id"] = config.DecoderStartTokenId,
                    ["eos_token_id"] = config.EosTokenId,
                    ["pad_token_id"] = config.PadTokenId,
                }.ToJsonString(options));
        }
        foreach (string name in TokenizerFiles)
        {
            string from = Path.Combine(baseModelDirectory, name), to = Path.Combine(directory, name);
            if (File.Exists(from) && !SameFile(from, to)) File.Copy(from, to, overwrite: true);
        }
    }

    private static bool SameFile(string a, string b) =>
        string.Equals(Path.GetFullPath(a), Path.GetFullPath(b), StringComparison.Ordinal);
}
