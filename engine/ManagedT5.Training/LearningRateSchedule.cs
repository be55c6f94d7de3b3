// HF transformers' learning-rate schedules (optimization.py: get_scheduler) as the multiplier of the peak rate at each
// optimizer step. LambdaLR applies lambda(k - 1) at step k (1-based): the first step of a warmup runs with rate 0.
namespace ManagedT5.Training;

/// <summary>HF lr_scheduler_type values this engine implements.</summary>
public enum LearningRateScheduleKind
{
    /// <summary>"linear": get_linear_schedule_with_warmup (warm up, then decay linearly to 0 at the last step).</summary>
    Linear,
    /// <summary>"constant": get_constant_schedule (no warmup).</summary>
    Constant,
    /// <summary>"constant_with_warmup": get_constant_schedule_with_warmup.</summary>
    ConstantWithWarmup,
    /// <summary>"cosine": get_cosine_schedule_with_warmup with num_cycles 0.5 (half a cosine from the peak to 0).</summary>
    Cosine,
}

/// <summary>The learning rate of each optimizer step, exactly as HF's LambdaLR schedules compute it (in double).</summary>
/// <param name="Kind">Which of HF's schedules.</param>
/// <param name="PeakLearningRate">learning_rate: the optimizer's base rate.</param>
/// <param name="WarmupSteps">warmup_steps.</param>
/// <param name="TotalSteps">num_training_steps (max_steps, or what the epochs come to).</param>
public sealed record LearningRateSchedule(LearningRateScheduleKind Kind, double PeakLearningRate, int WarmupSteps, int TotalSteps)
{
    /// <summary>HF's name of a kind ("linear", "constant", "constant_with_warmup", "cosine").</summary>
    public static string Name(LearningRateScheduleKind kind) => kind switch
    {
        LearningRateScheduleKind.Linear => "linear",
        LearningRateScheduleKind.Constant => "constant",
        LearningRateScheduleKind.ConstantWithWarmup => "constant_with_warmup",
        LearningRateScheduleKind.Cosine => "cosine",
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>The kind HF calls <paramref name="name"/>; an <see cref="ArgumentException"/> (lr_scheduler_type) listing
    /// the names otherwise.</summary>
    public static LearningRateScheduleKind Parse(string name) => name switch
    {
        "linear" => LearningRateScheduleKind.Linear,
        "constant" => LearningRateScheduleKind.Constant,
        "constant_with_warmup" => LearningRateScheduleKind.ConstantWithWarmup,
        "cosine" => LearningRateScheduleKind.Cosine,
        _ => throw new ArgumentException($"lr_scheduler_type: '{name}' is not a schedule; give linear, constant, constant_with_warmup or cosine.", "lr_scheduler_type"),
    };

    /// <summary>HF's lr_lambda(current_step): the multiplier after <paramref name="currentStep"/> scheduler steps.</summary>
    public double Multiplier(int currentStep)
    {
        int w = WarmupSteps, total = TotalSteps;
        switch (Kind)
        {
            case LearningRateScheduleKind.Constant:
                return 1.0;
            case LearningRateScheduleKind.ConstantWithWarmup:
                return currentStep < w ? (double)currentStep / Math.Max(1.0, w) : 1.0;
            case LearningRateScheduleKind.Linear:
                if (currentStep < w) return (double)currentStep / Math.Max(1, w);
                return Math.Max(0.0, (double)(total - currentStep) / Math.Max(1, total - w));
            case LearningRateScheduleKind.Cosine:
                if (currentStep < w) return (double)currentStep / Math.Max(1, w);
                double progress = (double)(currentStep - w) / Math.Max(1, total - w);
                return Math.Max(0.0, 0.5 * (1.0 + Math.Cos(Math.PI * 0.5 * 2.0 * progress)));
            default:
                throw new InvalidOperationException($"Unknown schedule {Kind}.");
        }
    }

    /// <summary>The learning rate optimizer step <paramref name="step"/> (1-based) uses: peak * lr_lambda(step - 1).</summary>
    public double LearningRate(int step)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(step, 1);
        return PeakLearningRate * Multiplier(step - 1);
    }
}
