// After warm-up, a whole Trainer step (the batch laid out, forward and backward, grad norm and clipping, AdamW, the
// step's log) allocates nothing on the managed heap: full fine-tuning and LoRA on tiny-flan-t5, in file order and
// shuffled, with and without dropout. The batches here keep one shape (4 examples, batch 4); the model sizes its
// activations per shape.
using ManagedT5.Adapters;

namespace ManagedT5.Training.Tests;

[Collection(TrainingAllocationCollection.Name)]
public sealed class TrainerAllocationTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("managedt5-trainer-alloc-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(false, false, 0)]
    [InlineData(false, true, 0)]
    [InlineData(true, true, 0)]
    [InlineData(false, true, 0.1)]
    [InlineData(true, true, 0.1)]
    public void A_step_allocates_nothing_after_warm_up(bool lora, bool shuffle, double dropout)
    {
        string baseDir = TrainerFixtures.Model("tiny-flan-t5");
        using T5TrainingModel t5 = T5TrainingModel.Load(baseDir, new TrainingModelOptions { Threads = 2, DropoutRate = dropout });
        if (lora)
        {
            LoraAdapter initial = LoraAdapter.Load(Path.Combine(TrainerFixtures.Training("tiny-flan-t5"), "lora_initial"));
            t5.AttachLora(new LoraAdapter(initial.Config with { LoraDropout = dropout }, initial.Modules));
        }
        var examples = TrainingDataFile.ReadJsonLines(TrainerFixtures.Instructions).Take(4).ToList();
        var data = new TrainingData(examples, ManagedT5.Tokenizer.T5Tokenizer.FromDirectory(baseDir), 1024, 128, t5.Config.DecoderStartTokenId, shuffle, seed: 42);
        var args = new TrainingArguments
        {
            OutputDir = _dir, MaxSteps = 12, PerDeviceTrainBatchSize = 4, GradientAccumulationSteps = 2, WarmupSteps = 2, LearningRate = 1e-3,
            WeightDecay = 0.01, MaxGradNorm = 0.5, SaveSteps = 0,
        };
        ITrainable model = lora ? new LoraTrainable(t5) : new T5Trainable(t5, baseDir);
        long before = 0, after = 0;
        TrainingResult result = new Trainer(model, data, args).Train(log =>
        {
            if (log.Step == 4) before = GC.GetAllocatedBytesForCurrentThread();
            else if (log.Step == 12) after = GC.GetAllocatedBytesForCurrentThread();
        });
        Assert.Equal(12, result.Steps);
        Assert.All(result.Logs, l => Assert.True(double.IsFinite(l.Loss) && l.GradNorm > 0));
        Assert.Equal(0, after - before);
    }
}
