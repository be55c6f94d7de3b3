// Checkpoints: 4 steps + resume 4 == 8 straight, bit for bit (parameters and moments), with shuffling, accumulation,
// weight decay and clipping on; a checkpoint written at save_steps; resuming with other batch arguments or into other
// parameters refused naming the option or tensor.
namespace ManagedT5.Training.Tests;

public sealed class CheckpointTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("managedt5-checkpoint-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    TrainingArguments Args(string name, int steps) => new()
    {
        OutputDir = Path.Combine(_dir, name), MaxSteps = steps, PerDeviceTrainBatchSize = 3, GradientAccumulationSteps = 2,
        LearningRate = 0.05, WarmupSteps = 2, LrSchedulerType = LearningRateScheduleKind.Cosine, WeightDecay = 0.1, MaxGradNorm = 0.5, SaveSteps = 4,
    };

    [Fact]
    public void Four_steps_then_resume_four_equals_eight_straight_bit_for_bit()
    {
        TrainingData data = TrainerTests.Data(shuffle: true);
        var straight = new UnigramModel();
        TrainingResult all = new Trainer(straight, data, Args("straight", 8)).Train();
        string checkpoint = Path.Combine(_dir, "straight", "checkpoint-4");
        Assert.Equal(checkpoint, all.Checkpoint);
        Assert.True(File.Exists(Path.Combine(checkpoint, Trainer.OptimizerFile)));

        var resumed = UnigramModel.Load(checkpoint);
        var trainer = new Trainer(resumed, data, Args("resumed", 8));
        trainer.Resume(checkpoint);
        Assert.Equal(4, trainer.GlobalStep);
        TrainingResult rest = trainer.Train();
        Assert.Equal(all.Logs.Skip(4).Select(l => (l.Step, l.Loss, l.LearningRate, l.GradNorm)),
                     rest.Logs.Select(l => (l.Step, l.Loss, l.LearningRate, l.GradNorm)));
        Assert.Equal(straight.Emb.Value, resumed.Emb.Value);
        Assert.Equal(straight.Norm.Value, resumed.Norm.Value);
    }

    [Fact]
    public void Resuming_with_other_batch_arguments_or_parameters_is_refused()
    {
        TrainingData data = TrainerTests.Data();
        new Trainer(new UnigramModel(), data, Args("a", 4)).Train();
        string checkpoint = Path.Combine(_dir, "a", "checkpoint-4");
        Assert.False(Directory.Exists(checkpoint));   // save_steps 4 with 4 steps: the final model, no checkpoint
        new Trainer(new UnigramModel(), data, Args("b", 5)).Train();
        checkpoint = Path.Combine(_dir, "b", "checkpoint-4");

        var e = Assert.Throws<ArgumentException>(() => new Trainer(new UnigramModel(), data, Args("c", 8) with { PerDeviceTrainBatchSize = 4 }).Resume(checkpoint));
        Assert.Equal("per_device_train_batch_size", e.ParamName);
        e = Assert.Throws<ArgumentException>(() => new Trainer(new UnigramModel(), data, Args("c", 8) with { Seed = 1 }).Resume(checkpoint));
        Assert.Equal("seed", e.ParamName);
        e = Assert.Throws<ArgumentException>(() => new Trainer(new UnigramModel(), data, Args("c", 8)).Resume(_dir));
        Assert.Equal("resume", e.ParamName);
        Assert.Contains("not a checkpoint", e.Message);
    }
}
