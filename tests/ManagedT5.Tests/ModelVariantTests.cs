// Model variants as switches of the module tree (T5Modules): the tree names every tensor of each fixture checkpoint;
// encoder-only checkpoints load and refuse to decode; a per-layer relative_attention_bias (umT5 style) is a config switch.
using ManagedT5.Kernels;
using ManagedT5.Kernels.Cpu;
using ManagedT5.Kernels.Reference;
using ManagedT5.Loading;
using ManagedT5.Model;

namespace ManagedT5.Tests;

public sealed class ModelVariantTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mt5-variant-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string> AllFixtureModels => [.. Fixtures.ModelNames, ForwardParityTests.EncoderOnlyModel];

    [Theory]
    [MemberData(nameof(AllFixtureModels))]
    public void ModuleTreeNamesEveryTensorOfTheCheckpointWithItsShape(string modelName)
    {
        T5Config config = T5Config.Load(Path.Combine(Fixtures.Model(modelName), "config.json"));
        var modules = new T5Modules(config);
        using var checkpoint = Checkpoint.Open(Fixtures.Model(modelName));
        Assert.Equal(checkpoint.Names.Order(), modules.Parameters.Select(p => p.Name).Order());
        foreach (T5Parameter p in modules.Parameters) Assert.Equal(checkpoint.Find(p.Name)!.Shape, p.Shape);
    }

    [Fact]
    public void EncoderOnlyModelRefusesToDecodeWithOneClearError()
    {
        using T5Model model = T5Model.Load(Fixtures.Model(ForwardParityTests.EncoderOnlyModel), new ReferenceBackend(), ownsBackend: true);
        Assert.True(model.Config.IsEncoderOnly);
        Assert.Null(model.Modules.Decoder);
        using EncoderOutput encoded = model.Encode([37, 1], [1, 1], 1);
        var e = Assert.Throws<NotSupportedException>(() => model.StartDecoder(encoded, 4));
        Assert.Contains("encoder-only", e.Message);
        Assert.Contains("T5EncoderModel", e.Message);
    }

    [Fact]
    public void EncoderOnlyWeightsUnderAFullConfigSayWhatIsWrong()
    {
        string src = Fixtures.Model(ForwardParityTests.EncoderOnlyModel);
        File.Copy(Path.Combine(src, "model.safetensors"), Path.Combine(_dir, "model.safetensors"));
        File.WriteAllText(Path.Combine(_dir, "config.json"),
            File.ReadAllText(Path.Combine(src, "config.json")).Replace("\"T5EncoderModel\"", "\"T5ForConditionalGeneration\""));
        var e = Assert.Throws<ModelLoadException>(() => T5Model.Load(_dir, new ReferenceBackend()));
        Assert.Contains("num_decoder_layers", e.Message);
        Assert.Contains("\"architectures\" should say [\"T5EncoderModel\"]", e.Message);
    }

    /// <summary>The encoder-only fixture with the T5 tokenizer beside it, as the CLI loads a folder.</summary>
    private string EncoderOnlyFolderWithTokenizer()
    {
        string src = Fixtures.Model(ForwardParityTests.EncoderOnlyModel);
        foreach (string f in new[] { "config.json", "model.safetensors" }) File.Copy(Path.Combine(src, f), Path.Combine(_dir, f));
        File.Copy(Path.Combine(Fixtures.Root, "tokenizer", "spiece.model"), Path.Combine(_dir, "spiece.model"));
        return _dir;
    }

    [Fact]
    public void TraceOfAnEncoderOnlyModelHoldsTheEncoderAndGenerateSaysWhyNot()
    {
        string dir = EncoderOnlyFolderWithTokenizer(), path = Path.Combine(_dir, "trace.safetensors");
        var (code, _, error) = CliTests.Run("trace", "--model", dir, "--out", path, "Hello world");
        Assert.True(code == 0, error);
        using (var file = SafeTensorsFile.Open(path))
        {
            foreach (string name in new[] { "input_ids", "encoder.embed_tokens", "encoder.block.0.layer.0.SelfAttention.position_bias",
                         "encoder.block.2.layer.0.SelfAttention.scores", "encoder.final_layer_norm" })
                Assert.True(file.Contains(name), $"trace lacks {name}");
            Assert.DoesNotContain(file.Tensors, t => t.Name.StartsWith("decoder") || t.Name == "lm_head");
        }

        (code, _, error) = CliTests.Run("generate", "--model", dir, "Hello world");
        Assert.NotEqual(0, code);
        Assert.Contains("encoder-only", error);
        Assert.Single(error.Trim().Split('\n'));
    }

    /// <summary>tiny-flan-t5's weights with block 0's relative_attention_bias copied into every layer of both stacks
    /// (scaled by <paramref name="scaleLater"/> in the layers after block 0), as a umT5 checkpoint stores them.</summary>
    private string PerLayerBiasCheckpoint(float scaleLater = 1f)
    {
        string src = Fixtures.Model("tiny-flan-t5");
        File.Copy(Path.Combine(src, "config.json"), Path.Combine(_dir, "config.json"), overwrite: true);
        T5Config config = T5Config.Load(Path.Combine(src, "config.json"));
        var writer = new SafeTensorsWriter();
        using (var checkpoint = Checkpoint.Open(src))
        {
            foreach (string n in checkpoint.Names) writer.Add(n, checkpoint.GetTensor(n).ToSingleArray(), checkpoint.Find(n)!.Shape);
            foreach (var (stack, layers) in new[] { ("encoder", config.NumLayers), ("decoder", config.NumDecoderLayers) })
            {
                string block0 = $"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight";
                float[] table = checkpoint.GetTensor(block0).ToSingleArray().Select(v => v * scaleLater).ToArray();
                for (int i = 1; i < layers; i++)
                    writer.Add($"{stack}.block.{i}.layer.0.SelfAttention.relative_attention_bias.weight", table, checkpoint.Find(block0)!.Shape);
            }
        }
        writer.Save(Path.Combine(_dir, "model.safetensors"));
        return _dir;
    }

    /// <summary>The encoder output, the logits of a teacher-forced decode over the fixture's reference batch, and
    /// the names of the position biases the forward pass computed.</summary>
    private static (float[] Encoded, float[] Logits, List<string> Biases) Run(T5Model model)
    {
        using var file = SafeTensorsFile.Open(Path.Combine(Fixtures.Model("tiny-flan-t5"), "reference.safetensors"));
        int[] I(string name) => file.GetTensor(name).ToInt64Array().Select(v => (int)v).ToArray();
        int[] ids = I("batch.input_ids"), mask = I("batch.attention_mask"), decoderIds = I("batch.decoder_input_ids");
        int batch = file.Find("batch.input_ids")!.Shape[0], steps = file.Find("batch.decoder_input_ids")!.Shape[1];
        var recorder = new Recorder(model.Backend);
        using EncoderOutput encoded = model.Encode(ids, mask, batch, recorder);
        using DecoderState state = model.StartDecoder(encoded, steps, maxTokensPerCall: steps);
        model.Decode(state, decoderIds, steps, recorder);
        var hidden = new float[ids.Length * model.Config.DModel];
        var logits = new float[batch * steps * model.Config.VocabSize];
        model.Backend.Download(encoded.Hidden, hidden);
        model.Backend.Download(state.Logits, logits);
        return (hidden, logits, recorder.Tensors.Keys.Where(k => k.EndsWith(".position_bias")).Order().ToList());
    }

    [Fact]
    public void PerLayerRelativeBiasIsAConfigSwitchAndEqualsTheSharedBiasModel()
    {
        using var shared = T5Model.Load(Fixtures.Model("tiny-flan-t5"), new CpuBackend(), ownsBackend: true);
        string dir = PerLayerBiasCheckpoint();
        T5Config config = T5Config.Load(Path.Combine(dir, "config.json")) with { RelativeAttentionBiasPerLayer = true };
        using var perLayer = T5Model.FromCheckpoint(config, Checkpoint.Open(dir), new CpuBackend(), ownsBackend: true);
        Assert.Empty(perLayer.UnexpectedTensors);   // every layer's table is bound, none left over

        var (sharedEncoded, sharedLogits, sharedBiases) = Run(shared);
        var (encoded, logits, biases) = Run(perLayer);
        Assert.Equal(["decoder.block.0.layer.0.SelfAttention.position_bias", "encoder.block.0.layer.0.SelfAttention.position_bias"], sharedBiases);
        Assert.Equal(config.NumLayers + config.NumDecoderLayers, biases.Count);   // each layer made its own bias
        Assert.Equal(sharedEncoded, encoded);   // same tables, same arithmetic: bit-identical
        Assert.Equal(sharedLogits, logits);
    }

    [Fact]
    public void PerLayerTablesAreEachUsed()
    {
        using var shared = T5Model.Load(Fixtures.Model("tiny-flan-t5"), new CpuBackend(), ownsBackend: true);
        string dir = PerLayerBiasCheckpoint(scaleLater: 2f);
        T5Config config = T5Config.Load(Path.Combine(dir, "config.json")) with { RelativeAttentionBiasPerLayer = true };
        using var perLayer = T5Model.FromCheckpoint(config, Checkpoint.Open(dir), new CpuBackend(), ownsBackend: true);
        var (sharedEncoded, sharedLogits, _) = Run(shared);
        var (encoded, logits, _) = Run(perLayer);
        Assert.True(Errors.RelativeError(sharedEncoded, encoded) > 1e-3, "the later layers' own tables were not used in the encoder");
        Assert.True(Errors.RelativeError(sharedLogits, logits) > 1e-3, "the later layers' own tables were not used");
    }

    [Fact]
    public void PerLayerTablesAreReportedWhenTheSwitchIsOffAndListedWhenMissing()
    {
        string dir = PerLayerBiasCheckpoint();
        using (var plain = T5Model.Load(dir, new ReferenceBackend(), ownsBackend: true))
            Assert.Equal(5 - 2, plain.UnexpectedTensors.Count(n => n.EndsWith("relative_attention_bias.weight")));

        string src = Fixtures.Model("tiny-flan-t5");
        T5Config config = T5Config.Load(Path.Combine(src, "config.json")) with { RelativeAttentionBiasPerLayer = true };
        using var checkpoint = Checkpoint.Open(src);
        var e = Assert.Throws<ModelLoadException>(() => T5Model.FromCheckpoint(config, checkpoint, new ReferenceBackend()));
        Assert.Contains("encoder.block.2.layer.0.SelfAttention.relative_attention_bias.weight", e.Message);
        Assert.Contains("decoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight", e.Message);
    }
}
