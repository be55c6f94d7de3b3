// LoRA adapters in HF PEFT's format: adapter_config.json (LoraConfig's field names) + adapter_model.safetensors with
// keys base_model.model.<module>.lora_A.weight [r, in] and .lora_B.weight [out, r]. A Linear W [out, in] with an adapter
// computes y = x W^T + (x A^T B^T) * scale, scale = lora_alpha / r (or lora_alpha / sqrt(r) with use_rslora).
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using ManagedT5.IO;
using ManagedT5.Kernels;
using ManagedT5.Loading;
using ManagedT5.Model;

namespace ManagedT5.Adapters;

/// <summary>
/// PEFT's LoraConfig as adapter_config.json holds it (the property names are PEFT's in PascalCase). Only what T5
/// inference and training need: fields PEFT writes that change nothing here are ignored on read, and fields whose
/// non-default values this engine cannot honour (fan_in_fan_out, bias, modules_to_save, use_dora, rank_pattern, ...)
/// are refused by <see cref="LoraAdapter.Load"/> with an error naming the field.
/// </summary>
public sealed record LoraConfig
{
    /// <summary>"r": the rank of A [r, in] and B [out, r].</summary>
    public int R { get; init; } = 8;
    /// <summary>"lora_alpha": the numerator of <see cref="Scale"/>.</summary>
    public double LoraAlpha { get; init; } = 8;
    /// <summary>"lora_dropout": dropout on the adapter's input while training (inference ignores it).</summary>
    public double LoraDropout { get; init; }
    /// <summary>"target_modules" as a list of names: a module is targeted when its path equals a name or ends with
    /// "." + name (so "q" selects every attention's q). Ignored when <see cref="TargetModulesRegex"/> is set.</summary>
    public IReadOnlyList<string> TargetModules { get; init; } = ["q", "v"];
    /// <summary>"target_modules" given as one string: PEFT treats it as a regular expression that must match a module's
    /// whole path (e.g. <c>.*decoder.*\.(q|v)</c>); "all-linear" means every Linear but the output head. Null: the list
    /// <see cref="TargetModules"/> applies.</summary>
    public string? TargetModulesRegex { get; init; }
    /// <summary>"layers_to_transform": only these layer indices are targeted (null: all). Which number of a path is the
    /// "layer" is PEFT's rule: the one after <see cref="LayersPattern"/> ("block"), or without a pattern the last
    /// "name.N." of the path, which in T5 is the sublayer index of "layer.N".</summary>
    public IReadOnlyList<int>? LayersToTransform { get; init; }
    /// <summary>"layers_pattern": the name(s) before the layer index, e.g. ["block"].</summary>
    public IReadOnlyList<string>? LayersPattern { get; init; }
    /// <summary>"use_rslora": scale by alpha / sqrt(r) instead of alpha / r.</summary>
    public bool UseRslora { get; init; }
    /// <summary>"base_model_name_or_path": what the adapter was trained on (informational).</summary>
    public string? BaseModelNameOrPath { get; init; }
    /// <summary>"task_type": "SEQ_2_SEQ_LM" for T5ForConditionalGeneration (null when the file has none).</summary>
    public string? TaskType { get; init; } = "SEQ_2_SEQ_LM";

    /// <summary>The factor B·A is multiplied by: lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora.</summary>
    public float Scale => (float)(UseRslora ? LoraAlpha / Math.Sqrt(R) : LoraAlpha / R);

    /// <summary>PEFT's shorthand for "every Linear but the output head".</summary>
    public const string AllLinear = "all-linear";

    /// <summary>Whether this config selects the Linear at <paramref name="module"/> (a T5 module path such as
    /// "decoder.block.1.layer.1.EncDecAttention.q"), by PEFT's rule (check_target_module_exists): the regex must
    /// match the whole path; a list name must equal it or be its last dotted part(s); then layers_to_transform.</summary>
    public bool Targets(string module)
    {
        ArgumentNullException.ThrowIfNull(module);
        if (TargetModulesRegex is { } pattern)
        {
            if (string.Equals(pattern, AllLinear, StringComparison.OrdinalIgnoreCase)) return LoraAdapter.IsLinearPath(module);
            return Match(@"\A(?:" + pattern + @")\z", module).Success;   // re.fullmatch; layers_to_transform is not used
        }
        if (TargetModules.Contains(module, StringComparer.Ordinal)) return true;            // named in full
        if (!TargetModules.Any(t => module.EndsWith("." + t, StringComparison.Ordinal))) return false;
        if (LayersToTransform is not { Count: > 0 } layers) return true;
        Match? index = null;
        if (LayersPattern is not { Count: > 0 })
            index = Match(@"\A.*\.[^.]*\.(\d+)\.", module);
        else
            foreach (string p in LayersPattern)
                if ((index = Match(@"\A.*\." + p + @"\.(\d+)\.", module)).Success) break;
        return index is { Success: true } && int.TryParse(index.Groups[1].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out int layer)
            && layers.Contains(layer);
    }

    // Patterns come from files: a catastrophic one stops after a second instead of hanging the load.
    private static Match Match(string pattern, string input)
    {
        try
        {
            return Regex.Match(input, pattern, RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
        }
        catch (RegexMatchTimeoutException)
        {
            throw new ArgumentException($"target_modules: the pattern '{pattern}' took too long to match '{input}'; simplify it.", "target_modules");
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"target_modules: '{pattern}' is not a valid regular expression: {e.Message}", "target_modules", e);
        }
    }
}

/// <summary>One adapted Linear. <see cref="Module"/> is its HF path in the model, e.g.
/// "encoder.block.0.layer.0.SelfAttention.q"; <see cref="A"/> is lora_A.weight [r, in] and <see cref="B"/> is
/// lora_B.weight [out, r], both row-major.</summary>
public sealed record LoraModule(string Module, int InFeatures, int OutFeatures, float[] A, float[] B)
{
    /// <summary>The rank r (rows of A).</summary>
    public int Rank => InFeatures == 0 ? 0 : A.Length / InFeatures;

    /// <summary>ΔW = scale · B·A as [out, in] row-major, in f32 (each element a sum over r, in index order).</summary>
    public float[] Delta(float scale)
    {
        int r = Rank;
        var delta = new float[(long)OutFeatures * InFeatures];
        for (int o = 0; o < OutFeatures; o++)
            for (int i = 0; i < InFeatures; i++)
            {
                float sum = 0;
                for (int k = 0; k < r; k++) sum += B[o * r + k] * A[k * InFeatures + i];
                delta[(long)o * InFeatures + i] = sum * scale;
            }
        return delta;
    }
}

/// <summary>
/// A LoRA adapter for a T5 model: its <see cref="Config"/> and the A/B matrices of each adapted Linear. Read and written
/// in PEFT's format, so an adapter made with PEFT loads here and one saved here loads in PEFT
/// (<c>PeftModel.from_pretrained(model, dir)</c>).
/// </summary>
public sealed class LoraAdapter
{
    /// <summary>File name of the configuration.</summary>
    public const string ConfigFileName = "adapter_config.json";
    /// <summary>File name of the weights.</summary>
    public const string WeightsFileName = "adapter_model.safetensors";
    private const string KeyPrefix = "base_model.model.";

    /// <summary>The configuration (adapter_config.json).</summary>
    public LoraConfig Config { get; }
    /// <summary>The adapted Linears in checkpoint order (encoder, then decoder; by block, sublayer, then q, k, v, o, wi,
    /// wi_0, wi_1, wo).</summary>
    public IReadOnlyList<LoraModule> Modules { get; }

    /// <summary>Makes an adapter from parts (A/B shapes are checked against r).</summary>
    public LoraAdapter(LoraConfig config, IEnumerable<LoraModule> modules)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(modules);
        Config = config;
        var list = modules.ToList();
        foreach (LoraModule m in list)
        {
            if (!IsLinearPath(m.Module))
                throw new ArgumentException($"modules: '{m.Module}' is not a T5 Linear path ({LinearNames}).", nameof(modules));
            if (m.A.Length != (long)config.R * m.InFeatures || m.B.Length != (long)m.OutFeatures * config.R)
                throw new ArgumentException($"modules: '{m.Module}' has {m.A.Length} A and {m.B.Length} B values; r {config.R} with " +
                    $"in {m.InFeatures} and out {m.OutFeatures} needs {(long)config.R * m.InFeatures} and {(long)m.OutFeatures * config.R}.", nameof(modules));
        }
        if (list.Select(m => m.Module).Distinct(StringComparer.Ordinal).Count() != list.Count)
            throw new ArgumentException("modules: a module is listed twice.", nameof(modules));
        Modules = list.OrderBy(m => m.Module, ModuleOrder.Instance).ToList();
    }

    // ------------------------------------------------------------------ reading

    /// <summary>
    /// Reads a PEFT LoRA adapter folder. Every problem is one <see cref="ModelLoadException"/> naming the file and the
    /// field, key or shape: a missing file, a peft_type other than LORA, options this engine does not apply
    /// (fan_in_fan_out, bias other than "none", modules_to_save, use_dora, rank_pattern/alpha_pattern, ...), a key that
    /// is not a T5 Linear's lora_A/lora_B, a module with A but no B (or B but no A), shapes that disagree with r or with
    /// each other, or a module the config's target_modules does not select.
    /// </summary>
    public static LoraAdapter Load(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        if (!Directory.Exists(directory))
            throw new ModelLoadException(
                $"Adapter folder '{directory}' does not exist. Give the folder that holds {ConfigFileName} and {WeightsFileName} " +
                "(what PEFT's save_pretrained writes).", directory);
        string configPath = Path.Combine(directory, ConfigFileName);
        LoraConfig config = LoadConfig(configPath);
        string weightsPath = Path.Combine(directory, WeightsFileName);
        if (!File.Exists(weightsPath))
            throw new ModelLoadException(
                File.Exists(Path.Combine(directory, "adapter_model.bin"))
                    ? $"'{directory}' holds adapter_model.bin (PyTorch pickle), which is not read; save the adapter with " +
                      "save_pretrained(dir, safe_serialization=True) to get {WeightsFileName}."
                    : $"'{directory}' has no {WeightsFileName}. An adapter folder holds {ConfigFileName} and {WeightsFileName}.",
                weightsPath);
        return new LoraAdapter(config, ReadModules(weightsPath, config));
    }

    /// <summary>Reads and checks an adapter_config.json alone (as <see cref="Load"/> does), e.g. to show it.</summary>
    public static LoraConfig LoadConfig(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        byte[] bytes = InputFile.ReadAllBytes(path, InputFile.MaxJsonBytes, out string? problem);
        if (problem is not null)
            throw new ModelLoadException(File.Exists(path) || Directory.Exists(path) ? problem
                : $"'{path}' does not exist. An adapter folder holds {ConfigFileName} and {WeightsFileName}.", path);
        JsonDocument doc;
        try { doc = JsonDocument.Parse(bytes); }
        catch (JsonException e) { throw new ModelLoadException($"'{path}' is not valid JSON: {e.Message}", path, e); }
        using (doc)
        {
            JsonElement root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new ModelLoadException($"'{path}' is not a JSON object; PEFT writes {{\"peft_type\": \"LORA\", \"r\": ..., ...}}.", path);
            ModelLoadException Bad(string field, string what) => new($"'{path}': \"{field}\" {what}", path);
            JsonElement? Get(string field) =>
                root.TryGetProperty(field, out JsonElement v) && v.ValueKind != JsonValueKind.Null ? v : null;
            string? String(string field) => Get(field) is not { } v ? null
                : v.ValueKind == JsonValueKind.String ? v.GetString() : throw Bad(field, $"is {Json(v)}; it must be a string.");
            bool Bool(string field) => Get(field) is not { } v ? false
                : v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : throw Bad(field, $"is {Json(v)}; it must be true or false.");
            double Number(string field, double fallback) => Get(field) is not { } v ? fallback
                : v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d) && double.IsFinite(d) ? d
                : throw Bad(field, $"is {Json(v)}; it must be a number.");
            List<string>? Strings(string field, JsonElement v) => v.ValueKind == JsonValueKind.Array
                ? v.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.String ? e.GetString()! : throw Bad(field, $"holds {Json(e)}; it must list names.")).ToList()
                : null;

            string? peftType = String("peft_type");
            if (peftType != "LORA")
                throw Bad("peft_type", peftType is null
                    ? "is missing; this reads LoRA adapters (\"peft_type\": \"LORA\")."
                    : $"is '{peftType}'; only LoRA adapters (\"LORA\") are read. Other PEFT methods are not supported.");
            string? taskType = String("task_type");
            if (taskType is not (null or "SEQ_2_SEQ_LM"))
                throw Bad("task_type", $"is '{taskType}'; a T5ForConditionalGeneration adapter has \"SEQ_2_SEQ_LM\" (or none).");

            double rValue = Number("r", 8);
            if (rValue != Math.Floor(rValue) || rValue < 1 || rValue > 1 << 20)
                throw Bad("r", $"is {rValue.ToString(CultureInfo.InvariantCulture)}; it must be a whole number of at least 1.");
            double alpha = Number("lora_alpha", 8);
            double dropout = Number("lora_dropout", 0);
            if (dropout is < 0 or >= 1) throw Bad("lora_dropout", $"is {dropout.ToString(CultureInfo.InvariantCulture)}; it must be in [0, 1).");

            if (Bool("fan_in_fan_out"))
                throw Bad("fan_in_fan_out", "is true, which is for GPT-2's Conv1D layers; T5's Linears store [out, in]. Retrain with fan_in_fan_out false.");
            string? bias = String("bias");
            if (bias is not (null or "none"))
                throw Bad("bias", $"is '{bias}'; only \"none\" is supported (adapters that also train biases are not; T5's Linears have none).");
            if (Get("modules_to_save") is { } save && !(save.ValueKind == JsonValueKind.Array && save.GetArrayLength() == 0))
                throw Bad("modules_to_save", $"is {Json(save)}; adapters that carry whole modules are not supported. Save without modules_to_save.");
            foreach (string flag in new[] { "use_dora", "lora_bias" })
                if (Bool(flag)) throw Bad(flag, "is true; only plain LoRA is supported.");
            foreach (string dict in new[] { "rank_pattern", "alpha_pattern" })
                if (Get(dict) is { } d && !(d.ValueKind == JsonValueKind.Object && !d.EnumerateObject().Any()))
                    throw Bad(dict, $"is {Json(d)}; per-module ranks or alphas are not supported (one r and lora_alpha for every module).");
            foreach (string field in new[] { "exclude_modules", "layer_replication", "target_parameters", "megatron_config" })
                if (Get(field) is { } v && !(v.ValueKind is JsonValueKind.Array or JsonValueKind.Object && !v.EnumerateAny()))
                    throw Bad(field, $"is {Json(v)}; this option is not supported. Save the adapter without it.");

            var config = new LoraConfig
            {
                R = (int)rValue, LoraAlpha = alpha, LoraDropout = dropout, UseRslora = Bool("use_rslora"),
                BaseModelNameOrPath = String("base_model_name_or_path"), TaskType = taskType,
            };
            if (Get("target_modules") is { } targets)   // null: PEFT's default for t5, ["q", "v"]
            {
                if (targets.ValueKind == JsonValueKind.String)
                {
                    string pattern = targets.GetString()!;
                    try { _ = new Regex(pattern, RegexOptions.CultureInvariant); }
                    catch (ArgumentException e) { throw Bad("target_modules", $"'{pattern}' is not a regular expression this engine reads: {e.Message}"); }
                    config = config with { TargetModulesRegex = pattern };
                }
                else config = config with
                {
                    TargetModules = Strings("target_modules", targets) is { Count: > 0 } list ? list
                        : throw Bad("target_modules", $"is {Json(targets)}; give a list of module names such as [\"q\", \"v\"] or a regular expression."),
                };
            }
            if (Get("layers_to_transform") is { } layers)
                config = config with
                {
                    LayersToTransform = layers.ValueKind == JsonValueKind.Number && layers.TryGetInt32(out int one) ? [one]
                        : layers.ValueKind == JsonValueKind.Array
                            ? layers.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int i) ? i
                                : throw Bad("layers_to_transform", $"holds {Json(e)}; it must list layer indices.")).ToList()
                            : throw Bad("layers_to_transform", $"is {Json(layers)}; it must be a layer index or a list of them."),
                };
            if (Get("layers_pattern") is { } lp)
                config = config with
                {
                    LayersPattern = lp.ValueKind == JsonValueKind.String ? [lp.GetString()!]
                        : Strings("layers_pattern", lp) ?? throw Bad("layers_pattern", $"is {Json(lp)}; it must be a name such as \"block\" or a list of names."),
                };
            return config;
        }
    }

    private static List<LoraModule> ReadModules(string path, LoraConfig config)
    {
        using SafeTensorsFile file = SafeTensorsFile.Open(path);
        var a = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
        var b = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
        foreach (SafeTensorInfo t in file.Tensors)
        {
            string key = t.Name;
            string? module = null;
            bool isA = false;
            // PEFT saves ".lora_A.weight" (the adapter name removed); a state dict saved by hand keeps ".lora_A.default.weight".
            foreach (var (suffix, aSide) in new[] { (".lora_A.weight", true), (".lora_B.weight", false), (".lora_A.default.weight", true), (".lora_B.default.weight", false) })
                if (key.StartsWith(KeyPrefix, StringComparison.Ordinal) && key.EndsWith(suffix, StringComparison.Ordinal) && key.Length > KeyPrefix.Length + suffix.Length)
                {
                    module = key[KeyPrefix.Length..^suffix.Length];
                    isA = aSide;
                    break;
                }
            if (module is null)
                throw new ModelLoadException(
                    $"'{path}' holds tensor {SafeTensorsFile.Quote(key)}, which is not a LoRA matrix of this format " +
                    $"({KeyPrefix}<module>.lora_A.weight or .lora_B.weight). Only plain LoRA on Linears is supported.", path);
            if (!IsLinearPath(module))
                throw new ModelLoadException(
                    $"'{path}': tensor {SafeTensorsFile.Quote(key)} adapts module {SafeTensorsFile.Quote(module)}, which is not a Linear " +
                    $"of a T5 model ({{encoder|decoder}}.block.N.layer.M.{{SelfAttention|EncDecAttention}}.{{q|k|v|o}} or " +
                    $".DenseReluDense.{{wi|wi_0|wi_1|wo}}). LoRA on embeddings or the head is not supported.", path);
            if (t.DType is not (DType.F32 or DType.F16 or DType.BF16))
                throw new ModelLoadException($"'{path}': tensor {SafeTensorsFile.Quote(key)} has dtype {t.DType}; LoRA matrices must be F32, F16 or BF16.", path);
            if (t.Shape.Length != 2)
                throw new ModelLoadException($"'{path}': tensor {SafeTensorsFile.Quote(key)} has shape {ShapeOf(t)}; LoRA matrices are 2-D " +
                    "(lora_A [r, in_features], lora_B [out_features, r]).", path);
            if (!(isA ? a : b).TryAdd(module, t))
                throw new ModelLoadException($"'{path}' holds module {SafeTensorsFile.Quote(module)}'s lora_{(isA ? "A" : "B")} twice " +
                    "(with and without \".default\"); keep one.", path);
        }
        if (a.Count == 0 && b.Count == 0)
            throw new ModelLoadException($"'{path}' holds no LoRA matrices ({KeyPrefix}<module>.lora_A.weight / .lora_B.weight).", path);

        var modules = new List<LoraModule>();
        foreach (string module in a.Keys.Union(b.Keys).Order(ModuleOrder.Instance))
        {
            string Key(string side) => $"{KeyPrefix}{module}.lora_{side}.weight";
            if (!a.TryGetValue(module, out SafeTensorInfo? ta) || !b.TryGetValue(module, out SafeTensorInfo? tb))
                throw new ModelLoadException(
                    $"'{path}' has {SafeTensorsFile.Quote(Key(a.ContainsKey(module) ? "A" : "B"))} but no {SafeTensorsFile.Quote(Key(a.ContainsKey(module) ? "B" : "A"))}; " +
                    "each adapted module needs both lora_A and lora_B. The file is incomplete: save the adapter again.", path);
            if (ta.Shape[0] != config.R)
                throw new ModelLoadException($"'{path}': {SafeTensorsFile.Quote(ta.Name)} has shape {ShapeOf(ta)} but {ConfigFileName} says r {config.R} " +
                    $"(lora_A is [r, in_features]). The config and the weights belong to different adapters.", path);
            if (tb.Shape[1] != config.R)
                throw new ModelLoadException($"'{path}': {SafeTensorsFile.Quote(tb.Name)} has shape {ShapeOf(tb)} but {ConfigFileName} says r {config.R} " +
                    $"(lora_B is [out_features, r]). The config and the weights belong to different adapters.", path);
            bool targeted;
            try { targeted = config.Targets(module); }
            catch (ArgumentException e) { throw new ModelLoadException($"'{path}': {e.Message}", path, e); }
            if (!targeted)
                throw new ModelLoadException($"'{path}' adapts {SafeTensorsFile.Quote(module)}, which target_modules " +
                    $"({TargetsText(config)}) does not select. The config and the weights belong to different adapters.", path);
            modules.Add(new LoraModule(module, ta.Shape[1], tb.Shape[0], file.GetTensor(ta.Name).ToSingleArray(), file.GetTensor(tb.Name).ToSingleArray()));
        }
        return modules;
    }

    // ------------------------------------------------------------------ writing

    /// <summary>Writes adapter_config.json and adapter_model.safetensors (F32, keys
    /// base_model.model.&lt;module&gt;.lora_A.weight / .lora_B.weight, metadata format "pt") into
    /// <paramref name="directory"/>, creating it; PEFT's <c>PeftModel.from_pretrained</c> reads the result.</summary>
    public void Save(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        Directory.CreateDirectory(directory);
        var writer = new SafeTensorsWriter();
        foreach (LoraModule m in Modules)
        {
            writer.Add($"{KeyPrefix}{m.Module}.lora_A.weight", m.A, Config.R, m.InFeatures);
            writer.Add($"{KeyPrefix}{m.Module}.lora_B.weight", m.B, m.OutFeatures, Config.R);
        }
        writer.Save(Path.Combine(directory, WeightsFileName), new Dictionary<string, string> { ["format"] = "pt" });

        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            LoraConfig c = Config;
            json.WriteStartObject();
            json.WriteString("base_model_name_or_path", c.BaseModelNameOrPath);
            json.WriteString("peft_type", "LORA");
            json.WriteString("task_type", c.TaskType ?? "SEQ_2_SEQ_LM");
            json.WriteNumber("r", c.R);
            json.WriteNumber("lora_alpha", c.LoraAlpha);
            json.WriteNumber("lora_dropout", c.LoraDropout);
            if (c.TargetModulesRegex is { } regex) json.WriteString("target_modules", regex);
            else
            {
                json.WriteStartArray("target_modules");
                foreach (string t in c.TargetModules) json.WriteStringValue(t);
                json.WriteEndArray();
            }
            WriteList(json, "layers_to_transform", c.LayersToTransform, (w, v) => w.WriteNumberValue(v));
            WriteList(json, "layers_pattern", c.LayersPattern, (w, v) => w.WriteStringValue(v));
            json.WriteString("bias", "none");
            json.WriteBoolean("fan_in_fan_out", false);
            json.WriteBoolean("inference_mode", true);
            json.WriteNull("modules_to_save");
            json.WriteBoolean("init_lora_weights", true);
            json.WriteBoolean("use_rslora", c.UseRslora);
            json.WriteBoolean("use_dora", false);
            json.WriteStartObject("rank_pattern");
            json.WriteEndObject();
            json.WriteStartObject("alpha_pattern");
            json.WriteEndObject();
            json.WriteNull("revision");
            json.WriteEndObject();
        }
        string configPath = Path.Combine(directory, ConfigFileName);
        File.WriteAllBytes(configPath + ".tmp", stream.ToArray());
        File.Move(configPath + ".tmp", configPath, overwrite: true);
    }

    private static void WriteList<T>(Utf8JsonWriter json, string name, IReadOnlyList<T>? values, Action<Utf8JsonWriter, T> write)
    {
        if (values is null)
        {
            json.WriteNull(name);
            return;
        }
        json.WriteStartArray(name);
        foreach (T v in values) write(json, v);
        json.WriteEndArray();
    }

    // ------------------------------------------------------------------ a new adapter, and fitting a model

    /// <summary>
    /// A new adapter on every Linear of the model that <paramref name="config"/> targets, initialised as PEFT does:
    /// A ~ kaiming_uniform(a = sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)), drawn from a generator seeded with
    /// <paramref name="seed"/> (not torch's stream: the same seed gives the same adapter here, not PEFT's numbers); B = 0,
    /// so the adapted model starts equal to the base.
    /// </summary>
    /// <exception cref="ArgumentException">target_modules selects no Linear of the model.</exception>
    public static LoraAdapter Create(LoraConfig config, T5Modules modules, T5Config modelConfig, int seed)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(modules);
        ArgumentNullException.ThrowIfNull(modelConfig);
        if (config.R < 1) throw new ArgumentException($"r: {config.R}; the rank must be at least 1.", "r");
        var random = new Random(seed);
        var created = new List<LoraModule>();
        foreach (T5Parameter linear in Linears(modules))
        {
            if (!config.Targets(linear.Module)) continue;
            int outFeatures = linear.Shape[0], inFeatures = linear.Shape[1];
            float bound = 1f / MathF.Sqrt(inFeatures);
            var a = new float[config.R * inFeatures];
            for (int i = 0; i < a.Length; i++) a[i] = (float)(random.NextDouble() * 2 - 1) * bound;
            created.Add(new LoraModule(linear.Module, inFeatures, outFeatures, a, new float[outFeatures * config.R]));
        }
        if (created.Count == 0)
            throw new ArgumentException($"target_modules: {TargetsText(config)} selects none of the model's Linears ({LinearNames}).", "target_modules");
        return new LoraAdapter(config, created);
    }

    /// <summary>
    /// Checks that this adapter fits a model: every module it adapts is a Linear of the model with the same
    /// [out, in], and every Linear of the model its target_modules selects is adapted (an adapter made for another
    /// model usually fails one or the other). One <see cref="ModelLoadException"/> names every module that is missing
    /// or whose shape differs.
    /// </summary>
    public void CheckFits(T5Modules modules, T5Config modelConfig, string adapterDirectory)
    {
        ArgumentNullException.ThrowIfNull(modules);
        ArgumentNullException.ThrowIfNull(modelConfig);
        var linears = Linears(modules).ToDictionary(p => p.Module, StringComparer.Ordinal);
        var problems = new List<string>();
        foreach (LoraModule m in Modules)
        {
            if (!linears.TryGetValue(m.Module, out T5Parameter? p))
                problems.Add($"'{m.Module}' is not in the model");
            else if (p.Shape[0] != m.OutFeatures || p.Shape[1] != m.InFeatures)
                problems.Add($"'{m.Module}' is [{p.Shape[0]}, {p.Shape[1]}] in the model but the adapter's B·A is [{m.OutFeatures}, {m.InFeatures}]");
        }
        var adapted = Modules.Select(m => m.Module).ToHashSet(StringComparer.Ordinal);
        foreach (T5Parameter p in linears.Values)
            if (Config.Targets(p.Module) && !adapted.Contains(p.Module))
                problems.Add($"'{p.Module}' is selected by target_modules ({TargetsText(Config)}) but the adapter has no matrices for it");
        if (problems.Count > 0)
            throw new ModelLoadException(
                $"The adapter in '{adapterDirectory}' does not fit this model (d_model {modelConfig.DModel}, num_heads x d_kv {modelConfig.InnerDim}, " +
                $"d_ff {modelConfig.DFf}, {modelConfig.NumLayers} encoder / {modelConfig.NumDecoderLayers} decoder blocks): " +
                string.Join("; ", problems.Take(12)) + (problems.Count > 12 ? $"; and {problems.Count - 12} more" : "") +
                ". Use the adapter with the base model it was trained on" +
                (Config.BaseModelNameOrPath is { } b ? $" ({b})." : "."), adapterDirectory);
    }

    /// <summary>The module <paramref name="module"/>'s entry, or null when this adapter does not adapt it.</summary>
    public LoraModule? Find(string module) => Modules.FirstOrDefault(m => m.Module == module);

    // ------------------------------------------------------------------ T5's Linears

    private const string LinearNames = "q, k, v, o, wi, wi_0, wi_1, wo";
    private static readonly Regex LinearPath = new(
        @"\A(encoder|decoder)\.block\.(\d{1,9})\.layer\.(\d)\.(?:(?:SelfAttention|EncDecAttention)\.(q|k|v|o)|DenseReluDense\.(wi|wi_0|wi_1|wo))\z",
        RegexOptions.CultureInvariant);

    /// <summary>Whether <paramref name="module"/> is spelled like a T5 Linear's path (any block number).</summary>
    internal static bool IsLinearPath(string module) => LinearPath.IsMatch(module);

    /// <summary>Every Linear of the model (the adaptable matrices: not the embedding or the head), in module order.</summary>
    public static IEnumerable<T5Parameter> Linears(T5Modules modules)
    {
        ArgumentNullException.ThrowIfNull(modules);
        foreach (T5StackModule stack in modules.Stacks)
            foreach (T5BlockModule block in stack.Blocks)
            {
                foreach (T5AttentionModule? a in new[] { block.SelfAttention, block.CrossAttention })
                    if (a is not null) { yield return a.Q; yield return a.K; yield return a.V; yield return a.O; }
                foreach (T5Parameter? p in new[] { block.FeedForward.Wi, block.FeedForward.Wi0, block.FeedForward.Wi1, block.FeedForward.Wo })
                    if (p is not null) yield return p;
            }
    }

    private static string TargetsText(LoraConfig c) =>
        c.TargetModulesRegex is { } r ? $"'{r}'" : "[" + string.Join(", ", c.TargetModules.Select(t => $"\"{t}\"")) + "]" +
        (c.LayersToTransform is { } l ? $" in layers [{string.Join(", ", l)}]" : "");

    private static string ShapeOf(SafeTensorInfo t) => "[" + string.Join(", ", t.Shape) + "]";

    private static string Json(JsonElement v)
    {
        string text = v.GetRawText();
        return text.Length > 60 ? text[..57] + "..." : text;
    }

    /// <summary>Encoder before decoder, then block, sublayer and q, k, v, o, wi, wi_0, wi_1, wo (numbers compared as numbers).</summary>
    private sealed class ModuleOrder : IComparer<string>
    {
        public static readonly ModuleOrder Instance = new();
        private static readonly string[] Names = ["q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo"];

        public int Compare(string? x, string? y)
        {
            Match mx = LinearPath.Match(x ?? ""), my = LinearPath.Match(y ?? "");
            if (!mx.Success || !my.Success) return string.CompareOrdinal(x, y);
            int c = (mx.Groups[1].Value == "decoder").CompareTo(my.Groups[1].Value == "decoder");
            if (c == 0) c = long.Parse(mx.Groups[2].ValueSpan, CultureInfo.InvariantCulture).CompareTo(long.Parse(my.Groups[2].ValueSpan, CultureInfo.InvariantCulture));
            if (c == 0) c = mx.Groups[3].Value.CompareTo(my.Groups[3].Value);
            if (c == 0) c = Array.IndexOf(Names, Leaf(mx)).CompareTo(Array.IndexOf(Names, Leaf(my)));
            return c;
        }

        private static string Leaf(Match m) => m.Groups[4].Success ? m.Groups[4].Value : m.Groups[5].Value;
    }
}

internal static class JsonElementExtensions
{
    /// <summary>True when an array or object has any element.</summary>
    public static bool EnumerateAny(this JsonElement v) =>
        v.ValueKind == JsonValueKind.Array ? v.GetArrayLength() > 0 : v.EnumerateObject().Any();
}
