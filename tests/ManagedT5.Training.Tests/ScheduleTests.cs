// HF's learning-rate schedules: the linear warmup/decay of the fixtures against reference.json's lr column (exactly:
// the same double operations as HF's LambdaLR), and cosine, constant and constant_with_warmup against their formulas.
namespace ManagedT5.Training.Tests;

public sealed class ScheduleTests
{
    [Theory]
    [InlineData("tiny-flan-t5", "full_ft")]
    [InlineData("tiny-flan-t5", "lora")]
    [InlineData("tiny-t5-v1_0", "full_ft")]
    public void Linear_with_warmup_gives_the_reference_learning_rate_of_every_step(string model, string run)
    {
        var reference = TrainerFixtures.Reference(model);
        double peak = reference.GetProperty(run).GetProperty("hyperparameters").GetProperty("lr").GetDouble();
        int warmup = reference.GetProperty("warmup_steps").GetInt32(), steps = reference.GetProperty("steps").GetInt32();
        var schedule = new LearningRateSchedule(LearningRateScheduleKind.Linear, peak, warmup, steps);
        foreach (var (step, _, lr, _) in TrainerFixtures.Log(model, run))
            Assert.Equal(lr, schedule.LearningRate(step));
    }

    [Fact]
    public void Cosine_warms_up_then_follows_half_a_cosine_to_zero()
    {
        var s = new LearningRateSchedule(LearningRateScheduleKind.Cosine, 2.0, 2, 12);
        Assert.Equal(0.0, s.LearningRate(1));
        Assert.Equal(1.0, s.LearningRate(2));
        Assert.Equal(2.0, s.LearningRate(3));                     // lambda(2): progress 0
        Assert.Equal(1.0, s.LearningRate(8), 12);                 // lambda(7): progress 0.5 -> cos(pi/2)
        Assert.Equal(2.0 * 0.5 * (1 + Math.Cos(Math.PI * 0.3)), s.LearningRate(6), 15);
        Assert.Equal(2.0 * 0.5 * (1 + Math.Cos(Math.PI * 0.9)), s.LearningRate(12), 15);
        Assert.Equal(0.0, s.LearningRate(13), 15);
    }

    [Fact]
    public void Constant_schedules()
    {
        var c = new LearningRateSchedule(LearningRateScheduleKind.Constant, 3e-4, 5, 10);
        Assert.All(Enumerable.Range(1, 10), k => Assert.Equal(3e-4, c.LearningRate(k)));
        var w = new LearningRateSchedule(LearningRateScheduleKind.ConstantWithWarmup, 3e-4, 4, 10);
        Assert.Equal([0, 3e-4 * 0.25, 3e-4 * 0.5, 3e-4 * 0.75, 3e-4, 3e-4], Enumerable.Range(1, 6).Select(w.LearningRate));
    }

    [Fact]
    public void Linear_without_warmup_starts_at_the_peak_and_never_goes_negative()
    {
        var s = new LearningRateSchedule(LearningRateScheduleKind.Linear, 1.0, 0, 4);
        Assert.Equal([1.0, 0.75, 0.5, 0.25, 0.0, 0.0], Enumerable.Range(1, 6).Select(s.LearningRate));
    }

    [Fact]
    public void Names_round_trip_and_an_unknown_name_is_refused_naming_the_option()
    {
        foreach (LearningRateScheduleKind k in Enum.GetValues<LearningRateScheduleKind>())
            Assert.Equal(k, LearningRateSchedule.Parse(LearningRateSchedule.Name(k)));
        var e = Assert.Throws<ArgumentException>(() => LearningRateSchedule.Parse("polynomial"));
        Assert.Equal("lr_scheduler_type", e.ParamName);
        Assert.StartsWith("lr_scheduler_type: ", e.Message);
    }
}
