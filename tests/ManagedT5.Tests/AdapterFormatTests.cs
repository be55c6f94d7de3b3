// LoRA adapters in PEFT's format: the fixtures made by PEFT load, save/reload keeps every value, and each kind of bad
// adapter folder is one ModelLoadException naming the file and the field, key or shape.
using ManagedT5.Adapters;
using ManagedT5.Kernels;
using ManagedT5.Loading;
using ManagedT5.Model;
using Xunit;

namespace ManagedT5.Tests;

public sealed class AdapterFormatTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "mt5-adapter-" + Guid.NewGuid().ToString("N"));

    public AdapterFormatTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    internal static string Lora(string name) => Path.Combine(Fixtures.Root, "training", "tiny-flan-t5", name);

    [Theory]
    [InlineData("lora_initial")]
    [InlineData("lora_final")]
    public void PeftFixtureLoads(string name)
    {
        LoraAdapter adapter = LoraAdapter.Load(Lora(name));
        Assert.Equal(4, adapter.Config.R);
        Assert.Equal(8, adapter.Config.LoraAlpha);
        Assert.Equal(2f, adapter.Config.Scale);
        Assert.Equal(["q", "v"], adapter.Config.TargetModules);
        Assert.Equal("tiny-flan-t5", adapter.Config.BaseModelNameOrPath);
        Assert.Equal(14, adapter.Modules.Count);
        Assert.Equal("encoder.block.0.layer.0.SelfAttention.q", adapter.Modules[0].Module);
        Assert.Equal("encoder.block.0.layer.0.SelfAttention.v", adapter.Modules[1].Module);
        Assert.Equal("decoder.block.1.layer.1.EncDecAttention.v", adapter.Modules[^1].Module);
        foreach (LoraModule m in adapter.Modules)
        {
            Assert.Equal((32, 48, 4), (m.InFeatures, m.OutFeatures, m.Rank));
            Assert.Equal(4 * 32, m.A.Length);
            Assert.Equal(48 * 4, m.B.Length);
            Assert.Contains(m.B, v => v != 0);   // the fixture's B is random, not PEFT's zeros
        }

        // The values are the file's, key for key.
        using SafeTensorsFile file = SafeTensorsFile.Open(Path.Combine(Lora(name), LoraAdapter.WeightsFileName));
        LoraModule last = adapter.Modules[^1];
        Assert.Equal(file.GetTensor($"base_model.model.{last.Module}.lora_B.weight").ToSingleArray(), last.B);
        Assert.Equal(file.GetTensor($"base_model.model.{last.Module}.lora_A.weight").ToSingleArray(), last.A);

        T5Config config = T5Config.Load(Path.Combine(Fixtures.Model("tiny-flan-t5"), "config.json"));
        adapter.CheckFits(new T5Modules(config), config, Lora(name));
    }

    [Fact]
    public void SaveAndReloadKeepsEveryValueAndWritesPeftsLayout()
    {
        LoraAdapter adapter = LoraAdapter.Load(Lora("lora_final"));
        adapter.Save(_dir);
        LoraAdapter again = LoraAdapter.Load(_dir);
        Assert.Equal(adapter.Config.R, again.Config.R);
        Assert.Equal(adapter.Config.LoraAlpha, again.Config.LoraAlpha);
        Assert.Equal(adapter.Config.TargetModules, again.Config.TargetModules);
        Assert.Equal(adapter.Config.BaseModelNameOrPath, again.Config.BaseModelNameOrPath);
        Assert.Equal(adapter.Modules.Select(m => m.Module), again.Modules.Select(m => m.Module));
        for (int i = 0; i < adapter.Modules.Count; i++)
        {
            Assert.Equal(adapter.Modules[i].A, again.Modules[i].A);   // float equality: bit-exact values
            Assert.Equal(adapter.Modules[i].B, again.Modules[i].B);
        }

        // PEFT's keys (no ".default"), F32, in the same order as PEFT's own file; the config names PEFT's fields.
        using SafeTensorsFile ours = SafeTensorsFile.Open(Path.Combine(_dir, LoraAdapter.WeightsFileName));
        using SafeTensorsFile peft = SafeTensorsFile.Open(Path.Combine(Lora("lora_final"), LoraAdapter.WeightsFileName));
        Assert.Equal(peft.Tensors.Select(t => t.Name).Order(), ours.Tensors.Select(t => t.Name).Order());
        Assert.All(ours.Tensors, t => Assert.Equal(DType.F32, t.DType));
        Assert.All(ours.Tensors, t => Assert.Equal(peft.Find(t.Name)!.Shape, t.Shape));
        Assert.All(ours.Tensors, t => Assert.True(ours.GetTensor(t.Name).Bytes.SequenceEqual(peft.GetTensor(t.Name).Bytes), t.Name));
        string json = File.ReadAllText(Path.Combine(_dir, LoraAdapter.ConfigFileName));
        foreach (string field in new[] { "\"peft_type\": \"LORA\"", "\"task_type\": \"SEQ_2_SEQ_LM\"", "\"r\": 4", "\"lora_alpha\": 8",
                     "\"target_modules\"", "\"bias\": \"none\"", "\"fan_in_fan_out\": false", "\"use_rslora\": false" })
            Assert.Contains(field, json);
    }

    [Fact]
    public void DefaultSuffixIsReadToo()
    {
        LoraAdapter adapter = LoraAdapter.Load(Lora("lora_final"));
        var writer = new SafeTensorsWriter();
        foreach (LoraModule m in adapter.Modules)
        {
            writer.Add($"base_model.model.{m.Module}.lora_A.default.weight", m.A, 4, m.InFeatures);
            writer.Add($"base_model.model.{m.Module}.lora_B.default.weight", m.B, m.OutFeatures, 4);
        }
        writer.Save(Path.Combine(_dir, LoraAdapter.WeightsFileName));
        File.Copy(Path.Combine(Lora("lora_final"), LoraAdapter.ConfigFileName), Path.Combine(_dir, LoraAdapter.ConfigFileName));
        LoraAdapter again = LoraAdapter.Load(_dir);
        Assert.Equal(adapter.Modules[5].B, again.Modules[5].B);
    }

    [Theory]
    [InlineData("[\"q\", \"v\"]", null, null, "encoder.block.2.layer.0.SelfAttention.q", true)]
    [InlineData("[\"q\", \"v\"]", null, null, "decoder.block.0.layer.1.EncDecAttention.k", false)]
    [InlineData("[\"EncDecAttention.q\"]", null, null, "decoder.block.0.layer.1.EncDecAttention.q", true)]
    [InlineData("[\"EncDecAttention.q\"]", null, null, "decoder.block.0.layer.0.SelfAttention.q", false)]
    [InlineData("[\"wi_0\", \"wo\"]", null, null, "encoder.block.1.layer.1.DenseReluDense.wo", true)]
    [InlineData("\"decoder.*\\\\.(q|v)\"", null, null, "decoder.block.1.layer.0.SelfAttention.v", true)]
    [InlineData("\"decoder.*\\\\.(q|v)\"", null, null, "encoder.block.1.layer.0.SelfAttention.v", false)]
    [InlineData("\"q\"", null, null, "encoder.block.1.layer.0.SelfAttention.q", false)]   // a string must match the whole path
    [InlineData("\"all-linear\"", null, null, "decoder.block.1.layer.2.DenseReluDense.wi_1", true)]
    // layers_to_transform without a pattern: PEFT takes the last "name.N." of the path, T5's sublayer index.
    [InlineData("[\"q\"]", "[1]", null, "decoder.block.0.layer.1.EncDecAttention.q", true)]
    [InlineData("[\"q\"]", "[1]", null, "decoder.block.1.layer.0.SelfAttention.q", false)]
    [InlineData("[\"q\"]", "[1]", "\"block\"", "decoder.block.1.layer.0.SelfAttention.q", true)]
    [InlineData("[\"q\"]", "1", "[\"block\"]", "encoder.block.0.layer.0.SelfAttention.q", false)]
    public void TargetModulesFollowPeftsRule(string targets, string? layers, string? pattern, string module, bool expected)
    {
        WriteAdapter(config: Config($"\"target_modules\": {targets}" + (layers is null ? "" : $", \"layers_to_transform\": {layers}") +
            (pattern is null ? "" : $", \"layers_pattern\": {pattern}")), modules: []);
        LoraConfig config = ReadConfigOnly();
        Assert.Equal(expected, config.Targets(module));
    }

    [Fact]
    public void CreateFollowsPeftsInitAndTargets()
    {
        T5Config config = T5Config.Load(Path.Combine(Fixtures.Model("tiny-flan-t5"), "config.json"));
        var modules = new T5Modules(config);
        LoraAdapter a = LoraAdapter.Create(new LoraConfig { R = 4, LoraAlpha = 8 }, modules, config, seed: 1);
        Assert.Equal(LoraAdapter.Load(Lora("lora_initial")).Modules.Select(m => m.Module), a.Modules.Select(m => m.Module));
        float bound = 1 / MathF.Sqrt(32);
        Assert.All(a.Modules, m => Assert.All(m.A, v => Assert.InRange(v, -bound, bound)));
        Assert.All(a.Modules, m => Assert.All(m.B, v => Assert.Equal(0f, v)));
        Assert.Equal(a.Modules[3].A, LoraAdapter.Create(new LoraConfig { R = 4, LoraAlpha = 8 }, modules, config, seed: 1).Modules[3].A);
        a.CheckFits(modules, config, "created");
        var e = Assert.Throws<ArgumentException>(() => LoraAdapter.Create(new LoraConfig { TargetModules = ["query"] }, modules, config, 1));
        Assert.Equal("target_modules", e.ParamName);
        // 3 + 2 blocks x (wi_0, wi_1, wo), 5 self-attention q, 2 cross-attention k.
        Assert.Equal(5 * 3 + 5 + 2, LoraAdapter.Create(new LoraConfig { TargetModules = ["wi_0", "wi_1", "wo", "SelfAttention.q", "EncDecAttention.k"] },
            modules, config, 1).Modules.Count);
    }

    // ------------------------------------------------------------------ hostile adapters

    public static IEnumerable<object[]> HostileCases => new (string Name, string Config, (string Key, int[] Shape)[] Tensors, string[] Expected)[]
    {
        ("peft_type", Config("", peftType: "PREFIX_TUNING"), Good(), ["adapter_config.json", "peft_type", "PREFIX_TUNING"]),
        ("no peft_type", "{\"r\": 4}", Good(), ["adapter_config.json", "peft_type", "missing"]),
        ("fan_in_fan_out", Config("\"fan_in_fan_out\": true"), Good(), ["adapter_config.json", "fan_in_fan_out"]),
        ("bias", Config("\"bias\": \"lora_only\""), Good(), ["adapter_config.json", "\"bias\"", "lora_only"]),
        ("modules_to_save", Config("\"modules_to_save\": [\"lm_head\"]"), Good(), ["adapter_config.json", "modules_to_save"]),
        ("use_dora", Config("\"use_dora\": true"), Good(), ["adapter_config.json", "use_dora"]),
        ("rank_pattern", Config("\"rank_pattern\": {\"q\": 8}"), Good(), ["adapter_config.json", "rank_pattern"]),
        ("task_type", Config("", taskType: "CAUSAL_LM"), Good(), ["adapter_config.json", "task_type", "CAUSAL_LM"]),
        ("r type", Config("", r: "\"four\""), Good(), ["adapter_config.json", "\"r\"", "\"four\""]),
        ("r zero", Config("", r: "0"), Good(), ["adapter_config.json", "\"r\"", "at least 1"]),
        ("regex", Config("\"target_modules\": \"(q\""), Good(), ["adapter_config.json", "target_modules", "regular expression"]),
        ("not json", "{\"peft_type\": ", Good(), ["adapter_config.json", "not valid JSON"]),
        ("missing B", Config(""), [(Key("q", "A"), [4, 32])], ["adapter_model.safetensors", "lora_A", "no", "lora_B"]),
        ("missing A", Config(""), [(Key("q", "B"), [48, 4])], ["adapter_model.safetensors", "lora_B", "no", "lora_A"]),
        ("r mismatch A", Config(""), [(Key("q", "A"), [8, 32]), (Key("q", "B"), [48, 8])], ["adapter_model.safetensors", "[8, 32]", "r 4"]),
        ("r mismatch B", Config(""), [(Key("q", "A"), [4, 32]), (Key("q", "B"), [48, 2])], ["adapter_model.safetensors", "[48, 2]", "r 4"]),
        ("3-d", Config(""), [(Key("q", "A"), [4, 32, 1]), (Key("q", "B"), [48, 4])], ["adapter_model.safetensors", "[4, 32, 1]", "2-D"]),
        ("unknown module", Config(""), [("base_model.model.encoder.block.0.layer.0.SelfAttention.qq.lora_A.weight", [4, 32]),
            ("base_model.model.encoder.block.0.layer.0.SelfAttention.qq.lora_B.weight", [48, 4])], ["adapter_model.safetensors", "SelfAttention.qq", "not a Linear"]),
        ("embedding", Config(""), [("base_model.model.shared.lora_embedding_A", [4, 32128])], ["adapter_model.safetensors", "lora_embedding_A"]),
        ("not targeted", Config(""), [(Key("k", "A"), [4, 32]), (Key("k", "B"), [48, 4])], ["adapter_model.safetensors", "SelfAttention.k", "target_modules"]),
        ("empty", Config(""), [("other", [1])], ["adapter_model.safetensors", "'other'"]),
    }.Select(c => new object[] { c.Name, c.Config, c.Tensors.Select(t => t.Key + "=" + string.Join("x", t.Shape)).ToArray(), c.Expected });

    [Theory]
    [MemberData(nameof(HostileCases))]
    public void HostileAdapterIsOneClearError(string name, string config, string[] tensors, string[] expected)
    {
        WriteAdapter(config, tensors.Select(t => (t.Split('=')[0], t.Split('=')[1].Split('x').Select(int.Parse).ToArray())).ToArray());
        var e = Assert.Throws<ModelLoadException>(() => LoraAdapter.Load(_dir));
        foreach (string part in expected) Assert.Contains(part, e.Message);
        Assert.NotNull(name);
    }

    [Fact]
    public void MissingFolderAndFilesAreNamed()
    {
        var e = Assert.Throws<ModelLoadException>(() => LoraAdapter.Load(Path.Combine(_dir, "nope")));
        Assert.Contains("does not exist", e.Message);
        e = Assert.Throws<ModelLoadException>(() => LoraAdapter.Load(_dir));
        Assert.Contains("adapter_config.json", e.Message);
        File.WriteAllText(Path.Combine(_dir, LoraAdapter.ConfigFileName), Config(""));
        e = Assert.Throws<ModelLoadException>(() => LoraAdapter.Load(_dir));
        Assert.Contains("adapter_model.safetensors", e.Message);
    }

    [Fact]
    public void AdapterForAnotherModelDoesNotFit()
    {
        T5Config config = T5Config.Load(Path.Combine(Fixtures.Model("tiny-flan-t5"), "config.json"));
        var modules = new T5Modules(config);
        // Wrong in_features, and a block the model does not have.
        WriteAdapter(Config(""), [(Key("q", "A", block: 0), [4, 64]), (Key("q", "B", block: 0), [48, 4]),
            (Key("q", "A", block: 7), [4, 32]), (Key("q", "B", block: 7), [48, 4])]);
        LoraAdapter adapter = LoraAdapter.Load(_dir);
        var e = Assert.Throws<ModelLoadException>(() => adapter.CheckFits(modules, config, _dir));
        Assert.Contains("encoder.block.0.layer.0.SelfAttention.q' is [48, 32] in the model but the adapter's B·A is [48, 64]", e.Message);
        Assert.Contains("encoder.block.7.layer.0.SelfAttention.q' is not in the model", e.Message);
        Assert.Contains("encoder.block.0.layer.0.SelfAttention.v' is selected by target_modules", e.Message);   // not adapted
        Assert.Contains("and 3 more", e.Message);                                                                   // 15 problems, 12 shown
        Assert.Contains(_dir, e.Message);
    }

    // ------------------------------------------------------------------ helpers

    private static (string, int[])[] Good() => [(Key("q", "A"), [4, 32]), (Key("q", "B"), [48, 4])];

    private static string Key(string linear, string side, int block = 0) =>
        $"base_model.model.encoder.block.{block}.layer.0.SelfAttention.{linear}.lora_{side}.weight";

    private static string Config(string extra, string peftType = "LORA", string taskType = "SEQ_2_SEQ_LM", string r = "4") =>
        $"{{\"peft_type\": \"{peftType}\", \"task_type\": \"{taskType}\", \"r\": {r}, \"lora_alpha\": 8, \"target_modules\": [\"q\", \"v\"], " +
        $"\"bias\": \"none\", \"future_field\": {{\"x\": 1}}{(extra.Length > 0 ? ", " + extra : "")}}}";

    private void WriteAdapter(string config, (string Key, int[] Shape)[] modules)
    {
        File.WriteAllText(Path.Combine(_dir, LoraAdapter.ConfigFileName), config);
        var writer = new SafeTensorsWriter();
        foreach (var (key, shape) in modules)
            writer.Add(key, new float[shape.Aggregate(1, (a, d) => a * d)], shape);
        writer.Save(Path.Combine(_dir, LoraAdapter.WeightsFileName));
    }

    private LoraConfig ReadConfigOnly() => LoraAdapter.LoadConfig(Path.Combine(_dir, LoraAdapter.ConfigFileName));
}
