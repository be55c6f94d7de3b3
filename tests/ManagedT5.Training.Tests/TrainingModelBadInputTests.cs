// Bad input to the trainable model and its batches: one clear exception naming the option, tensor or field.
using ManagedT5.Adapters;

namespace ManagedT5.Training.Tests;

public sealed class TrainingModelBadInputTests
{
    [Theory]
    [InlineData(1.0)]
    [InlineData(-0.1)]
    [InlineData(double.NaN)]
    public void DropoutOutsideZeroToOneIsRefusedByName(double rate)
    {
        var error = Assert.Throws<ArgumentException>(() => T5TrainingModel.Load(TrainingModelFixtures.Model("tiny-flan-t5"), new TrainingModelOptions { DropoutRate = rate }));
        Assert.Equal("dropout_rate", error.ParamName);
        Assert.StartsWith("dropout_rate: ", error.Message);
    }

    [Fact]
    public void MissingAndMisshapenTensorsAreNamed()
    {
        string dir = Path.Combine(Path.GetTempPath(), "managedt5-tcore-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            File.Copy(Path.Combine(TrainingModelFixtures.Model("tiny-flan-t5"), "config.json"), Path.Combine(dir, "config.json"));
            var writer = new ManagedT5.Loading.SafeTensorsWriter();
            writer.Add("shared.weight", new float[32128 * 31], 32128, 31);
            writer.Save(Path.Combine(dir, "model.safetensors"));
            var error = Assert.Throws<ModelLoadException>(() => T5TrainingModel.Load(dir));
            Assert.Contains("shared.weight", error.Message);
            Assert.Contains("[32128, 32]", error.Message);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void BatchesWithoutTargetsOrWithForeignIdsAreRefused()
    {
        using T5TrainingModel model = T5TrainingModel.Load(TrainingModelFixtures.Model("tiny-t5-v1_0"), new TrainingModelOptions { Threads = 1 });
        TrainingBatch empty = TrainingBatch.FromPadded(1, 2, 2, [5, 1], [1, 1], [-100, -100], 0);
        Assert.Equal("labels", Assert.Throws<ArgumentException>(() => model.ForwardBackward(empty)).ParamName);
        TrainingBatch foreign = TrainingBatch.FromIds([[40000, 1]], [[5, 1]], 0);
        Assert.Equal("input_ids", Assert.Throws<ArgumentException>(() => model.ForwardBackward(foreign)).ParamName);
        Assert.Equal("labels", Assert.Throws<ArgumentException>(() => TrainingBatch.FromIds([[5, 1]], [[5, 1], [6, 1]], 0)).ParamName);
        Assert.Equal("labels", Assert.Throws<ArgumentException>(() => TrainingBatch.FromIds([[5, 1]], [[-3, 1]], 0)).ParamName);
        Assert.Equal("attention_mask", Assert.Throws<ArgumentException>(() => TrainingBatch.FromPadded(1, 2, 2, [5, 1], [0, 0], [5, 1], 0)).ParamName);
        Assert.Equal("inputs", Assert.Throws<ArgumentException>(() => TrainingBatch.FromIds([[5, 1], []], [[5, 1], [6, 1]], 0)).ParamName);
        Assert.Throws<ArgumentException>(() => model.Logits(TrainingBatch.FromIds([[5, 1]], [[5, 1]], 0), new float[10]));
    }

    [Fact]
    public void AdapterThatDoesNotFitIsNamed()
    {
        using T5TrainingModel model = T5TrainingModel.Load(TrainingModelFixtures.Model("tiny-t5-v1_0"), new TrainingModelOptions { Threads = 1 });
        // tiny-flan-t5's adapter has 2 decoder blocks' modules; tiny-t5-v1_0 has 3 decoder blocks, so some are missing.
        LoraAdapter other = LoraAdapter.Create(new LoraConfig { R = 4, LoraAlpha = 8, TargetModules = ["q", "v"] },
            new ManagedT5.Model.T5Modules(model.Config with { NumDecoderLayers = 2 }), model.Config with { NumDecoderLayers = 2 }, seed: 1);
        var error = Assert.Throws<ModelLoadException>(() => model.AttachLora(other));
        Assert.Contains("decoder.block.2", error.Message);
        Assert.Equal("lora_dropout", Assert.Throws<ArgumentException>(() => model.AttachLora(
            new LoraAdapter(other.Config with { LoraDropout = 1.0 }, other.Modules))).ParamName);
    }

    [Fact]
    public void TrainingBatchFollowsHfPaddingAndShift()
    {
        TrainingBatch batch = TrainingBatch.FromIds([[7, 8, 1], [9, 1]], [[4, 1], [5, 6, 1]], decoderStartTokenId: 0);
        Assert.Equal([7, 8, 1, 9, 1, 0], batch.InputIds);
        Assert.Equal([1, 1, 1, 1, 1, 0], batch.AttentionMask);
        Assert.Equal([4, 1, -100, 5, 6, 1], batch.Labels);
        Assert.Equal([0, 4, 1, 0, 5, 6], batch.DecoderInputIds);
        Assert.Equal(5, batch.TargetTokenCount);
    }
}
