// The full fine-tuning output: a HF model folder (config.json, generation_config.json, model.safetensors with HF's
// names, tokenizer files) that this engine loads back with exactly the values written; tied models store shared.weight
// only, untied ones add lm_head.weight; a missing or extra parameter is refused by name.
using ManagedT5.Loading;
using ManagedT5.Model;

namespace ManagedT5.Training.Tests;

public sealed class FullFinetuneTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("managedt5-fullft-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Every parameter of a fixture model, read by the module map's names.</summary>
    static List<TrainedTensor> Parameters(string model, out T5Config config)
    {
        string dir = TrainerFixtures.Model(model);
        config = T5Config.Load(Path.Combine(dir, "config.json"));
        using Checkpoint c = Checkpoint.Open(dir);
        return new T5Modules(config).Parameters
            .Select(p => new TrainedTensor(p.Name, p.Shape, c.GetTensor(p.Name).ToSingleArray(), new float[p.Shape.Aggregate(1, (a, d) => a * d)]))
            .ToList();
    }

    [Theory]
    [InlineData("tiny-flan-t5", false)]
    [InlineData("tiny-t5-v1_0", true)]
    public void The_folder_holds_HFs_names_and_loads_back_bit_for_bit(string model, bool tied)
    {
        List<TrainedTensor> parameters = Parameters(model, out T5Config config);
        foreach (TrainedTensor p in parameters) for (int i = 0; i < p.Value.Length; i += 7) p.Value[i] += 0.001f * (i % 3);   // "trained"
        string output = Path.Combine(_dir, model);
        HfModelFolder.Write(output, TrainerFixtures.Model(model), config, parameters);

        foreach (string f in new[] { "config.json", "generation_config.json", "model.safetensors", "spiece.model" })
            Assert.True(File.Exists(Path.Combine(output, f)), f);
        using (var file = SafeTensorsFile.Open(Path.Combine(output, "model.safetensors")))
        {
            Assert.Equal("pt", file.Metadata["format"]);
            var names = file.Tensors.Select(t => t.Name).ToHashSet();
            Assert.Contains("shared.weight", names);
            Assert.Equal(!tied, names.Contains("lm_head.weight"));
            Assert.DoesNotContain("encoder.embed_tokens.weight", names);
            Assert.DoesNotContain("decoder.embed_tokens.weight", names);
            Assert.Equal(parameters.Count, names.Count);
            foreach (TrainedTensor p in parameters)
                Assert.Equal(p.Value, file.GetTensor(p.Name).ToSingleArray());
            Assert.All(file.Tensors, t => Assert.Equal(ManagedT5.Kernels.DType.F32, t.DType));
        }
        Assert.Equal(config with { TorchDType = "float32" }, T5Config.Load(Path.Combine(output, "config.json")) with { Architectures = config.Architectures });
        // The engine loads it (every tensor bound by the module map) and the tokenizer came along.
        using var t5 = T5TextGenerator.Load(output, new T5LoadOptions { Device = "reference" });
        Assert.Equal([13959, 1566, 12, 5093, 10, 8774, 296, 1], t5.Tokenizer.Encode("translate English to Spanish: Hello world"));
    }

    [Fact]
    public void A_missing_or_extra_parameter_is_refused_by_name()
    {
        List<TrainedTensor> parameters = Parameters("tiny-t5-v1_0", out T5Config config);
        var e = Assert.Throws<ArgumentException>(() => HfModelFolder.Write(_dir, TrainerFixtures.Model("tiny-t5-v1_0"), config, parameters.Skip(1).ToList()));
        Assert.Contains("shared.weight", e.Message);
        var lmHead = new TrainedTensor("lm_head.weight", parameters[0].Shape, parameters[0].Value, parameters[0].Grad);
        e = Assert.Throws<ArgumentException>(() => HfModelFolder.Write(_dir, TrainerFixtures.Model("tiny-t5-v1_0"), config, [.. parameters, lmHead]));
        Assert.Contains("lm_head.weight", e.Message);
        Assert.Contains("tied", e.Message);
    }
}
