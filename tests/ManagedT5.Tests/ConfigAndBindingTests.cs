// config.json parsing (HF defaults and derivations, errors naming the key) and weight binding (missing tensors,
// shape mismatches, tied copies, extra tensors).
using ManagedT5.Kernels;
using ManagedT5.Kernels.Reference;
using ManagedT5.Loading;
using ManagedT5.Model;

namespace ManagedT5.Tests;

public sealed class ConfigTests
{
    [Theory]
    [InlineData("flan-t5-small.json", 512, 64, 1024, 8, 8, 6)]
    [InlineData("flan-t5-base.json", 768, 64, 2048, 12, 12, 12)]
    [InlineData("flan-t5-large.json", 1024, 64, 2816, 24, 24, 16)]
    [InlineData("flan-t5-xl.json", 2048, 64, 5120, 24, 24, 32)]
    [InlineData("flan-t5-xxl.json", 4096, 64, 10240, 24, 24, 64)]
    public void ReadsRealFlanConfigs(string file, int dModel, int dKv, int dFf, int layers, int decoderLayers, int heads)
    {
        T5Config c = T5Config.Load(Path.Combine(Fixtures.Configs, file));
        Assert.Equal((dModel, dKv, dFf, layers, decoderLayers, heads), (c.DModel, c.DKv, c.DFf, c.NumLayers, c.NumDecoderLayers, c.NumHeads));
        Assert.Equal(ActivationKind.GeluNew, c.DenseActivation);
        Assert.True(c.IsGatedAct);
        Assert.False(c.TieWordEmbeddings);
        Assert.Equal(32128, c.VocabSize);
        Assert.Equal((32, 128), (c.RelativeAttentionNumBuckets, c.RelativeAttentionMaxDistance));
    }

    [Fact]
    public void FixtureConfigsDeriveActivationAndTying()
    {
        T5Config v10 = T5Config.Load(Path.Combine(Fixtures.Model("tiny-t5-v1_0"), "config.json"));
        Assert.Equal((ActivationKind.Relu, false, true), (v10.DenseActivation, v10.IsGatedAct, v10.TieWordEmbeddings));
        T5Config sharded = T5Config.Load(Path.Combine(Fixtures.Model("tiny-flan-t5-bf16-sharded"), "config.json"));
        Assert.Equal((ActivationKind.GeluNew, true), (sharded.DenseActivation, sharded.IsGatedAct)); // from feed_forward_proj alone
    }

    [Theory]
    [InlineData("[\"T5EncoderModel\"]", true)]
    [InlineData("[\"T5ForConditionalGeneration\"]", false)]
    [InlineData("[\"T5EncoderModel\", \"T5ForConditionalGeneration\"]", false)]
    [InlineData("null", false)]
    public void ArchitecturesSayWhetherTheCheckpointIsEncoderOnly(string architectures, bool encoderOnly)
    {
        T5Config c = T5Config.Parse("{" + Minimal + $", \"architectures\": {architectures}}}");
        Assert.Equal(encoderOnly, c.IsEncoderOnly);
    }

    private const string Minimal = "\"d_model\": 8, \"d_kv\": 2, \"d_ff\": 16, \"num_layers\": 2, \"num_heads\": 4, \"vocab_size\": 100";

    [Fact]
    public void DefaultsFollowHuggingFace()
    {
        T5Config c = T5Config.Parse("{" + Minimal + "}");
        Assert.Equal(2, c.NumDecoderLayers);          // num_decoder_layers defaults to num_layers
        Assert.True(c.TieWordEmbeddings);              // tie_word_embeddings defaults to true
        Assert.Equal(ActivationKind.Relu, c.DenseActivation);
        Assert.False(c.IsGatedAct);
        Assert.Equal((0, 1, 0), (c.PadTokenId, c.EosTokenId, c.DecoderStartTokenId));
        Assert.Equal(1e-6f, c.LayerNormEpsilon);
    }

    [Theory]
    [InlineData("gated-silu", ActivationKind.Silu, true)]
    [InlineData("gated-gelu", ActivationKind.GeluNew, true)]
    [InlineData("gated-relu", ActivationKind.Relu, true)]
    [InlineData("gelu", ActivationKind.Gelu, false)]
    [InlineData("relu", ActivationKind.Relu, false)]
    public void FeedForwardProjDerivesActivation(string proj, ActivationKind act, bool gated)
    {
        T5Config c = T5Config.Parse("{" + Minimal + $", \"feed_forward_proj\": \"{proj}\"}}");
        Assert.Equal((act, gated), (c.DenseActivation, c.IsGatedAct));
    }

    [Fact]
    public void DenseActFnAndIsGatedActWinOverFeedForwardProj()
    {
        T5Config c = T5Config.Parse("{" + Minimal + ", \"feed_forward_proj\": \"relu\", \"dense_act_fn\": \"silu\", \"is_gated_act\": true}");
        Assert.Equal((ActivationKind.Silu, true), (c.DenseActivation, c.IsGatedAct));
    }

    [Theory]
    [InlineData("""{"d_kv": 2, "d_ff": 16, "num_layers": 2, "num_heads": 4, "vocab_size": 100}""", "d_model")]
    [InlineData("""{"d_model": "8", "d_kv": 2, "d_ff": 16, "num_layers": 2, "num_heads": 4, "vocab_size": 100}""", "d_model")]
    [InlineData("""{"d_model": 0, "d_kv": 2, "d_ff": 16, "num_layers": 2, "num_heads": 4, "vocab_size": 100}""", "d_model")]
    [InlineData("""{"d_model": 8, "d_kv": 2, "d_ff": 16, "num_layers": 2, "num_heads": 4, "vocab_size": 100, "feed_forward_proj": "gated-gelu-x"}""", "feed_forward_proj")]
    [InlineData("""{"d_model": 8, "d_kv": 2, "d_ff": 16, "num_layers": 2, "num_heads": 4, "vocab_size": 100, "dense_act_fn": "mish"}""", "dense_act_fn")]
    [InlineData("""{"d_model": 8, "d_kv": 2, "d_ff": 16, "num_layers": 2, "num_heads": 4, "vocab_size": 100, "tie_word_embeddings": "yes"}""", "tie_word_embeddings")]
    [InlineData("""{"d_model": 8, "d_kv": 2, "d_ff": 16, "num_layers": 2, "num_heads": 4, "vocab_size": 100, "layer_norm_epsilon": -1}""", "layer_norm_epsilon")]
    [InlineData("""{"d_model": 8, "d_kv": 2, "d_ff": 16, "num_layers": 2, "num_heads": 4, "vocab_size": 100, "model_type": "bart"}""", "model_type")]
    [InlineData("""{"d_model": 8, "d_kv": 2, "d_ff": 16, "num_layers": 2, "num_heads": 4, "vocab_size": 100, "eos_token_id": 100}""", "eos_token_id")]
    [InlineData("""{"d_model": 8, "d_kv": 2, "d_ff": 16, "num_layers": 2, "num_heads": 4, "vocab_size": 100, "architectures": "T5EncoderModel"}""", "architectures")]
    public void InvalidValuesNameTheKey(string json, string key)
    {
        var e = Assert.Throws<ModelLoadException>(() => T5Config.Parse(json));
        Assert.Contains(key, e.Message);
    }
}

public sealed class BindingTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mt5-bind-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Copies a fixture model's config, and its weights passed through <paramref name="edit"/>.</summary>
    private string CopyModel(string name, Func<string, float[], int[], (string, float[], int[])?> edit, params (string, float[], int[])[] extra)
    {
        string src = Fixtures.Model(name);
        File.Copy(Path.Combine(src, "config.json"), Path.Combine(_dir, "config.json"), overwrite: true);
        var writer = new SafeTensorsWriter();
        using (var checkpoint = Checkpoint.Open(src))
            foreach (string n in checkpoint.Names.Order())
            {
                SafeTensorInfo info = checkpoint.Find(n)!;
                var result = edit(n, checkpoint.GetTensor(n).ToSingleArray(), info.Shape);
                if (result is var (rn, rv, rs)) writer.Add(rn, rv, rs);
            }
        foreach (var (n, v, s) in extra) writer.Add(n, v, s);
        writer.Save(Path.Combine(_dir, "model.safetensors"));
        return _dir;
    }

    [Fact]
    public void MissingTensorsAreAllListed()
    {
        string dir = CopyModel("tiny-flan-t5", (n, v, s) => n.Contains("wi_1") || n == "lm_head.weight" ? null : (n, v, s));
        var e = Assert.Throws<ModelLoadException>(() => T5Model.Load(dir, new ReferenceBackend()));
        Assert.Contains("lm_head.weight", e.Message);
        for (int i = 0; i < 3; i++) Assert.Contains($"encoder.block.{i}.layer.1.DenseReluDense.wi_1.weight", e.Message);
        for (int i = 0; i < 2; i++) Assert.Contains($"decoder.block.{i}.layer.2.DenseReluDense.wi_1.weight", e.Message);
    }

    [Fact]
    public void ShapeMismatchNamesTensorAndBothShapes()
    {
        string dir = CopyModel("tiny-flan-t5", (n, v, s) => n == "encoder.block.1.layer.0.SelfAttention.q.weight" ? (n, v[..(v.Length / 2)], [s[0] / 2, s[1]]) : (n, v, s));
        var e = Assert.Throws<ModelLoadException>(() => T5Model.Load(dir, new ReferenceBackend()));
        Assert.Contains("encoder.block.1.layer.0.SelfAttention.q.weight", e.Message);
        Assert.Contains("[24, 32]", e.Message);
        Assert.Contains("[48, 32]", e.Message);
    }

    [Fact]
    public void TiedCopiesAreAcceptedAndExtrasReported()
    {
        float[]? shared = null;
        int[]? shape = null;
        using (var c = Checkpoint.Open(Fixtures.Model("tiny-t5-v1_0")))
        {
            shared = c.GetTensor("shared.weight").ToSingleArray();
            shape = c.Find("shared.weight")!.Shape;
        }
        string dir = CopyModel("tiny-t5-v1_0", (n, v, s) => (n, v, s),
            ("encoder.embed_tokens.weight", shared, shape), ("decoder.embed_tokens.weight", shared, shape), ("something.else", [1f, 2f], [2]));
        using T5Model model = T5Model.Load(dir, new ReferenceBackend());
        Assert.Equal(["something.else"], model.UnexpectedTensors);
    }

    [Fact]
    public void EmbedTokensAloneServesAsShared()
    {
        string dir = CopyModel("tiny-t5-v1_0", (n, v, s) => n == "shared.weight" ? ("encoder.embed_tokens.weight", v, s) : (n, v, s));
        using T5Model model = T5Model.Load(dir, new ReferenceBackend());
        Assert.Empty(model.UnexpectedTensors);
    }

    [Fact]
    public void FolderWithoutWeightsSaysWhatToDownload()
    {
        File.Copy(Path.Combine(Fixtures.Model("tiny-flan-t5"), "config.json"), Path.Combine(_dir, "config.json"));
        var e = Assert.Throws<ModelLoadException>(() => T5Model.Load(_dir, new ReferenceBackend()));
        Assert.Contains("model.safetensors", e.Message);
    }

    [Fact]
    public void MissingShardIsNamed()
    {
        string src = Fixtures.Model("tiny-flan-t5-bf16-sharded");
        foreach (string f in new[] { "config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors" })
            File.Copy(Path.Combine(src, f), Path.Combine(_dir, f));
        var e = Assert.Throws<ModelLoadException>(() => T5Model.Load(_dir, new ReferenceBackend()));
        Assert.Contains("model-00002-of-00002.safetensors", e.Message);
    }
}
