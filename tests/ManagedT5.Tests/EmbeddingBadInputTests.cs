// Bad sentence-transformers folders and bad calls to T5Embedder: each gives one error naming the file and field (or
// the option) and saying what to do.
using ManagedT5.Embeddings;

namespace ManagedT5.Tests;

public sealed class EmbeddingBadInputTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("mt5-embed-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A copy of tiny-sentence-t5 (spiece.model as its tokenizer) to break.</summary>
    private string Copy()
    {
        string src = Fixtures.Model(EmbeddingTests.Model);
        foreach (string f in new[] { "config.json", "model.safetensors", "spiece.model", "modules.json", "sentence_bert_config.json" })
            File.Copy(Path.Combine(src, f), Path.Combine(_dir, f));
        foreach (string sub in new[] { "1_Pooling", "2_Dense", "3_Normalize" })
        {
            Directory.CreateDirectory(Path.Combine(_dir, sub));
            foreach (string f in Directory.GetFiles(Path.Combine(src, sub))) File.Copy(f, Path.Combine(_dir, sub, Path.GetFileName(f)));
        }
        return _dir;
    }

    private string In(params string[] parts) => Path.Combine([_dir, .. parts]);

    private ModelLoadException LoadFails() => Assert.Throws<ModelLoadException>(() => T5Embedder.Load(_dir));

    [Fact]
    public void TheCopyLoads()
    {
        using T5Embedder embedder = T5Embedder.Load(Copy());
        Assert.Equal(24, embedder.Dimension);
    }

    [Fact]
    public void ModulesJsonNamingAMissingFolder()
    {
        Copy();
        Directory.Delete(In("2_Dense"), recursive: true);
        ModelLoadException e = LoadFails();
        Assert.Contains("modules.json", e.Message);
        Assert.Contains("\"2_Dense\"", e.Message);
        Assert.Contains("does not exist", e.Message);
        Assert.Contains("Download the whole model repository", e.Message);
    }

    [Fact]
    public void ANormalizeFolderMayBeAbsentBecauseItHoldsNoFiles()
    {
        Copy();
        Directory.Delete(In("3_Normalize"), recursive: true);
        using T5Embedder embedder = T5Embedder.Load(_dir);
        Assert.True(embedder.Normalizes);
    }

    [Fact]
    public void ModulesJsonWithAnUnknownModuleType()
    {
        Copy();
        File.WriteAllText(In("modules.json"), File.ReadAllText(In("modules.json"))
            .Replace("sentence_transformers.models.Dense", "sentence_transformers.models.LayerNorm"));
        ModelLoadException e = LoadFails();
        Assert.Contains("modules.json", e.Message);
        Assert.Contains("entry 2", e.Message);
        Assert.Contains("\"sentence_transformers.models.LayerNorm\"", e.Message);
        Assert.Contains("sentence_transformers.models.Dense", e.Message);   // the supported list
    }

    [Theory]
    [InlineData("../outside")]
    [InlineData("/etc")]
    public void ModulesJsonPathsStayInsideTheFolder(string path)
    {
        Copy();
        File.WriteAllText(In("modules.json"), File.ReadAllText(In("modules.json")).Replace("\"2_Dense\"", $"\"{path}\""));
        ModelLoadException e = LoadFails();
        Assert.Contains("not a folder inside the model folder", e.Message);
    }

    [Theory]
    [InlineData("[]", "JSON list of modules")]
    [InlineData("{\"a\": 1}", "JSON list of modules")]
    [InlineData("[{\"idx\": 0, \"path\": \"1_Pooling\", \"type\": \"sentence_transformers.models.Pooling\"}]", "starts with sentence_transformers.models.Transformer")]
    [InlineData("[{\"idx\": 0, \"path\": \"\", \"type\": \"sentence_transformers.models.Transformer\"}]", "no sentence_transformers.models.Pooling")]
    [InlineData("[{\"idx\": 0, \"path\": \"\"}]", "no string \"type\"")]
    [InlineData("not json", "is not valid JSON")]
    public void MalformedModulesJson(string json, string expected)
    {
        Copy();
        File.WriteAllText(In("modules.json"), json);
        ModelLoadException e = LoadFails();
        Assert.Contains("modules.json", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void DenseWhoseInFeaturesDoesNotMatchDModel()
    {
        Copy();
        File.WriteAllText(In("2_Dense", "config.json"), File.ReadAllText(In("2_Dense", "config.json")).Replace("\"in_features\": 32", "\"in_features\": 768"));
        ModelLoadException e = LoadFails();
        Assert.Contains(Path.Combine("2_Dense", "config.json"), e.Message);
        Assert.Contains("in_features is 768", e.Message);
        Assert.Contains("32 values", e.Message);
    }

    [Fact]
    public void DenseStoredAsPytorchBinSaysToConvert()
    {
        Copy();
        File.Move(In("2_Dense", "model.safetensors"), In("2_Dense", "pytorch_model.bin"));
        ModelLoadException e = LoadFails();
        Assert.Contains("pytorch_model.bin", e.Message);
        Assert.Contains("safe_serialization=True", e.Message);
    }

    [Fact]
    public void DenseThatPromisesABiasItDoesNotHave()
    {
        Copy();
        File.WriteAllText(In("2_Dense", "config.json"), File.ReadAllText(In("2_Dense", "config.json")).Replace("\"bias\": false", "\"bias\": true"));
        ModelLoadException e = LoadFails();
        Assert.Contains("'linear.bias'", e.Message);
        Assert.Contains("says bias: true", e.Message);
    }

    [Fact]
    public void DenseWithAnUnknownActivation()
    {
        Copy();
        File.WriteAllText(In("2_Dense", "config.json"), File.ReadAllText(In("2_Dense", "config.json"))
            .Replace("torch.nn.modules.linear.Identity", "torch.nn.modules.activation.GELU"));
        ModelLoadException e = LoadFails();
        Assert.Contains("activation_function \"torch.nn.modules.activation.GELU\"", e.Message);
    }

    [Fact]
    public void PoolingForAnotherWidth()
    {
        Copy();
        File.WriteAllText(In("1_Pooling", "config.json"), File.ReadAllText(In("1_Pooling", "config.json")).Replace("32", "768"));
        ModelLoadException e = LoadFails();
        Assert.Contains(Path.Combine("1_Pooling", "config.json"), e.Message);
        Assert.Contains("word_embedding_dimension is 768", e.Message);
    }

    [Fact]
    public void PoolingWithNoModeOrAnUnknownMode()
    {
        Copy();
        File.WriteAllText(In("1_Pooling", "config.json"), "{\"word_embedding_dimension\": 32, \"pooling_mode_mean_tokens\": false}");
        Assert.Contains("switches no pooling on", LoadFails().Message);
        File.WriteAllText(In("1_Pooling", "config.json"), "{\"word_embedding_dimension\": 32, \"pooling_mode_median_tokens\": true}");
        Assert.Contains("pooling_mode_median_tokens is not a pooling", LoadFails().Message);
    }

    [Fact]
    public void BadMaxSeqLengthInSentenceBertConfig()
    {
        Copy();
        File.WriteAllText(In("sentence_bert_config.json"), "{\"max_seq_length\": -3}");
        ModelLoadException e = LoadFails();
        Assert.Contains("sentence_bert_config.json", e.Message);
        Assert.Contains("max_seq_length is -3", e.Message);
    }

    [Fact]
    public void BadCallsNameTheOption()
    {
        using T5Embedder embedder = T5Embedder.Load(Fixtures.Model(EmbeddingTests.Model));
        var empty = Assert.Throws<ArgumentException>(() => embedder.Embed([]));
        Assert.Equal("texts", empty.ParamName);
        Assert.StartsWith("texts: the list is empty", empty.Message);
        var nul = Assert.Throws<ArgumentException>(() => embedder.Embed(["a", null!]));
        Assert.Contains("text 1 is null", nul.Message);

        var batch = Assert.Throws<ArgumentException>(() => T5Embedder.Load(Fixtures.Model(EmbeddingTests.Model), new T5EmbedderOptions { BatchSize = 0 }));
        Assert.Equal("batch_size", batch.ParamName);
        var max = Assert.Throws<ArgumentException>(() => T5Embedder.Load(Fixtures.Model(EmbeddingTests.Model), new T5EmbedderOptions { MaxSeqLength = 0 }));
        Assert.Equal("max_seq_length", max.ParamName);
        Assert.Throws<ModelLoadException>(() => T5Embedder.Load(Path.Combine(Fixtures.Model(EmbeddingTests.Model), "modules.json")));
    }
}
